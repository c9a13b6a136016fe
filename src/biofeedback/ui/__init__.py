"""biofeedback.ui"""
