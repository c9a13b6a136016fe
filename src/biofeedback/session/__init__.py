"""biofeedback.session"""
