"""ONNX test data sets: `test_data_set_N/input_i.pb` and `output_i.pb`.

This is the layout of the ONNX model zoo and onnxruntime's `onnx_test_runner`:
serialized TensorProtos named after the graph's inputs and outputs. The
outputs are TF eager's, so any ONNX runtime can check the artifact with no
TensorFlow installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf_parity_export.models import ArtifactError, ModelSpec, PluginError

from .inputs import Case

PREFIX = "test_data_set_"
# The most array data the stored test data sets of one model may hold (inputs and TF
# eager's outputs, all sets). A seed model's take 1.5 KB; 64 MiB holds the ten random
# rows (batches 1, 2 and 7) of a 1024x1024 float32 image (40 MiB) with room for their
# outputs and a few coverage cases. What goes past it is a typo'd shape (2e7 elements
# per row: 763 MiB), and all of it would be written, hashed, read back by every
# verification and copied into a demo page.
MAX_TEST_DATA_BYTES = 64 * 2**20


def check_test_data_size(spec: ModelSpec, nbytes: int, what: str) -> None:
    """Refuse test data of `nbytes` over MAX_TEST_DATA_BYTES in one line naming the model."""
    if nbytes > MAX_TEST_DATA_BYTES:
        raise PluginError(f"{spec.name}: {what} take {_size(nbytes)}, over the cap of {_size(MAX_TEST_DATA_BYTES)} "
                          f"on a model's stored test data (inputs {[t.to_json()['shape'] for t in spec.inputs]}); "
                          "declare smaller inputs")


def _size(nbytes: int) -> str:
    return f"{nbytes} bytes" if nbytes < 2**20 else f"{nbytes / 2**20:.1f} MiB"


def random_data_bytes(spec: ModelSpec) -> int:
    """The bytes of the random cases' inputs, from the declared shapes alone (nothing allocated)."""
    import math

    from .inputs import BATCH_SIZES

    per_row = sum(math.prod(d or 1 for d in t.shape[1:]) * np.dtype(t.dtype).itemsize for t in spec.inputs)
    return per_row * sum(BATCH_SIZES)


@dataclass(frozen=True)
class StoredCase:
    """One test data set: its inputs, TF eager's outputs, and the control-flow
    path measured at export (None for models without control flow)."""

    case: Case
    expected: dict[str, np.ndarray]
    path: dict[str, Any] | None


def set_dir(index: int) -> str:
    return f"{PREFIX}{index}"


def write_set(folder: Path, index: int, spec: ModelSpec, feed: dict[str, np.ndarray],
              outputs: dict[str, np.ndarray]) -> str:
    """Write one test data set under `folder`; returns its directory name."""
    from onnx import numpy_helper

    name = set_dir(index)
    target = folder / name
    target.mkdir()
    for i, sig in enumerate(spec.inputs):
        (target / f"input_{i}.pb").write_bytes(numpy_helper.from_array(feed[sig.name], sig.name).SerializeToString())
    for i, sig in enumerate(spec.outputs):
        (target / f"output_{i}.pb").write_bytes(numpy_helper.from_array(outputs[sig.name], sig.name).SerializeToString())
    return name


def read_sets(folder: Path, spec: ModelSpec, card: dict[str, Any]) -> list[StoredCase]:
    """Read every test data set the card lists, checking tensor names against the spec."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import numpy_helper

    def load(rel: str, want: str) -> np.ndarray:
        # Only hashed files are read: the card's `test_data` could name any set.
        if rel not in card["files"]:
            raise ArtifactError(f"{spec.name}: card.json names test data {rel!r} but does not list (hash) it; "
                                f"re-export with `export-models {spec.name}`")
        try:
            tensor = onnx.TensorProto.FromString((folder / rel).read_bytes())
            array = numpy_helper.to_array(tensor)
        except (OSError, DecodeError, ValueError, TypeError) as e:
            raise ArtifactError(f"{spec.name}: {rel} is unreadable ({type(e).__name__})") from None
        if tensor.name != want:
            raise ArtifactError(f"{spec.name}: {rel} holds {tensor.name!r}, expected {want!r}")
        return array

    stored = []
    for entry in card.get("test_data", []):  # read_card checked each entry's types and set name
        base = entry["set"]
        feed = {s.name: load(f"{base}/input_{i}.pb", s.name) for i, s in enumerate(spec.inputs)}
        expected = {s.name: load(f"{base}/output_{i}.pb", s.name) for i, s in enumerate(spec.outputs)}
        stored.append(StoredCase(Case(entry["case"], entry["kind"], feed), expected, entry.get("path")))
    return stored
