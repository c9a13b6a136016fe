"""biofeedback.sensors.virtual"""
