"""The model zoo: the registry of ModelSpecs and one module per seed model.

Importing this package does not import TensorFlow.
"""

from .errors import ArtifactError, InputError, ParityError, UnknownModelError, UserError
from .registry import MODELS, get_spec, register
from .spec import ModelSpec, TensorSig

__all__ = [
    "MODELS", "ArtifactError", "InputError", "ModelSpec", "ParityError", "TensorSig",
    "UnknownModelError", "UserError", "get_spec", "register",
]
