"""Models from other installed distributions, through the entry-point group `tf_parity_export.models`.

A distribution declares, in its pyproject.toml:

    [project.entry-points."tf_parity_export.models"]
    my_model = "my_package.spec:SPEC"

The entry point names a `ModelSpec`, or a callable returning one or several.
Discovery reads installed metadata only; the plugin modules (which usually
import TensorFlow) are imported on first need: `--list`, `--all`, or a
model name that is not a seed model. `--help` never loads them.

Each entry point is loaded inside its own try (as pluggy loads pytest's
`pytest11` plugins, but without letting one failure stop the rest): a broken
one becomes one line naming the entry point and its distribution, and every
other model is still usable.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import PluginError
from .spec import ModelSpec, TensorSig

GROUP = "tf_parity_export.models"
# A model's name is also its folder under an artifacts root, a CLI argument and a
# table cell: ASCII letters, digits, _ . - (no leading '.' or '-'), checked with
# fullmatch (a `$` would also match before a trailing newline).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# A file name holds at most 255 bytes (NAME_MAX on Linux, macOS and Windows). The
# longest names made from a model's name are its temporaries: the demo's
# `.<name>.onnx.tmp-<pid>-<8 hex>` is the name plus 27 (a 7-digit pid), so 128
# leaves room for all of them with a wide margin, and is longer than any name
# anyone types.
MAX_NAME = 128
# What sits beside the model folders in an artifacts root (verify/layout.py's
# names, the report's page, the lock of export/atomic.py), and the names inside a
# model folder, so a model folder can never take the place of one. Compared
# case-insensitively (a case-insensitive disk holds one of MANIFEST.json and
# manifest.json). tests/test_names.py checks this list against layout.py's names.
RESERVED_NAMES = frozenset({
    "manifest.json", "report.json", "report.html", ".export.lock",
    "card.json", "saved_model", "model.onnx", "model.tflite", "model.weights.h5", "cases.npz",
})
_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
# What plugin code may raise that is the plugin's failure. `sys.exit()` and a KeyboardInterrupt
# raised by the code itself are too: the console scripts take the real Ctrl-C as a signal on
# another thread (verify/interrupt.py), so it never arrives here as an exception.
PLUGIN_FAULTS = (Exception, SystemExit, KeyboardInterrupt)


@dataclass(frozen=True)
class Origin:
    """Where a plugin model came from."""

    entry_point: str
    value: str
    distribution: str

    def __str__(self) -> str:
        return f"entry point {self.entry_point!r} ({self.value}) of distribution {self.distribution}"


# model name -> where it came from; filled by `load`
ORIGINS: dict[str, Origin] = {}
# (entry point name or model name, one line) per broken entry point or ambiguous name; filled by `load`
ERRORS: list[tuple[str, str]] = []
# model name -> the one line refusing it, for a name two entry points register: neither is
# picked (which one an install order or an alphabet favours is not the user's choice)
AMBIGUOUS: dict[str, str] = {}


def entry_points() -> list[importlib.metadata.EntryPoint]:
    """The group's entry points, from installed metadata only (nothing is imported)."""
    eps = importlib.metadata.entry_points(group=GROUP)
    return sorted(eps, key=lambda ep: (_dist(ep), ep.name))


