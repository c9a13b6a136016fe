"""biofeedback.store"""
