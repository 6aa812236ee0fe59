"""A model file is a model: a Keras 3 `.keras` file, a legacy `.h5`, or a SavedModel directory
with a serving signature becomes a ModelSpec, so export and verify treat it like any registered
model (nothing downstream asks where a spec came from).

The signature (input and output names, shapes, dtypes) comes from the model; ranges and
tolerances from the user. The exporter copies a `.keras`/`.h5` file into the model folder
(`source.keras`/`source.h5`, hashed like every file), and card.json records where it came from,
so that `verify-models NAME` in a fresh process rebuilds the same model from the folder alone
(`spec_from_card`). A SavedModel has no Keras model behind it: its reference is its own serving
signature, wrapped in a Keras `TFSMLayer` (in a fresh process, the folder's re-export of it).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .spec import ModelSpec, TensorSig

KERAS_SUFFIXES = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}
SOURCE_FILES = {"keras": "source.keras", "h5": "source.h5"}  # the copy in the model folder
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ModelSource:
    """Where a file model came from: the path given, its format, the modules its custom layers need."""

    path: str
    format: str  # "keras" | "h5" | "saved_model"
    custom_modules: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "file": SOURCE_FILES.get(self.format), "custom_modules": list(self.custom_modules),
                "given": self.path}


def file_format(arg: str) -> str | None:
    """"keras", "h5" or "saved_model" when `arg` names a model file or SavedModel directory, else None."""
    path = Path(arg)
    if path.suffix.lower() in KERAS_SUFFIXES and (path.exists() or "/" in arg):
        return KERAS_SUFFIXES[path.suffix.lower()]
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "saved_model"
    if path.is_dir() or "/" in arg:
        return "unknown"
    return None


def spec_from_file(arg: str, name: str | None = None, ranges: dict[str, tuple[float, float]] | None = None,
                   atol: float = 1e-5, rtol: float = 1e-5, custom_modules: tuple[str, ...] = ()) -> ModelSpec:
    """Load the model once to read its signature; every problem is one UserError line.

    Args:
        arg: the path given on the command line.
        name: the model's name (the folder under artifacts/); default the file's stem.
        ranges: input name -> (low, high) for the random cases (integer inputs need one).
        custom_modules: modules to import first: they register the model's custom layers
            (`keras.saving.register_keras_serializable`).
    """
    fmt = file_format(arg)
    path = Path(arg)
    if fmt is None or fmt == "unknown":
        what = "no such file or folder" if not path.exists() else "not a .keras or .h5 file, nor a SavedModel folder"
        raise UserError(f"{arg}: {what}")
    name = name or (path.name if fmt == "saved_model" else path.stem)
    if not _NAME.fullmatch(name) or len(name) > 64:
        raise UserError(f"{arg}: {name!r} cannot name a model folder (letters, digits, _ . -; at most 64); "
                        "give one with --name")
    source = ModelSource(str(arg), fmt, tuple(custom_modules))
    model = load_source(path, fmt, source.custom_modules)
    inputs, outputs = _signature(model, fmt, arg)
    ranges = dict(ranges or {})
    unknown = sorted(set(ranges) - {t.name for t in inputs})
    if unknown:
        raise UserError(f"--input-range names {unknown}; {arg} takes {[t.name for t in inputs]}")
    inputs = tuple(TensorSig(t.name, t.shape, t.dtype, range=ranges.get(t.name)) for t in inputs)
    return ModelSpec(name=name, builder=_Prebuilt(path, fmt, source.custom_modules, model),
                     summary=f"from {path.name} ({fmt})", inputs=inputs, outputs=outputs, atol=atol, rtol=rtol,
                     source=source)


def spec_from_card(name: str, folder: Path, card: dict[str, Any]) -> ModelSpec | None:
    """The spec of a model exported from a file, rebuilt from its folder's card (None for any other card)."""
    source = card.get("source")
    signature = card.get("signature")
    if not isinstance(source, dict) or not isinstance(signature, dict):
        return None
    fmt = source.get("format")
    modules = tuple(m for m in source.get("custom_modules", []) if isinstance(m, str))
    path = folder / SOURCE_FILES[fmt] if fmt in SOURCE_FILES else folder / "saved_model"

    def sig(t: dict[str, Any]) -> TensorSig:
        rng = t.get("range")
        return TensorSig(str(t["name"]), tuple(t["shape"]), str(t.get("dtype", "float32")),
                         range=tuple(rng) if isinstance(rng, list) and len(rng) == 2 else None)

    try:
        inputs = tuple(sig(t) for t in signature["inputs"])
        outputs = tuple(sig(t) for t in signature["outputs"])
    except (KeyError, TypeError) as e:
        raise UserError(f"{name}: card.json's signature is unreadable ({e}); re-export it") from None
    return ModelSpec(name=name, builder=_Prebuilt(path, fmt if fmt in ("keras", "h5", "saved_model") else "keras",
                                                   modules, None),
                     summary=str(card.get("summary", "")), inputs=inputs, outputs=outputs,
                     atol=float(signature.get("atol", 1e-5)), rtol=float(signature.get("rtol", 1e-5)),
                     control_flow=tuple(signature.get("control_flow", ())), seed=int(card.get("seed", 0)),
                     source=ModelSource(str(source.get("given", path)), str(fmt), modules))


