"""An example tf-parity-export plugin (see spec.py and model.py)."""
