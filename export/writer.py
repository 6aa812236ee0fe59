"""Write one model's artifact folder, all or nothing.

Everything is written into a temporary sibling folder (`.<name>.tmp-*`,
recorded in the lock file), hashed into card.json, and only then swapped in
for the old folder in one atomic exchange (export/atomic.py), so a reader
never sees a half-written model folder. A write that fails (a full disk, the
file-size limit) is one line naming the folder, and the temporary is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tf_parity_export.models import ModelSpec, PluginError, UserError
from tf_parity_export.models.errors import ExportError, first_reason
from tf_parity_export.models.plugins import build_checked, check_outputs, make_probe_checked, origin, trace_path
from tf_parity_export.models.text import shown
from tf_parity_export.verify import layout
from tf_parity_export.verify.deadline import DeadlineExceeded
from tf_parity_export.verify.inputs import BOUNDARY_MARGIN, Case, find_coverage_inputs, random_cases
from tf_parity_export.verify.localize.artifact import record as record_sources
from tf_parity_export.verify.runtimes import REFERENCE, RUNTIMES, Subject
from tf_parity_export.verify.test_data import check_test_data_size, random_data_bytes, write_set
from tf_parity_export.verify.verifier import tool_versions

from .atomic import claim, swap_in
from .memory import give_back
from .onnx_model import export_onnx
from .saved_model import export_saved_model
from .tflite import export_tflite


@dataclass(frozen=True)
class ExportResult:
    name: str
    folder: Path
    seconds: float
    sizes: dict[str, int]
    model: Any  # the Keras model exported (the verifier reloads the folder's weights into it)
    uncovered: tuple[str, ...] = ()  # control-flow paths the coverage search found no input for
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)  # deployment formats: card.json "formats"
    notes: tuple[str, ...] = ()  # what the export decided for the user (an input range taken from the model)


def export_model(spec: ModelSpec, out: Path, opset: int, env: dict[str, Any]) -> ExportResult:
    """Build `spec`'s model and write its complete artifact folder under `out`.

    Every step that runs someone else's code (the builder, TensorFlow's
    SavedModel writer, tf2onnx, TFLite's converter) fails as one ExportError
    line naming the model, the step and the tool's reason (`first_reason`),
    and nothing is written for that model. LiteRT is a deployment format: where
    its converter fails, the folder is written without it and the card says why.
    """
    start = time.perf_counter()
    # before anything is built: a declared input too wide to store is one line, not 763 MiB written
    check_test_data_size(spec, random_data_bytes(spec), "the random test inputs alone would")
    out.mkdir(parents=True, exist_ok=True)
    tmp = claim(out, spec.name)
    try:
        tmp.mkdir()  # 0777 less the umask: other users can read the artifacts
        with _stage(spec, "build"):
            model = build_checked(spec)
        with _stage(spec, "signature"):
            spec, notes = resolve_ranges(spec, model)
            fn = spec.serving_function(model)
            check_outputs(spec, fn)
        layout.check_room(tmp, _weights_bound(model), shown(out / spec.name / layout.WEIGHTS))
        with _stage(spec, "weights"):
            model.save_weights(str(tmp / layout.WEIGHTS))
        with _stage(spec, "saved_model"):
            export_saved_model(model, fn, tmp / layout.SAVED_MODEL)
        with _stage(spec, "onnx"):
            onnx_export = export_onnx(fn, spec, tmp / layout.ONNX, opset)
        litert = export_tflite(tmp / layout.SAVED_MODEL, tmp / layout.TFLITE, spec,
                               lambda where: export_saved_model(model, spec.serving_function(model, batch=1), where))
        give_back()  # the converter's copies of the weights
        with _stage(spec, "coverage search"):
            cases, uncovered = _coverage_inputs(spec, model, tmp / layout.ONNX)
            if cases:
                np.savez(tmp / layout.CASES,
                         **{f"{case}/{k}": x for case, feed in cases.items() for k, x in feed.items()})
        with _stage(spec, "test data"):
            test_data = _write_test_data(tmp, spec, model, cases)
        with _stage(spec, "tensor sources"):  # for localizing a divergence later
            record_sources(tmp, spec, onnx_export, test_data[0]["case"] if test_data else None)
        if spec.source is not None and spec.source.to_json()["file"]:  # a model file: its copy rebuilds the reference
            shutil.copyfile(spec.source.path, tmp / spec.source.to_json()["file"])
        card = {
            "schema": layout.SCHEMA_VERSION,
            "name": spec.name,
            "summary": spec.summary,
            "seed": spec.seed,
            "signature": spec.to_json(),
            "opset": opset,
            "parameters": int(model.count_params()),
            "versions": tool_versions(env),
            "formats": {"litert": litert},
            **({"source": spec.source.to_json()} if spec.source is not None else {}),
            "test_data": test_data,
            "files": layout.hash_tree(tmp),
        }
        layout.write_json(tmp / layout.CARD, card, sort_keys=True)
        _stage_in_index(out, spec.name, tmp)
        swap_in(tmp, out / spec.name)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = _write_failure(e)
        if reason:
            raise UserError(f"{shown(out / spec.name)}: cannot write the artifacts ({reason}); nothing was changed") from None
        raise
    dest = out / spec.name
    sizes = {layout.ONNX: (dest / layout.ONNX).stat().st_size,
             **({layout.TFLITE: (dest / layout.TFLITE).stat().st_size} if litert["status"] == "ok" else {}),
             layout.SAVED_MODEL: sum(p.stat().st_size for p in (dest / layout.SAVED_MODEL).rglob("*") if p.is_file())}
    return ExportResult(spec.name, dest, time.perf_counter() - start, sizes, model, tuple(uncovered),
                        {"litert": litert}, tuple(notes))


@contextlib.contextmanager
def _stage(spec: ModelSpec, stage: str) -> Iterator[None]:
    """Turn a failure inside one export step into one ExportError line: model, step, the tool's reason.

    A write refused by the system (full disk, file-size limit) passes through: it
    is no fault of the model, and `export_model` reports it for the folder.
    TF_PARITY_DEBUG=1 lets the original exception through, traceback and all.
    """
    try:
        yield
    except ExportError:
        raise
    except PluginError as e:  # already one line naming the model and its plugin
        raise ExportError(str(e)) from None
    except Exception as e:
        if _write_failure(e) or os.environ.get("TF_PARITY_DEBUG"):
            raise
        reason = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {first_reason(e)}"
        raise ExportError(f"{spec.name}: {stage}: {reason}") from None


def resolve_ranges(spec: ModelSpec, model: Any) -> tuple[ModelSpec, list[str]]:
    """`spec` with a range for every integer input, and a note for each range taken from the model.

    An integer input without a declared range takes it from the Embedding layer
    it feeds ([0, input_dim): every id the table has a row for); one that feeds
    no Embedding is refused, naming the field to set.
    """
    notes, inputs = [], []
    for sig in spec.inputs:
        if sig.integer and sig.range is None and np.dtype(sig.dtype) != np.bool_:
            size = _embedding_size(model, sig.name)
            if size is None:
                how = (f"--input-range {sig.name}=LOW:HIGH" if spec.source is not None  # a model file: a flag
                       else f"TensorSig({sig.name!r}, ..., dtype={sig.dtype!r}, range=(low, high))")
                raise UserError(f"input {sig.name!r} is {sig.dtype} and has no range; declare the values it may "
                                f"take: {how}")
            sig = dataclasses.replace(sig, range=(0, size))
            notes.append(f"input {sig.name!r} has no declared range; using [0, {size}) from the Embedding it feeds")
        inputs.append(sig)
    return dataclasses.replace(spec, inputs=tuple(inputs)), notes


def _embedding_size(model: Any, input_name: str) -> int | None:
    """input_dim of an Embedding layer that reads the functional model's input `input_name` directly."""
    import keras

    inputs = {getattr(t, "name", None): t for t in getattr(model, "inputs", None) or []}
    tensor = inputs.get(input_name)
    if tensor is None:
        return None
    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding):
            for node in getattr(layer, "_inbound_nodes", []):
                if any(t is tensor for t in node.input_tensors):
                    return int(layer.input_dim)
    return None


