"""biofeedback: live EMG and HRV biofeedback for upper-trapezius tension release."""

__version__ = "0.1.0"
