"""Serving layouts built from an exported model folder: Triton and TF Serving.

Each writer has one shape, `(spec, folder, out)`: `folder` is a verified
artifact folder, `out` the model repository to add the model to.

A writer replaces only the version folder it writes (`<name>/1/`) and, for
Triton, `<name>/config.pbtxt`; other versions in `<name>/` stay. The version is
built in `<name>/.version.tmp-*` and swapped in atomically: both servers take
only numerically named subfolders of a model for versions (Triton ignores the
others, TF Serving's file-system source too), so neither loads a half-written
one. Files get the usual 0666/0777 less the umask.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from tf_parity_export.models import ModelSpec, UserError
from tf_parity_export.models.text import shown
from tf_parity_export.verify import layout

from .atomic import claim, swap_in

VERSION = "1"
TRITON_MAX_BATCH = 64
TF_SUFFIX = "_tf"  # Triton: model <name>'s TensorFlow-backend entry is <name>_tf/
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "int64": "TYPE_INT64"}


def batchable(spec: ModelSpec) -> bool:
    """True when every input and output has the batch as its first dimension.

    FancyMLP and chimera sum over the whole batch: Triton must not merge two
    requests into one batch for them, so they get `max_batch_size: 0` and an
    explicit dynamic batch dimension instead.
    """
    return all(t.shape[:1] == (None,) for t in (*spec.inputs, *spec.outputs))


def _quoted(text: str) -> str:
    """A protobuf text-format string literal: quotes, backslashes and control characters
    escaped (C escapes), UTF-8 kept, so Triton's parser reads back exactly `text`."""
    from google.protobuf import text_encoding

    return f'"{text_encoding.CEscape(text, as_utf8=True)}"'


def check_triton_names(names: list[str]) -> None:
    """Refuse, before anything is exported, a model named `<x>_tf`: the Triton layout gives every
    model a TensorFlow-backend entry `<name>_tf/`, so `<x>_tf/` would be model <x>'s entry and
    this model's at once (in this run, or in a repository another run wrote)."""
    clash = [n for n in names if n.endswith(TF_SUFFIX)]
    if clash:
        raise UserError(f"--format triton: model name {clash[0]!r} ends in {TF_SUFFIX!r}, the Triton layout's name "
                        f"for model {clash[0][:-len(TF_SUFFIX)]!r}'s TensorFlow entry; rename the model to export it "
                        "for Triton")


def triton_config(spec: ModelSpec, name: str, backend: str) -> str:
    """config.pbtxt for Triton's onnxruntime or tensorflow backend."""
    batched = batchable(spec)
    head = ['backend: "onnxruntime"'] if backend == "onnx" else ['platform: "tensorflow_savedmodel"']
    lines = [f"name: {_quoted(name)}", *head, f"max_batch_size: {TRITON_MAX_BATCH if batched else 0}"]
    if not batched:
        lines.append("# the output reduces over the whole batch: requests must not be batched together")

    def tensor(t) -> list[str]:
        dims = [-1 if d is None else d for d in t.shape]
        dims = dims[1:] if batched else dims
        body = [f"    name: {_quoted(t.name)}", f"    data_type: {_TRITON_TYPES[t.dtype]}"]
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


def _write_version(out: Path, name: str, fill: Callable[[Path], None], config: str | None = None) -> None:
    """Build version VERSION of model `name` inside `out/<name>/`, then swap it in;
    then write `config` (Triton's config.pbtxt) beside it."""
    entry = out / name
    try:
        entry.mkdir(parents=True, exist_ok=True)
        tmp = claim(entry, "version")  # hidden and not a number: no server takes it for a version
        tmp.mkdir()
    except OSError as e:
        raise UserError(f"{shown(entry)}: cannot write the model repository here ({e.strerror})") from None
    try:
        fill(tmp)
        swap_in(tmp, entry / VERSION)
        if config is not None:
            layout.write_text(entry / "config.pbtxt", config, temp=claim(entry, "config.pbtxt"))
    except OSError as e:
        raise UserError(f"{shown(entry / VERSION)}: cannot write the model repository here ({e.strerror})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_triton(spec: ModelSpec, folder: Path, out: Path) -> None:
    """`<name>/` (onnxruntime backend, 1/model.onnx) and `<name>_tf/` (1/model.savedmodel)."""
    check_triton_names([spec.name])
    _write_version(out, spec.name, lambda tmp: shutil.copyfile(folder / layout.ONNX, tmp / "model.onnx"),
                   triton_config(spec, spec.name, "onnx"))
    _write_version(out, f"{spec.name}{TF_SUFFIX}",
                   lambda tmp: _copy_tree(folder / layout.SAVED_MODEL, tmp / "model.savedmodel"),
                   triton_config(spec, f"{spec.name}{TF_SUFFIX}", "tensorflow"))


def write_tfserving(spec: ModelSpec, folder: Path, out: Path) -> None:
    """TF Serving's `<name>/<version>/` with the SavedModel inside."""
    _write_version(out, spec.name, lambda tmp: _copy_tree(folder / layout.SAVED_MODEL, tmp))


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy contents only (not modes): new files get 0666/0777 less the umask, readable by the server's user."""
    shutil.copytree(src, dest, copy_function=shutil.copyfile, dirs_exist_ok=True)


LAYOUTS: dict[str, Callable[[ModelSpec, Path, Path], None]] = {
    "triton": write_triton,
    "tfserving": write_tfserving,
}
# Per layout, the check of the model names it can hold, run before anything is exported.
NAME_CHECKS: dict[str, Callable[[list[str]], None]] = {
    "triton": check_triton_names,
    "tfserving": lambda names: None,
}
