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
    <root>/<model>/model.tflite   LiteRT (TFLite), converted from the SavedModel (where the
                                  converter can: card.json "formats" says why not)
    <root>/<model>/model.weights.h5   Keras weights: rebuilds the TF eager reference
    <root>/<model>/cases.npz      the control-flow coverage inputs found at export
    <root>/<model>/test_data_set_N/   ONNX test data: input_i.pb, output_i.pb (TF eager's outputs)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import resource
import secrets
import stat
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np

from tf_parity_export.models import ArtifactError, UserError

# 2: card.json lists the ONNX test data sets; 3: and model.tflite; 4: "formats" says whether the
# deployment format (LiteRT) could be made, and the signature carries input ranges
SCHEMA_VERSION = 4
INDEX = "manifest.json"
REPORT = "report.json"
CARD = "card.json"
SAVED_MODEL = "saved_model"
ONNX = "model.onnx"
TFLITE = "model.tflite"
WEIGHTS = "model.weights.h5"
CASES = "cases.npz"
SERVING_SIGNATURE = "serving_default"
# Core formats: a model that cannot produce them is not exported. Deployment formats: where the
# converter cannot make one, the folder is still written and card.json says why ("unsupported").
CORE_FORMATS = ("saved_model", "onnx")
DEPLOYMENT_FORMATS = {"litert": TFLITE}


def format_state(card: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A deployment format's entry in the card: {"status": "ok"} (with "static_batch": 1 where the
    converter needed a fixed batch of one row) or {"status": "unsupported", "reason": ...}."""
    return card.get("formats", {}).get(fmt, {"status": "ok"})


def umask() -> int:
    """The process umask (read by setting it, so set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_safe(data: Any) -> Any:
    """`data` with every non-finite float spelled out as a string, so the JSON is strict.

    NaN becomes "NaN", +inf "Infinity" and -inf "-Infinity" (the spellings of
    the protobuf JSON mapping): JSON has no such numbers, and writing `null`
    would hide which one it was. Finite floats, numpy scalars included, stay numbers.
    """
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    if isinstance(data, (float, np.floating)):
        value = float(data)
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(data, np.integer):
        return int(data)
    return data


def write_json(path: Path, data: Any, sort_keys: bool = False, temp: Path | None = None) -> None:
    """Write strict JSON atomically (non-finite numbers are encoded by `json_safe`);
    see `write_text`."""
    write_text(path, json.dumps(json_safe(data), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n", temp)


def write_text(path: Path, text: str, temp: Path | None = None) -> None:
    """Write a text file atomically (a reader sees the old file or the new one,
    never half of one). Any failure to write (a read-only folder, a full disk,
    the file-size limit, a folder in the way) is a one-line UserError and leaves
    no temporary file behind.

    Args:
        temp: the temporary to write first (export passes one recorded in its
            lock file, see export/atomic.py); by default a fresh hidden name beside `path`.
    """
    path = Path(path)
    tmp = Path(temp) if temp is not None else path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    created = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never write through someone else's file; mode 0666 less the umask, like any new file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if created:
            tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write here ({e.strerror or e})") from None


def check_room(folder: Path, need: int, what: str) -> None:
    """Refuse, in one line, to write about `need` bytes into `folder` when the
    process's file-size limit (`ulimit -f`) or the free space is smaller.

    HDF5 (Keras' weights file) crashes the process instead of raising when a
    write fails with EFBIG, so that file is checked before it is written.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and soft < need:
        raise UserError(f"{what}: needs up to {need} bytes, over this process's file-size limit of {soft} bytes "
                        "(ulimit -f)")
    try:
        st = os.statvfs(folder)
    except OSError:
        return
    if st.f_bavail * st.f_frsize < need:
        raise UserError(f"{what}: needs up to {need} bytes, only {st.f_bavail * st.f_frsize} are free on its disk")


MAX_JSON_BYTES = 16 * 2**20  # a card or manifest is a few KiB


def read_json(path: Path) -> Any:
    """Parse a small JSON file that must be a regular file (not a symlink, FIFO or
    device: /dev/zero or a pipe would never end); raises OSError or ValueError
    (deeply nested input included)."""
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        raise ValueError("a symlink" if stat.S_ISLNK(mode) else "not a regular file")
    with path.open("rb") as f:
        data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"larger than {MAX_JSON_BYTES // 2**20} MiB")
    try:
        return json.loads(data.decode())
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text: {e.reason}") from None


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


def resolve_spec(model: Any, artifacts: Path | None = None) -> Any:
    """The ModelSpec for `model`: a spec as given, a registered name's, or, for a model exported
    from a file (`export-models m.keras`), the one its folder's card records."""
    from tf_parity_export.models import ModelSpec, UnknownModelError, get_spec
    from tf_parity_export.models.from_file import spec_from_card

    if isinstance(model, ModelSpec):
        return model
    try:
        return get_spec(model)
    except UnknownModelError:
        folder = Path(artifacts) / model if artifacts is not None and _confined(str(model)) else None
        try:
            card = read_json(folder / CARD) if folder is not None else None
        except (OSError, ValueError):
            card = None
        spec = spec_from_card(model, folder, card) if isinstance(card, dict) else None
        if spec is None:
            raise
        return spec


def file_models(artifacts: Path) -> list[str]:
    """The models in `artifacts` exported from a file (their cards record a source), by name."""
    found = []
    for folder in sorted(Path(artifacts).iterdir()) if Path(artifacts).is_dir() else []:
        try:
            card = read_json(folder / CARD) if folder.is_dir() and not folder.name.startswith(".") else None
        except (OSError, ValueError):
            continue
        if isinstance(card, dict) and isinstance(card.get("source"), dict):
            found.append(folder.name)
    return found


def _read_artifact_json(path: Path, name: str, missing: str, fix: str) -> Any:
    """`read_json(path)`, with a missing or unreadable file as one line naming the model and the fix."""
    try:
        return read_json(path)
    except FileNotFoundError:
        raise ArtifactError(f"{name}: {path} is {missing}; {fix}") from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{name}: {path} is unreadable ({e}); {fix}") from None


def read_card(folder: Path, name: str) -> dict[str, Any]:
    """Read and validate `folder/card.json`: a current-schema card whose fields the
    verifier uses have the right types (paths are checked by `check_files`)."""
    path = folder / CARD
    if not folder.is_dir():
        raise ArtifactError(f"{name}: no artifact folder at {folder}; run `export-models {name}`")
    fix = f"re-export with `export-models {name}`"
    card = _read_artifact_json(path, name, "missing", fix)
    if not isinstance(card, dict) or card.get("schema") != SCHEMA_VERSION or not isinstance(card.get("files"), dict):
        raise ArtifactError(f"{name}: {path} is not a schema-{SCHEMA_VERSION} card; {fix}")

    def bad(field: str, want: str) -> ArtifactError:
        return ArtifactError(f"{name}: {CARD} field {field!r} must be {want}; {fix}")

    for rel, digest in card["files"].items():
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise bad(f"files[{rel!r}]", "a sha256 hex digest")
    if "seed" in card and (type(card["seed"]) is not int or not 0 <= card["seed"] < 2**32):
        raise bad("seed", "an integer in [0, 2**32)")
    entries = card.get("test_data", [])
    if not isinstance(entries, list):
        raise bad("test_data", "a list")
    source = card.get("source")
    if source is not None and not (isinstance(source, dict) and source.get("format") in ("keras", "h5", "saved_model")
                                   and isinstance(source.get("custom_modules", []), list)
                                   and all(isinstance(m, str) for m in source.get("custom_modules", []))):
        raise bad("source", 'an object with "format" keras, h5 or saved_model and a list of "custom_modules"')
    formats = card.get("formats", {})
    if not isinstance(formats, dict):
        raise bad("formats", "an object")
    for fmt, state in formats.items():
        if fmt not in DEPLOYMENT_FORMATS or not isinstance(state, dict) or state.get("status") not in ("ok", "unsupported") \
                or not isinstance(state.get("reason", ""), str) or state.get("static_batch") not in (None, 1):
            raise bad(f"formats[{fmt!r}]", 'a known format with "status" "ok" or "unsupported", a string "reason" '
                      'and an optional "static_batch" of 1')
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("set"), str) and isinstance(entry.get("case"), str)
                and isinstance(entry.get("kind"), str) and isinstance(entry.get("path"), (dict, type(None)))):
            raise bad(f"test_data[{i}]", 'an object with string "set", "case", "kind" and an object or null "path"')
        if not re.fullmatch(r"test_data_set_[0-9]+", entry["set"]):
            raise ArtifactError(f"{name}: {CARD} names test data set {entry['set']!r}, not a test_data_set_N "
                                f"folder inside the model folder; refusing it")
    return card


def _confined(rel: str) -> bool:
    """A POSIX path relative to the model folder that cannot climb out of it."""
    pure = PurePosixPath(rel)
    return bool(rel) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in rel and "\0" not in rel


def check_files(folder: Path, name: str, card: dict[str, Any]) -> None:
    """The card covers the folder exactly, and nothing changed since export.

    Refuses: a listed path that is absolute, climbs out with `..` or leads
    through a symlink; a listed file that is missing or whose bytes changed;
    any entry in the folder the card does not list (an unlisted file could
    be read unhashed, so it is refused by name); a symlink, FIFO or other
    non-regular file anywhere in the folder. Every test data file the card's
    `test_data` names must be listed too.
    """
    fix = f"re-export with `export-models {name}`"
    files = card["files"]
    for rel in sorted(files):
        if not _confined(rel):
            raise ArtifactError(f"{name}: card.json lists {rel!r}, a path outside the model folder; refusing it")
    present = {}
    for dirpath, dirnames, filenames in os.walk(folder):  # does not follow symlinks
        base = Path(dirpath)
        for entry in sorted([*dirnames, *filenames]):
            path = base / entry
            rel = path.relative_to(folder).as_posix()
            shown = rel if rel.isprintable() else repr(rel)  # a newline in a name must not split the line
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ArtifactError(f"{name}: {shown} is a symlink; a model folder holds only regular files; refusing it")
            if stat.S_ISREG(mode):
                present[rel] = path
            elif not stat.S_ISDIR(mode):
                raise ArtifactError(f"{name}: {shown} is not a regular file; refusing it")
    for rel in sorted(files):
        if rel not in present:
            raise ArtifactError(f"{name}: {rel} is missing (listed in card.json); {fix}")
        if sha256(present[rel]) != files[rel]:
            raise ArtifactError(f"{name}: {rel} changed since export (sha256 mismatch); {fix}")
    unlisted = sorted(rel if rel.isprintable() else repr(rel) for rel in present if rel not in files and rel != CARD)
    if unlisted:
        raise ArtifactError(f"{name}: {unlisted[0]} is in the model folder but not listed in card.json "
                            f"(unhashed); remove it or {fix}")
    deployed = [file for fmt, file in DEPLOYMENT_FORMATS.items() if format_state(card, fmt)["status"] == "ok"]
    from tf_parity_export.models.from_file import SOURCE_FILES

    source = SOURCE_FILES.get((card.get("source") or {}).get("format"))  # a model file's copy rebuilds it
    for required in (ONNX, WEIGHTS, f"{SAVED_MODEL}/saved_model.pb", *deployed, *([source] if source else [])):
        if required not in files:
            raise ArtifactError(f"{name}: card.json does not list {required}; {fix}")


def check_manifest(root: Path, name: str) -> None:
    """The card is the one `manifest.json` recorded at export (a card edited
    and re-signed afterwards is refused), and so is the ONNX file."""
    path = root / INDEX
    fix = f"re-export with `export-models {name}`"
    index = _read_artifact_json(path, name, "missing, so card.json cannot be checked", fix)
    models = index.get("models") if isinstance(index, dict) else None
    entry = models.get(name) if isinstance(models, dict) else None
    if not isinstance(entry, dict):
        raise ArtifactError(f"{name}: {path} has no entry for {name}; {fix}")
    # An export records the folder it is about to swap in as "pending" first
    # (export/writer.py), so either card verifies after a kill -9 in between.
    card_hash, onnx_hash = sha256(root / name / CARD), sha256(root / name / ONNX)
    pending = entry.get("pending") if isinstance(entry.get("pending"), dict) else {}
    recorded = [e for e in (entry, pending) if e.get("card_sha256") == card_hash]
    if not recorded:
        raise ArtifactError(f"{name}: card.json does not match {INDEX} (sha256 mismatch: the card changed "
                            f"since export); {fix}")
    if recorded[0].get("onnx_sha256") != onnx_hash:
        raise ArtifactError(f"{name}: {ONNX} does not match {INDEX} (sha256 mismatch); {fix}")


def check_folder(root: Path, name: str) -> dict[str, Any]:
    """Every integrity check on `root/name`, before anything in it is parsed
    or loaded: the card, its paths and hashes, the manifest, ONNX external data.

    Returns:
        The validated card.
    """
    folder = Path(root) / name
    card = read_card(folder, name)
    check_files(folder, name, card)
    check_manifest(Path(root), name)
    check_onnx_external_data(folder, name, card)
    return card


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
