"""keras.applications architectures at random initialisation, calibrated to be testable."""