class _Prebuilt:
    """A file model's builder: the model loaded when its signature was read, then fresh loads."""

    def __init__(self, path: Path, fmt: str, modules: tuple[str, ...], loaded: Any) -> None:
        self.path, self.fmt, self.modules, self.loaded = Path(path), fmt, modules, loaded

    def __call__(self, seed: int) -> Any:  # the weights are the file's: the seed changes nothing
        model, self.loaded = self.loaded, None
        return model if model is not None else load_source(self.path, self.fmt, self.modules)

    def __repr__(self) -> str:
        return f"load {self.path}"


def load_source(path: Path, fmt: str, modules: tuple[str, ...] = ()) -> Any:
    """The Keras model in `path` (for a SavedModel, its serving signature in a functional model)."""
    from .lazy_tf import import_tensorflow, quiet_stderr

    tf = import_tensorflow()
    import keras

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as e:  # someone else's module: any error is theirs, one line
            raise UserError(f"--custom-module {module}: cannot be imported ({type(e).__name__}: {e})") from None
    if fmt == "saved_model":
        return _wrap_saved_model(path, tf, keras)
    try:
        with quiet_stderr(replay=False):
            return keras.saving.load_model(str(path), compile=False)
    except Exception as e:  # keras raises ValueError, TypeError, OSError, zipfile errors...
        raise UserError(f"{path}: cannot be loaded as a Keras model: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    from .errors import first_reason

    text = first_reason(e)
    unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", str(e))
    if unknown:
        return (f"it uses {unknown.group(1)!r}, which is not registered here; pass --custom-module MODULE, a "
                "module that registers it with keras.saving.register_keras_serializable")
    return f"{type(e).__name__}: {text}"


def _wrap_saved_model(path: Path, tf: Any, keras: Any) -> Any:
    from .lazy_tf import quiet_stderr

    try:
        with quiet_stderr(replay=False):
            loaded = tf.saved_model.load(str(path))
    except Exception as e:
        raise UserError(f"{path}: cannot be loaded as a SavedModel: {_reason(e)}") from None
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise UserError(f"{path}: the SavedModel has no 'serving_default' signature (it has "
                        f"{sorted(loaded.signatures) or 'none'}); export one, e.g. with keras' model.export()")
    _, specs = signature.structured_input_signature

    class ServingSignature(keras.layers.TFSMLayer):
        """Keras' TFSMLayer, calling the signature with its inputs by name (a signature takes keywords only)."""

        def call(self, inputs: dict[str, Any], training: bool = False) -> Any:
            return self.call_endpoint_fn(**inputs)

    inputs = {k: keras.Input(batch_shape=tuple(v.shape), dtype=v.dtype.name, name=k) for k, v in sorted(specs.items())}
    with quiet_stderr(replay=False):
        layer = ServingSignature(str(path), call_endpoint="serving_default")
    return keras.Model(inputs, layer(inputs), name=Path(path).name)


def _signature(model: Any, fmt: str, arg: str) -> tuple[tuple[TensorSig, ...], tuple[TensorSig, ...]]:
    inputs = getattr(model, "inputs", None)
    outputs = getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise UserError(f"{arg}: the model has no functional inputs and outputs to read its signature from "
                        "(a subclassed model); register it as a plugin with a ModelSpec instead")
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict):
        names = list(struct)
        tensors = [struct[n] for n in names]
    else:
        names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(outputs))])
        tensors = list(outputs)
    if len(set(names)) != len(names):
        raise UserError(f"{arg}: the model's outputs {names} do not have distinct names")

    def sigs(items: list[tuple[str, Any]]) -> tuple[TensorSig, ...]:
        found = []
        for name, t in items:
            shape = tuple(None if d is None else int(d) for d in t.shape)
            if not shape or shape[0] is not None:
                raise UserError(f"{arg}: {name!r} has shape {shape}; a batch dimension first (None) is needed")
            found.append(TensorSig(name, shape, str(t.dtype)))
        return tuple(found)

    return sigs([(t.name, t) for t in inputs]), sigs(list(zip(names, tensors)))


def parse_ranges(values: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """["tokens=0:1000", "x=-1:1"] -> {"tokens": (0, 1000), "x": (-1.0, 1.0)}: --input-range NAME=LOW:HIGH."""
    ranges: dict[str, tuple[float, float]] = {}
    for value in values:
        name, _, bounds = value.partition("=")
        low, _, high = bounds.partition(":")
        try:
            lo, hi = _number(low), _number(high)
        except ValueError:
            lo = hi = None
        if not name or lo is None or hi is None or not lo < hi or name in ranges:
            raise UserError(f"--input-range {value!r}: give NAME=LOW:HIGH once per input, LOW < HIGH (high "
                            "exclusive), e.g. tokens=0:1000")
        ranges[name] = (lo, hi)
    return ranges


def _number(text: str) -> float | int:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


__all__ = ["ModelSource", "file_format", "load_source", "parse_ranges", "spec_from_card", "spec_from_file"]
