"""The registry: one entry per model. Adding a model is a module plus one `register`.

The seed models register here; models of other installed distributions join
through entry points (models/plugins.py), loaded on first need: `all_models()`
or `get_spec` with a name that is not a seed model.
"""

from __future__ import annotations

from . import plugins
from .errors import PluginError, UnknownModelError
from .spec import ModelSpec, TensorSig

MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add `spec` to the registry; a duplicate or unusable name is a programming error."""
    plugins.check_name(spec.name)
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is already registered")
    MODELS[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """Look a model up by name (loading plugins for a name that is not a seed
    model); an unknown name lists the known ones."""
    if name not in MODELS:
        load_plugins()
    if name in plugins.AMBIGUOUS:
        raise PluginError(plugins.AMBIGUOUS[name])
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None


_plugins_loaded = False


def load_plugins() -> list[tuple[str, str]]:
    """Load the entry-point plugins once; returns (entry point, one line) per broken one."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        plugins.load(MODELS)
    return list(plugins.ERRORS)


def all_models() -> list[str]:
    """Every registered model: the seed models, then the plugins' (loads them)."""
    load_plugins()
    return list(MODELS)


def seed_models() -> list[str]:
    """The models this package ships (what artifacts/ and `--check` cover)."""
    return list(SEED_MODELS)


# Every seed model takes one float32 input `x` of shape (batch, 20).
X = (TensorSig("x", (None, 20)),)

register(ModelSpec(
    name="mlp",
    builder="tf_parity_export.models.mlp:build_mlp",
    summary="subclassed Model: Flatten, Dense(256, relu), Dense(10)",
    inputs=X,
    outputs=(TensorSig("logits", (None, 10)),),
))
register(ModelSpec(
    name="sequential_mlp",
    builder="tf_parity_export.models.mlp:build_sequential_mlp",
    summary="the same network as a Sequential",
    inputs=X,
    outputs=(TensorSig("logits", (None, 10)),),
))
register(ModelSpec(
    name="fancy_mlp",
    builder="tf_parity_export.models.fancy_mlp:build_fancy_mlp",
    summary="constant weight, data-dependent while loop and if (scalar output)",
    inputs=X,
    outputs=(TensorSig("total", (), sums_per_row=20),),  # the sum of 20 ReLU activations per row
    control_flow=("Loop", "If"),
    probe="tf_parity_export.models.fancy_mlp:probe_fancy_mlp",
))
register(ModelSpec(
    name="nest_mlp",
    builder="tf_parity_export.models.nest_mlp:build_nest_mlp",
    summary="a Sequential nested in a Model: Dense(64), Dense(32), then Dense(16)",
    inputs=X,
    outputs=(TensorSig("features", (None, 16)),),
))
register(ModelSpec(
    name="chimera",
    builder="tf_parity_export.models.chimera:build_chimera",
    summary="Sequential([NestMLP, Dense(20), FancyMLP]) (scalar output)",
    inputs=X,
    outputs=(TensorSig("total", (), sums_per_row=20),),  # the sum of 20 ReLU activations per row
    control_flow=("Loop", "If"),
    probe="tf_parity_export.models.chimera:probe_chimera",
    seed=10,  # see build_chimera: with seed 0 the zero-iteration case is unreachable
))

SEED_MODELS = tuple(MODELS)
