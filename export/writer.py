"""Write one model's artifact folder, all or nothing.

Everything is written into a temporary sibling folder (`.<name>.tmp-*`,
recorded in the lock file), hashed into card.json, and only then swapped in
for the old folder in one atomic exchange (export/atomic.py), so a reader
never sees a half-written model folder. A write that fails (a full disk, the
file-size limit) is one line naming the folder, and the temporary is removed.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf_parity_export.models import ModelSpec, UserError
from tf_parity_export.models.plugins import build_checked, check_outputs
from tf_parity_export.verify import layout
from tf_parity_export.verify.deadline import DeadlineExceeded
from tf_parity_export.verify.inputs import BOUNDARY_MARGIN, Case, find_coverage_inputs, random_cases
from tf_parity_export.verify.runtimes import REFERENCE, RUNTIMES, Subject
from tf_parity_export.verify.test_data import write_set
from tf_parity_export.verify.verifier import tool_versions

from .atomic import claim, swap_in
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


def export_model(spec: ModelSpec, out: Path, opset: int, env: dict[str, Any]) -> ExportResult:
    """Build `spec`'s model and write its complete artifact folder under `out`."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    tmp = claim(out, spec.name)
    try:
        tmp.mkdir()  # 0777 less the umask: other users can read the artifacts
        model = build_checked(spec)
        fn = spec.serving_function(model)
        check_outputs(spec, fn)
        layout.check_room(tmp, _weights_bound(model), f"{out / spec.name / layout.WEIGHTS}")
        model.save_weights(str(tmp / layout.WEIGHTS))
        export_saved_model(model, fn, tmp / layout.SAVED_MODEL)
        export_tflite(tmp / layout.SAVED_MODEL, tmp / layout.TFLITE)
        export_onnx(fn, spec, tmp / layout.ONNX, opset)
        cases, uncovered = _coverage_inputs(spec, model, tmp / layout.ONNX)
        if cases:
            np.savez(tmp / layout.CASES, **{f"{case}/{k}": x for case, feed in cases.items() for k, x in feed.items()})
        test_data = _write_test_data(tmp, spec, model, cases)
        card = {
            "schema": layout.SCHEMA_VERSION,
            "name": spec.name,
            "summary": spec.summary,
            "seed": spec.seed,
            "signature": spec.to_json(),
            "opset": opset,
            "parameters": int(model.count_params()),
            "versions": tool_versions(env),
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
            raise UserError(f"{out / spec.name}: cannot write the artifacts ({reason}); nothing was changed") from None
        raise
    dest = out / spec.name
    sizes = {layout.ONNX: (dest / layout.ONNX).stat().st_size, layout.TFLITE: (dest / layout.TFLITE).stat().st_size,
             layout.SAVED_MODEL: sum(p.stat().st_size for p in (dest / layout.SAVED_MODEL).rglob("*") if p.is_file())}
    return ExportResult(spec.name, dest, time.perf_counter() - start, sizes, model, tuple(uncovered))


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
        return {case: {name: x} for case, x in find_coverage_inputs(spec, model).items()}, []
    from tf_parity_export.verify.coverage import find_covering_inputs, has_control_flow

    if not has_control_flow(onnx_path):
        return {}, []
    return find_covering_inputs(spec, onnx_path, covered=[c.feed for c in random_cases(spec)])


def _write_test_data(folder: Path, spec: ModelSpec, model: Any, coverage: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """Write the random batches and the coverage cases as ONNX test data sets,
    with TF eager's outputs; boundary cases are left out (another runtime may
    legitimately take the other branch on them)."""
    eager = RUNTIMES[REFERENCE](Subject(spec, folder, model))
    probe = spec.make_probe(model)
    graph = None
    if probe is None and coverage:
        from tf_parity_export.verify.coverage import GraphCoverage

        graph = GraphCoverage(folder / layout.ONNX, spec.name)
    name = spec.inputs[0].name
    cases = random_cases(spec) + [Case(c, "coverage", feed) for c, feed in coverage.items()]
    entries = []
    for case in cases:
        try:
            path = probe.trace(case.feed[name]).to_json() if probe else graph.trace(case.feed).to_json() if graph else None
            if path and path["margin"] is not None and path["margin"] < BOUNDARY_MARGIN:
                continue
            outputs = eager.infer(case.feed)
        except DeadlineExceeded:  # never finishes on this input (the verifier reports such a case apart)
            continue
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
