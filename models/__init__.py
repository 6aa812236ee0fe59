"""The model zoo: the registry of ModelSpecs and one module per seed model.

Importing this package does not import TensorFlow.
"""

from .errors import ArtifactError, InputError, ParityError, PluginError, UnknownModelError, UserError
from .registry import MODELS, all_models, get_spec, load_plugins, register, seed_models
from .spec import ModelSpec, TensorSig

__all__ = [
    "MODELS", "ArtifactError", "InputError", "ModelSpec", "ParityError", "PluginError", "TensorSig",
    "UnknownModelError", "UserError", "all_models", "get_spec", "load_plugins", "register", "seed_models",
]