# A write that fails for want of room or permission: the user's to fix, not a bug.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _write_failure(e: BaseException) -> str | None:
    """Why writing failed, when `e` is a write refused by the system (an OSError,
    or TensorFlow's error for one, which carries only the message); else None."""
    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
        return os.strerror(e.errno)
    if type(e).__module__.startswith("tensorflow"):
        return next((os.strerror(n) for n in _WRITE_ERRNOS if os.strerror(n) in str(e)), None)
    return None


def _weights_bound(model: Any) -> int:
    """An upper bound on the bytes of `model.weights.h5`: the weights, plus HDF5's
    per-object overhead (measured at 1.4 to 2.0 KiB per weight and per layer on
    the seed models; 4 KiB each is allowed), plus 32 KiB for the file's own structures."""
    layers = len(list(model._flatten_layers())) if hasattr(model, "_flatten_layers") else 0
    return sum(int(w.numpy().nbytes) for w in model.weights) + 4096 * (len(model.weights) + layers) + 32768


def _coverage_inputs(spec: ModelSpec, model: Any, onnx_path: Path) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Inputs covering every control-flow path: the probe's search for a model
    with a probe (the seed models), else the generic search on the ONNX graph.

    Returns:
        {case name: feed}, and the paths no input was found for.
    """
    if spec.probe:
        name = spec.inputs[0].name
        try:
            found = find_coverage_inputs(spec, model)
        except Exception as e:
            where = origin(spec.name)
            if where is None:  # a seed model's probe: a bug keeps its traceback
                raise
            raise PluginError(f"{spec.name} (plugin {where}): the coverage search with probe {spec.probe} failed "
                              f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
        return {case: {name: x} for case, x in found.items()}, []
    from tf_parity_export.verify.coverage import find_covering_inputs, has_control_flow

    if not has_control_flow(onnx_path):
        return {}, []
    return find_covering_inputs(spec, onnx_path, covered=[c.feed for c in random_cases(spec)])


def _write_test_data(folder: Path, spec: ModelSpec, model: Any, coverage: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """Write the random batches and the coverage cases as ONNX test data sets,
    with TF eager's outputs; boundary cases are left out (another runtime may
    legitimately take the other branch on them)."""
    eager = RUNTIMES[REFERENCE](Subject(spec, folder, model))
    probe = make_probe_checked(spec, model)
    graph = None
    if probe is None and coverage:
        from tf_parity_export.verify.coverage import GraphCoverage

        graph = GraphCoverage(folder / layout.ONNX, spec.name)
    name = spec.inputs[0].name
    cases = random_cases(spec) + [Case(c, "coverage", feed) for c, feed in coverage.items()]
    entries, stored = [], 0
    for case in cases:
        try:
            path = trace_path(spec, probe, case.feed[name]) if probe else graph.trace(case.feed).to_json() if graph else None
            if path and path["margin"] is not None and path["margin"] < BOUNDARY_MARGIN:
                continue
            outputs = eager.infer(case.feed)
        except DeadlineExceeded:  # never finishes on this input (the verifier reports such a case apart)
            continue
        stored += sum(a.nbytes for a in (*case.feed.values(), *outputs.values()))
        check_test_data_size(spec, stored, f"the test data sets up to case {case.name!r} would")
        folder_name = write_set(folder, len(entries), spec, case.feed, outputs)
        entries.append({"set": folder_name, "case": case.name, "kind": case.kind, "path": path})
    return entries


def _read_index(path: Path) -> dict[str, Any]:
    try:
        index = layout.read_json(path)
    except (OSError, ValueError):
        index = {}
    return index if isinstance(index, dict) else {}


def _stage_in_index(out: Path, name: str, staged: Path) -> None:
    """Record the folder about to be swapped in as the model's `pending` entry.

    The verifier accepts the card manifest.json lists or the pending one, so a
    `kill -9` between the swap and `write_index` leaves a folder that still
    verifies (old or new, whichever is in place); `write_index` then drops it.
    """
    path = out / layout.INDEX
    index = _read_index(path)
    models = index.get("models") if isinstance(index.get("models"), dict) else {}
    entry = models.get(name) if isinstance(models.get(name), dict) else {}
    entry["pending"] = {"card_sha256": layout.sha256(staged / layout.CARD),
                        "onnx_sha256": layout.sha256(staged / layout.ONNX)}
    index["models"] = {**models, name: entry}
    layout.write_json(path, index, sort_keys=True, temp=claim(out, layout.INDEX))


def write_index(out: Path, results: list[ExportResult], opset: int, env: dict[str, Any]) -> None:
    """Update manifest.json, the index of every model folder under `out`."""
    path = out / layout.INDEX
    index = _read_index(path)
    models = index.get("models", {}) if isinstance(index.get("models"), dict) else {}
    for r in results:
        models[r.name] = {"folder": r.name, "card_sha256": layout.sha256(r.folder / layout.CARD),
                          "onnx_sha256": layout.sha256(r.folder / layout.ONNX), "opset": opset}
    layout.write_json(path, {"schema": layout.SCHEMA_VERSION, "models": dict(sorted(models.items())),
                      "versions": tool_versions(env)}, sort_keys=True, temp=claim(out, layout.INDEX))
