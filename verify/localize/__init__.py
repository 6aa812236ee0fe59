"""Localization: when a runtime disagrees with TensorFlow, where in the graph it departs.

`localize_model` (verify/localize/localizer.py) compares every tensor of a
runtime with TensorFlow's, finds the first that diverges, tests whether the
error is born there, and writes a minimal repro; `artifact.py` is what the
exporter records in a model folder for it.
"""

from .localizer import Localization, localize_model

__all__ = ["Localization", "localize_model"]