def _dist(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def load(registry: dict[str, ModelSpec]) -> None:
    """Import every entry point and add its specs to `registry`; record the broken ones in ERRORS.

    A name a seed model has stays the seed model's (the plugin's entry is an error). A name
    two entry points register (two distributions, or one twice) is registered by neither:
    asking for it is one line naming both (`AMBIGUOUS`), never a silent pick.

    A plugin module that imports TensorFlow at its top imports it here: the process's TF
    logging settings are made first, and the C++ lines of that import are dropped.
    """
    from .lazy_tf import quiet_environment, quiet_stderr

    quiet_environment()
    claims: dict[str, list[tuple[ModelSpec, Origin]]] = {}
    for ep in entry_points():
        origin = Origin(ep.name, ep.value, _dist(ep))
        try:
            with quiet_stderr(replay=False):
                loaded = ep.load()
            specs = _specs(loaded, ep.name)
            for spec in specs:
                check_spec(spec)
        except PluginError as e:
            ERRORS.append((ep.name, f"plugin {origin}: {e}"))
            continue
        except PLUGIN_FAULTS as e:  # importing someone else's module may raise anything
            ERRORS.append((ep.name, f"plugin {origin}: cannot be loaded ({type(e).__name__}: {_first_line(e)})"))
            continue
        for spec in specs:
            if spec.name in registry:
                ERRORS.append((ep.name, f"plugin {origin}: model name {spec.name!r} is already registered by "
                               "tf-parity-export itself; rename it"))
                continue
            claims.setdefault(spec.name, []).append((spec, origin))
    for name, found in claims.items():
        if len(found) == 1:
            registry[name], ORIGINS[name] = found[0]
            continue
        where = " and ".join(f"the {o}" for o in dict.fromkeys(o for _, o in found))
        line = (f"model name {name!r} is registered {'by both' if len({o for _, o in found}) > 1 else 'twice by'} "
                f"{where}; neither is used: uninstall one or rename it")
        AMBIGUOUS[name] = line
        ERRORS.append((name, line))


def _specs(obj: Any, ep_name: str) -> list[ModelSpec]:
    if isinstance(obj, ModelSpec):
        return [obj]
    if not callable(obj):
        raise PluginError(f"names a {type(obj).__name__}, not a ModelSpec or a callable returning ModelSpecs")
    try:
        result = obj()
    except PLUGIN_FAULTS as e:
        raise PluginError(f"calling it raised {type(e).__name__}: {_first_line(e)}") from None
    items = [result] if isinstance(result, ModelSpec) else result
    if not isinstance(items, Iterable) or isinstance(items, (str, bytes)):
        raise PluginError(f"returned a {type(result).__name__}, not a ModelSpec or a list of them")
    items = list(items)
    bad = [type(i).__name__ for i in items if not isinstance(i, ModelSpec)]
    if bad or not items:
        raise PluginError(f"returned {bad[0] if bad else 'nothing'}, not a ModelSpec")
    return items


def check_name(name: Any) -> None:
    """Refuse a model name that cannot be a folder beside the others in an artifacts root."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise PluginError(f"model name {name!r} is not a plain name (ASCII letters, digits, _ . -; "
                          "not starting with . or -)")
    if len(name) > MAX_NAME:
        raise PluginError(f"model name {name[:24]!r}... is {len(name)} characters long; at most {MAX_NAME} "
                          "(it names a folder, and its temporaries add to it)")
    if name.casefold() in RESERVED_NAMES:
        raise PluginError(f"model name {name!r} is taken by the artifacts layout ({', '.join(sorted(RESERVED_NAMES))} "
                          "are not model names); rename it")


def check_spec(spec: ModelSpec) -> None:
    """Refuse a spec whose fields cannot work (checked without importing TensorFlow)."""
    import numpy as np

    def bad(what: str) -> PluginError:
        return PluginError(f"model {spec.name!r}: {what}")

    check_name(spec.name)
    if not isinstance(spec.summary, str):
        raise bad(f"summary {spec.summary!r} must be a string")
    if not isinstance(spec.builder, str) or not _REFERENCE.fullmatch(spec.builder):
        raise bad(f"builder {spec.builder!r} is not a 'module:function' string")
    if spec.probe is not None and (not isinstance(spec.probe, str) or not _REFERENCE.fullmatch(spec.probe)):
        raise bad(f"probe {spec.probe!r} is not a 'module:function' string")
    for side, sigs in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        if not isinstance(sigs, tuple) or not sigs or not all(isinstance(t, TensorSig) for t in sigs):
            raise bad(f"{side} must be a non-empty tuple of TensorSig")
        names = [t.name for t in sigs]
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n and n.isprintable() for n in names):
            raise bad(f"{side} names {names} must be unique, non-empty strings of printable characters")
        for t in sigs:
            try:
                np.dtype(t.dtype)
            except TypeError:
                raise bad(f"{side} {t.name!r} has dtype {t.dtype!r}, not a numpy dtype name") from None
            if not isinstance(t.shape, tuple) or not all(d is None or (isinstance(d, int) and d > 0) for d in t.shape):
                raise bad(f"{side} {t.name!r} has shape {t.shape!r}; use a tuple of positive ints and None")
    if any(not t.shape or t.shape[0] is not None for t in spec.inputs):
        raise bad("every input needs the batch dimension first, as None: shape=(None, ...)")
    for tol in ("atol", "rtol"):
        value = getattr(spec, tol)
        if not isinstance(value, (int, float)) or not value >= 0:
            raise bad(f"{tol}={value!r} must be a number >= 0")
    if not isinstance(spec.seed, int):
        raise bad(f"seed={spec.seed!r} must be an int")
    if not isinstance(spec.control_flow, tuple) or not all(isinstance(op, str) for op in spec.control_flow):
        raise bad(f"control_flow={spec.control_flow!r} must be a tuple of ONNX op names")


def origin(name: str) -> Origin | None:
    """Where a registered model came from (None for the seed models)."""
    return ORIGINS.get(name)


def build_checked(spec: ModelSpec, seed: int | None = None) -> Any:
    """Build `spec`'s model; a plugin's failing builder is one PluginError line, not a traceback.

    A seed model's failing builder is a bug and keeps its traceback.
    """
    where = origin(spec.name)
    if where is None:
        return spec.build(seed)
    try:
        model = spec.build(seed)
    except PLUGIN_FAULTS as e:
        raise PluginError(f"{spec.name} (plugin {where}): builder {spec.builder} raised "
                          f"{type(e).__name__}: {_first_line(e)}") from None
    import keras

    if not isinstance(model, keras.Model):
        raise PluginError(f"{spec.name} (plugin {where}): builder {spec.builder} returned a "
                          f"{type(model).__name__}, not a keras.Model")
    if not model.built or not model.weights:
        raise PluginError(f"{spec.name} (plugin {where}): builder {spec.builder} returned a Keras model that "
                          "is not built (call it once on an input batch before returning it)")
    return model


def make_probe_checked(spec: ModelSpec, model: Any) -> Any | None:
    """`spec.make_probe(model)`; a plugin's probe that raises is one PluginError line."""
    where = origin(spec.name)
    if where is None:
        return spec.make_probe(model)
    try:
        return spec.make_probe(model)
    except Exception as e:
        raise PluginError(f"{spec.name} (plugin {where}): probe {spec.probe} raised "
                          f"{type(e).__name__}: {_first_line(e)}") from None


def trace_path(spec: ModelSpec, probe: Any, inputs: Any) -> dict[str, Any]:
    """The control-flow path `probe` measures for `inputs`, as JSON: `probe.trace(inputs).to_json()`.

    A plugin's probe that raises, or returns something other than a path (see
    `path_problem`), is one PluginError line naming the model, the plugin and
    the probe; the seed models' probes are this package's code (a bug keeps its traceback).
    """
    where = origin(spec.name)
    if where is None:
        return probe.trace(inputs).to_json()
    label = f"{spec.name} (plugin {where}): probe {spec.probe}"
    try:
        path = probe.trace(inputs).to_json()
    except Exception as e:
        raise PluginError(f"{label} raised {type(e).__name__}: {_first_line(e)}") from None
    problem = path_problem(path)
    if problem:
        raise PluginError(f"{label} returned a malformed path ({problem}); trace(x).to_json() must give "
                          "{'iterations': int >= 0, 'branch': str, 'margin': number >= 0 or None, "
                          "'norm_before_loop': number (optional), 'capped': bool (optional)}")
    return path


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def path_problem(path: Any) -> str:
    """What is wrong with a probe's path (empty when nothing): the fields the verifier,
    the table and the report page read, with their types."""
    if not isinstance(path, dict):
        return f"a {type(path).__name__}, not a dict"
    if not (isinstance(path.get("iterations"), int) and not isinstance(path["iterations"], bool)
            and path["iterations"] >= 0):
        return f"iterations={path.get('iterations')!r}"
    if not isinstance(path.get("branch"), str):
        return f"branch={path.get('branch')!r}"
    margin = path.get("margin")
    if not (margin is None or (_number(margin) and margin >= 0)):
        return f"margin={margin!r}"
    if not isinstance(path.get("capped", False), bool):
        return f"capped={path.get('capped')!r}"
    if ("norm_before_loop" in path or path.get("capped")) and not _number(path.get("norm_before_loop")):
        return f"norm_before_loop={path.get('norm_before_loop')!r}"  # the table names it for a capped case
    return ""


def check_outputs(spec: ModelSpec, fn: Any) -> None:
    """The serving function's outputs must match the declared signature (count, rank, dims, dtype)."""
    where = origin(spec.name)
    label = f"{spec.name} (plugin {where})" if where else spec.name
    try:
        outputs = fn.get_concrete_function().structured_outputs
    except PLUGIN_FAULTS as e:
        if where is None:
            raise
        raise PluginError(f"{label}: the serving function cannot be traced on the declared inputs "
                          f"{[t.to_json() for t in spec.inputs]} ({type(e).__name__}: {_first_line(e)})") from None
    for sig in spec.outputs:
        got = outputs[sig.name]
        shape = tuple(got.shape.as_list()) if got.shape.rank is not None else None
        ok = (shape is not None and len(shape) == len(sig.shape)
              and all(w is None or g is None or w == g for w, g in zip(sig.shape, shape))
              and got.dtype.name == sig.dtype)
        if not ok:
            raise PluginError(f"{label}: output {sig.name!r} is {got.dtype.name} {shape}, "
                              f"the spec declares {sig.dtype} {sig.shape}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"
