"""biofeedback.analysis"""
