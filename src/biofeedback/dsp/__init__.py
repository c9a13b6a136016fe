"""biofeedback.dsp"""
