"""The artifact contract: what a model folder holds, and how it is checked.

The writer in `export` and the reader here share these names, so the
contract lives beside its reader (verify must not import export).

    <root>/manifest.json          index: models, versions, opset
    <root>/report.json            the last verification report
    <root>/report.html            the same report as a page (verify/report_html.py)
    <root>/<model>/card.json      signature, opset, tolerances, parameters,
                                  tool versions, sha256 of every file below
    <root>/<model>/saved_model/   SavedModel, signature "serving_default"
    <root>/<model>/model.onnx     ONNX
    <root>/<model>/model.tflite   LiteRT (TFLite), converted from the SavedModel
    <root>/<model>/model.weights.h5   Keras weights: rebuilds the TF eager reference
    <root>/<model>/cases.npz      the control-flow coverage inputs found at export
    <root>/<model>/test_data_set_N/   ONNX test data: input_i.pb, output_i.pb (TF eager's outputs)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from tf_parity_export.models import ArtifactError, UserError

SCHEMA_VERSION = 3  # 2: card.json lists the ONNX test data sets; 3: and model.tflite
INDEX = "manifest.json"
REPORT = "report.json"
CARD = "card.json"
SAVED_MODEL = "saved_model"
ONNX = "model.onnx"
TFLITE = "model.tflite"
WEIGHTS = "model.weights.h5"
CASES = "cases.npz"
SERVING_SIGNATURE = "serving_default"


def umask() -> int:
    """The process umask (read by setting it, so set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any, sort_keys: bool = False) -> None:
    """Write JSON atomically (a reader sees the old file or the new one, never
    half of one); a folder that cannot be written is a one-line UserError."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically; a folder that cannot be written is a one-line UserError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")  # swept by export's lock
    except OSError as e:
        raise UserError(f"{path}: cannot write here ({e.strerror})") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` except the card, by POSIX relative path."""
    return {
        p.relative_to(folder).as_posix(): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != CARD
    }


def read_card(folder: Path, name: str) -> dict[str, Any]:
    path = folder / CARD
    if not folder.is_dir():
        raise ArtifactError(f"{name}: no artifact folder at {folder}; run `export-models {name}`")
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{name}: {path} is missing; re-export with `export-models {name}`") from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{name}: {path} is unreadable ({e}); re-export with `export-models {name}`") from None
    if not isinstance(card, dict) or card.get("schema") != SCHEMA_VERSION or not isinstance(card.get("files"), dict):
        raise ArtifactError(f"{name}: {path} is not a schema-{SCHEMA_VERSION} card; re-export with `export-models {name}`")
    return card


def check_files(folder: Path, name: str, card: dict[str, Any]) -> None:
    """Refuse unsafe paths, missing files and any file whose bytes changed."""
    for rel, expected in sorted(card["files"].items()):
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or "\\" in rel:
            raise ArtifactError(f"{name}: card.json lists {rel!r}, a path outside the model folder; refusing it")
        path = folder / rel
        if not path.is_file():
            raise ArtifactError(f"{name}: {rel} is missing (listed in card.json); re-export with `export-models {name}`")
        if sha256(path) != expected:
            raise ArtifactError(f"{name}: {rel} changed since export (sha256 mismatch); re-export with `export-models {name}`")
    for required in (ONNX, TFLITE, WEIGHTS, f"{SAVED_MODEL}/saved_model.pb"):
        if required not in card["files"]:
            raise ArtifactError(f"{name}: card.json does not list {required}; re-export with `export-models {name}`")


def check_onnx_external_data(folder: Path, name: str, card: dict[str, Any]) -> None:
    """ONNX external-data locations obey the same rule as card paths (cf. CVE-2024-27318):
    relative, inside the model folder, and listed (so hashed) in card.json.

    Reads the graph without following any location, before anything loads it.
    """
    import onnx

    try:
        model = onnx.load(str(folder / ONNX), load_external_data=False)
    except Exception as e:  # DecodeError and friends on a corrupted file
        raise ArtifactError(f"{name}: {ONNX} cannot be parsed ({type(e).__name__})") from None
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        pure = PurePosixPath(location)
        if not location or pure.is_absolute() or ".." in pure.parts or "\\" in location or ":" in location:
            raise ArtifactError(f"{name}: {ONNX} tensor {tensor.name!r} points to external data at "
                                f"{location!r}, outside the model folder; refusing it")
        if pure.as_posix() not in card["files"]:
            raise ArtifactError(f"{name}: {ONNX} tensor {tensor.name!r} reads {location!r}, "
                                "which card.json does not list; refusing it")


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _tensors(sub)
