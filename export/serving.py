"""Serving layouts built from an exported model folder: Triton and TF Serving.

Each writer has one shape, `(spec, folder, out)`: `folder` is a verified
artifact folder, `out` the model repository to add the model to.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from tf_parity_export.models import ModelSpec, UserError
from tf_parity_export.verify import layout

from .atomic import swap_in

VERSION = "1"
TRITON_MAX_BATCH = 64
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "int64": "TYPE_INT64"}


def batchable(spec: ModelSpec) -> bool:
    """True when every input and output has the batch as its first dimension.

    FancyMLP and chimera sum over the whole batch: Triton must not merge two
    requests into one batch for them, so they get `max_batch_size: 0` and an
    explicit dynamic batch dimension instead.
    """
    return all(t.shape[:1] == (None,) for t in (*spec.inputs, *spec.outputs))


def triton_config(spec: ModelSpec, name: str, backend: str) -> str:
    """config.pbtxt for Triton's onnxruntime or tensorflow backend."""
    batched = batchable(spec)
    head = ['backend: "onnxruntime"'] if backend == "onnx" else ['platform: "tensorflow_savedmodel"']
    lines = [f'name: "{name}"', *head, f"max_batch_size: {TRITON_MAX_BATCH if batched else 0}"]
    if not batched:
        lines.append("# the output reduces over the whole batch: requests must not be batched together")

    def tensor(t) -> list[str]:
        dims = [-1 if d is None else d for d in t.shape]
        dims = dims[1:] if batched else dims
        body = [f'    name: "{t.name}"', f"    data_type: {_TRITON_TYPES[t.dtype]}"]
        if dims:
            body.append(f"    dims: [ {', '.join(map(str, dims))} ]")
        else:  # a scalar: Triton wants at least one dim, reshaped away
            body += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
        return ["  {", *body, "  }"]

    for key, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        entries = [tensor(t) for t in tensors]
        joined = [line for i, e in enumerate(entries) for line in (e if i == len(entries) - 1 else [*e[:-1], "  },"])]
        lines += [f"{key} [", *joined, "]"]
    if batched:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def _write_entry(out: Path, name: str, fill: Callable[[Path], None]) -> None:
    """Build one repository entry beside the repository, then swap it in.

    Not inside it: a server that scans the repository would take a
    half-written `.name.tmp-*` folder for a model.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{name}.tmp-", dir=out.resolve().parent))
    except OSError as e:
        raise UserError(f"{out}: cannot write the model repository here ({e.strerror})") from None
    try:
        fill(tmp)
        swap_in(tmp, out / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_triton(spec: ModelSpec, folder: Path, out: Path) -> None:
    """`<name>/` (onnxruntime backend, 1/model.onnx) and `<name>_tf/` (1/model.savedmodel)."""

    def onnx_entry(tmp: Path) -> None:
        (tmp / VERSION).mkdir()
        shutil.copy2(folder / layout.ONNX, tmp / VERSION / "model.onnx")
        (tmp / "config.pbtxt").write_text(triton_config(spec, spec.name, "onnx"))

    def tf_entry(tmp: Path) -> None:
        (tmp / VERSION).mkdir()
        shutil.copytree(folder / layout.SAVED_MODEL, tmp / VERSION / "model.savedmodel")
        (tmp / "config.pbtxt").write_text(triton_config(spec, f"{spec.name}_tf", "tensorflow"))

    _write_entry(out, spec.name, onnx_entry)
    _write_entry(out, f"{spec.name}_tf", tf_entry)


def write_tfserving(spec: ModelSpec, folder: Path, out: Path) -> None:
    """TF Serving's `<name>/<version>/` with the SavedModel inside."""
    _write_entry(out, spec.name, lambda tmp: shutil.copytree(folder / layout.SAVED_MODEL, tmp / VERSION))


LAYOUTS: dict[str, Callable[[ModelSpec, Path, Path], None]] = {
    "triton": write_triton,
    "tfserving": write_tfserving,
}
