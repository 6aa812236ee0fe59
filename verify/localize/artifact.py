"""What a model folder keeps so that it can be localized later, TensorFlow or not.

Two files, written at export and hashed in card.json like every other file:

- `tensor_sources.json`: for every tensor the main ONNX graph computes that
  came from a TF tensor, that TF tensor (tf2onnx named it so, but `model.onnx`
  is canonicalised to `t0`, `t1`, ..., so the file alone no longer says; where
  tf2onnx's name is ambiguous, the few it may be, see `match.onnx_candidates`);
  the signature's inputs and outputs with their TF tensor names; and the
  index of the stored values below. A tensor tf2onnx made up (a layout
  Transpose, a shape computation) is absent.
- `tf_intermediates.npy`: TensorFlow's value of every floating-point tensor of
  the frozen serving graph on the first test data set (`test_data_set_0`, the
  smallest random batch), float32, one flat array, in graph order, until
  `STORE_CAP_BYTES`; the tensors past the cap are named as left out. This is
  the reference a folder verified without TensorFlow is localized against.

Both come from the graph tf2onnx converted (`export/onnx_model.py`), in the
exporting process. A folder exported before they existed still verifies; it
is localized only with TensorFlow installed and says so otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf_parity_export.models import ArtifactError, ModelSpec

from .. import layout
from ..inputs import Case
from ..test_data import set_dir
from .match import onnx_candidates

SCHEMA = 1
# TF values kept per model: the seed models need a few KiB, MobileNetV2 at 96x96 5.3 MiB.
STORE_CAP_BYTES = 8 * 2**20
STORED_SET = set_dir(0)


@dataclass(frozen=True)
class Sources:
    """`tensor_sources.json`, read and checked."""

    tensors: dict[str, list[str]]  # canonical ONNX tensor -> the TF tensors it may hold (match.onnx_candidates)
    inputs: dict[str, str]  # signature input -> TF tensor name
    outputs: dict[str, str]  # signature output -> TF tensor name
    stored: dict[str, Any]  # {"set", "case", "index": [[tf name, shape, offset], ...], "left_out": [...]}


def record(folder: Path, spec: ModelSpec, exported: Any, case: str | None) -> None:
    """Write both files into `folder` (an export's staging folder, test data already written).

    Args:
        exported: what `export.onnx_model.export_onnx` returned: the canonical
            ModelProto written (`.model`), the `FrozenGraph` it was converted
            from (`.frozen`) and tf2onnx's name -> canonical name (`.names`).
        case: the case stored as `test_data_set_0`, or None when no test data set was written.
    """
    from onnx import numpy_helper

    from .reference import TfGraph

    onnx_model, frozen, names = exported.model, exported.frozen, exported.names
    graph = TfGraph(frozen.graph_def)
    tf_of = {sig: tf_name for tf_name, sig in frozen.renames.items()}
    back = {new: old for old, new in names.items()}
    # Only TF's own names are kept: tf2onnx's made-up ones carry per-process counters
    # (`Rsqrt__13`, `while_cond_1135`), and the file must be the same bytes in every export.
    tensors = {}
    for node in onnx_model.graph.node:
        for out in filter(None, node.output):
            found = onnx_candidates(tf_of.get(out) or back.get(out, out), graph.tensors)
            if found:
                tensors[out] = found
    data = bytearray()
    index: list[list[Any]] = []
    left_out: list[str] = []
    try:
        values = {}
        if case is not None:
            feed = {tf_name: numpy_helper.to_array(_tensor((folder / STORED_SET / f"input_{i}.pb").read_bytes()))
                    for i, tf_name in enumerate(frozen.inputs)}
            values = graph.run(feed, graph.tensors)
    finally:
        graph.close()
    if case is not None:
        for name in graph.tensors:  # graph order: the first layers are kept when the cap is reached
            value = np.asarray(values[name])
            if value.dtype != np.float32 or len(data) + value.nbytes > STORE_CAP_BYTES:
                left_out.append(name)
                continue
            index.append([name, list(value.shape), len(data) // 4])
            data += np.ascontiguousarray(value).tobytes()
    np.save(folder / layout.TF_INTERMEDIATES, np.frombuffer(bytes(data), np.float32), allow_pickle=False)
    layout.write_json(folder / layout.TENSOR_SOURCES, {
        "schema": SCHEMA,
        "tensors": tensors,
        "inputs": dict(zip((t.name for t in spec.inputs), frozen.inputs, strict=True)),
        "outputs": {sig: tf_name for tf_name, sig in frozen.renames.items() if sig in {t.name for t in spec.outputs}},
        "stored": {"set": STORED_SET if case is not None else None, "case": case, "file": layout.TF_INTERMEDIATES,
                   "index": index, "left_out": left_out},
    }, sort_keys=True)


def _tensor(data: bytes) -> Any:
    import onnx

    return onnx.TensorProto.FromString(data)


def read_sources(folder: Path, name: str, card: dict[str, Any]) -> Sources | None:
    """`tensor_sources.json` of a checked folder (`layout.check_folder`), or None if it has none."""
    if layout.TENSOR_SOURCES not in card["files"]:
        return None
    fix = f"re-export with `export-models {name}`"
    try:
        data = layout.read_json(folder / layout.TENSOR_SOURCES)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{name}: {layout.TENSOR_SOURCES} is unreadable ({e}); {fix}") from None
    ok = (isinstance(data, dict) and data.get("schema") == SCHEMA
          and all(_str_map(data.get(k)) for k in ("inputs", "outputs")) and _lists_map(data.get("tensors"))
          and isinstance(data.get("stored"), dict) and _index_ok(data["stored"].get("index"))
          and isinstance(data["stored"].get("left_out"), list))
    if not ok:
        raise ArtifactError(f"{name}: {layout.TENSOR_SOURCES} is not a schema-{SCHEMA} tensor map; {fix}")
    return Sources(data["tensors"], data["inputs"], data["outputs"], data["stored"])


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _lists_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v) for k, v in value.items())


def _index_ok(index: Any) -> bool:
    return isinstance(index, list) and all(
        isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and isinstance(e[1], list)
        and all(type(d) is int and d >= 0 for d in e[1]) and type(e[2]) is int and e[2] >= 0 for e in index)


def read_stored(folder: Path, name: str, sources: Sources,
                card: dict[str, Any]) -> tuple[Case, dict[str, np.ndarray]] | None:
    """The stored case (its inputs from `test_data_set_0`) and TF's values on it, or None if none were stored."""
    from google.protobuf.message import DecodeError
    from onnx import numpy_helper

    stored = sources.stored
    if stored.get("set") != STORED_SET or not isinstance(stored.get("case"), str) or \
            layout.TF_INTERMEDIATES not in card["files"]:
        return None
    fix = f"re-export with `export-models {name}`"
    try:
        flat = np.load(folder / layout.TF_INTERMEDIATES, allow_pickle=False)
        feed = {}
        for i in range(len(sources.inputs)):  # input_i.pb holds the signature's i-th input, under its name
            tensor = _tensor((folder / STORED_SET / f"input_{i}.pb").read_bytes())
            feed[tensor.name] = numpy_helper.to_array(tensor)
    except (OSError, ValueError, DecodeError) as e:
        raise ArtifactError(f"{name}: {layout.TF_INTERMEDIATES} is unreadable ({e}); {fix}") from None
    if flat.dtype != np.float32 or flat.ndim != 1:
        raise ArtifactError(f"{name}: {layout.TF_INTERMEDIATES} is not a flat float32 array; {fix}")
    values = {}
    for tf_name, shape, offset in stored["index"]:
        size = int(np.prod(shape))
        if offset + size > flat.size:
            raise ArtifactError(f"{name}: {layout.TENSOR_SOURCES} indexes past the end of "
                                f"{layout.TF_INTERMEDIATES}; {fix}")
        values[tf_name] = flat[offset:offset + size].reshape(shape)
    return Case(stored["case"], "stored", feed), values
