"""biofeedback.sensors"""
