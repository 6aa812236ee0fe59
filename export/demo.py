"""A static demo page: the exported ONNX models run in the visitor's own browser.

`export-models --all --demo DIR` writes into DIR a page (index.html, demo.js,
the onnxruntime-web glue the ort_web runtime uses), onnxruntime-web's WASM
build copied from the pinned npm package (node/node_modules), each model's
ONNX file, and demo.json with the models' signatures, tolerances and ONNX test
data sets (inputs and TF eager's outputs, as base64 float32). Serve it with
`python -m http.server -d DIR` and open the printed address.

What may be written where:

- DIR is never the artifacts folder, a folder inside it, a model folder or
  a folder inside one, nor inside any artifacts root (a folder whose
  manifest.json is this tool's): `--check` compares those bytes, and the
  verifier refuses any file a model folder's card does not list.
- demo.json is the marker: it lists every file a demo wrote with its sha256
  (`"files"`). A file the demo writes that is already in DIR is replaced only
  if the previous demo.json lists it with the same sha256 (a previous demo
  wrote it and nobody changed it since); anything else (a user's own
  index.html, demo.json or models/*.onnx) is refused in one line before
  anything is exported. Nothing in DIR is ever removed but this run's own
  temporaries.
- Everything is first written to unique temporaries (`.<name>.tmp-<pid>-<hex>`
  beside its target, recorded in DIR/.export.lock, the ledger of
  export/atomic.py, so a killed run's are removed by the next one and a
  user's look-alike names never are), then renamed into place. A failed
  write (a full disk, the file-size limit) removes them and the folders this
  run created: DIR is as it was.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import numpy as np

from tf_parity_export.models import ArtifactError, UserError, get_spec
from tf_parity_export.models.text import shown
from tf_parity_export.verify import layout
from tf_parity_export.verify.runtimes import web
from tf_parity_export.verify.runtimes.node import INSTALL
from tf_parity_export.verify.test_data import read_sets

from .atomic import LOCK, claim, exclusive

PAGE_DIR = Path(__file__).resolve().parent / "demo_page"
# The WASM-only build: the script and the one module/binary pair it loads.
ORT_FILES = (web.ORT_SCRIPT, "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
SERVE = "python -m http.server -d {dest}"
DEMO_JSON = "demo.json"
SCHEMA = "tf-parity-demo/2"  # 2: demo.json lists the files the demo wrote ("files": {path: sha256})


def sources(names: list[str], artifacts: Path) -> dict[str, Path]:
    """Every file the demo copies, by its path in the demo folder (demo.json, which it writes, aside)."""
    files = {"index.html": PAGE_DIR / "index.html", "demo.js": PAGE_DIR / "demo.js",
             "ort_runner.js": web.PAGE_DIR / "ort_runner.js"}
    files.update({f"ort/{f}": web.ORT_DIST / f for f in ORT_FILES})
    files.update({f"models/{name}.onnx": Path(artifacts) / name / layout.ONNX for name in names})
    return files


def check_demo_dest(dest: Path, artifacts: Path, names: list[str]) -> None:
    """Refuse, before anything is exported, a destination the demo must not write into (see the
    module's docstring): one line naming the destination and why."""
    missing = [f for f in ORT_FILES if not (web.ORT_DIST / f).is_file()]
    if missing:
        raise UserError(f"--demo needs onnxruntime-web, which is not installed in {web.NODE_DIR} (run: {INSTALL})")
    where = f"--demo {shown(dest)}"
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{where}: exists and is not a folder")
    here, root = dest.resolve(), Path(artifacts).resolve()
    if here == root or here.is_relative_to(root):
        raise UserError(f"{where}: is {'the artifacts folder' if here == root else 'inside the artifacts folder'} "
                        f"{shown(artifacts)}, whose files are checked byte for byte; choose a folder outside it")
    for folder in (here, *here.parents):
        if _is_ours(folder / layout.CARD, "files"):
            raise UserError(f"{where}: {shown(folder)} is a model folder (it has {layout.CARD}); a model folder "
                            "holds only the files its card lists; choose a folder outside it")
        if _is_ours(folder / layout.INDEX, "models"):
            raise UserError(f"{where}: {shown(folder)} is an artifacts folder (its {layout.INDEX} is this tool's); "
                            "choose a folder outside it")
    _check_overwrites(dest, list(sources(names, artifacts)))


def _is_ours(path: Path, key: str) -> bool:
    """Whether `path` is this tool's card.json (`key` "files") or manifest.json ("models"): a JSON
    object with a "schema" and that key holding an object. A web site's own manifest.json is not."""
    try:
        data = layout.read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "schema" in data and isinstance(data.get(key), dict)


def _previous(dest: Path) -> dict[str, str]:
    """The files a previous demo wrote into `dest` ({path: sha256}, from its demo.json);
    refuses a demo.json that is not a demo's."""
    path = dest / DEMO_JSON
    if not os.path.lexists(path):
        return {}
    try:
        data = layout.read_json(path)
    except (OSError, ValueError) as e:
        raise UserError(f"--demo {shown(dest)}: {DEMO_JSON} is there and was not written by --demo ({e}); "
                        "refusing to overwrite it: choose another folder or move it away") from None
    files = data.get("files") if isinstance(data, dict) and data.get("schema") == SCHEMA else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise UserError(f"--demo {shown(dest)}: {DEMO_JSON} is there and was not written by --demo; refusing to "
                        "overwrite it: choose another folder or move it away")
    return files


def _check_overwrites(dest: Path, rels: list[str]) -> dict[str, str]:
    """Refuse to replace a file a previous demo did not write (or that changed since);
    returns the previous demo's listing."""
    previous = _previous(dest)
    for rel in rels:
        target = dest / rel
        if not os.path.lexists(target):
            continue
        ours = target.is_file() and not target.is_symlink() and previous.get(rel) == layout.sha256(target)
        if not ours:
            raise UserError(f"--demo {shown(dest)}: {shown(rel)} is there and was not written by a previous --demo "
                            f"(or changed since); refusing to overwrite it: choose another folder or move it away")
    return previous


def write_demo(names: list[str], artifacts: Path, dest: Path) -> Path:
    """Write the demo page for the named models' artifacts into `dest`, all or nothing.

    Only the demo's own files are written (index.html, demo.js, ort_runner.js,
    demo.json, ort/*, models/*); nothing in `dest` is removed, and a file
    there that a previous demo did not write is never replaced (UserError).

    Returns:
        The path of the page (dest/index.html).
    """
    dest = Path(dest)
    check_demo_dest(dest, artifacts, names)
    models = {}
    for name in names:
        spec = get_spec(name)
        folder = Path(artifacts) / name
        card = layout.read_card(folder, name)
        layout.check_files(folder, name, card)
        sets = []
        for stored in read_sets(folder, spec, card):
            sets.append({"case": stored.case.name, "kind": stored.case.kind,
                         "inputs": {k: _tensor(v) for k, v in stored.case.feed.items()},
                         "outputs": {k: _tensor(v) for k, v in stored.expected.items()},
                         "path": stored.path})
        models[name] = {"summary": spec.summary, "atol": spec.atol, "rtol": spec.rtol,
                        "inputs": [t.to_json() for t in spec.inputs], "outputs": [t.to_json() for t in spec.outputs],
                        "onnx": f"models/{name}.onnx", "sets": sets}
    files = sources(names, artifacts)
    created = [d for d in (dest, dest / "ort", dest / "models") if not os.path.lexists(d)]
    lock_made = not os.path.lexists(dest / LOCK)
    try:
        with exclusive(dest):  # two demos into one folder take turns; a killed one's temporaries are swept
            previous = _check_overwrites(dest, list(files))  # again, under the lock
            _write_all(dest, files, {"schema": SCHEMA, "models": models}, previous)
    except BaseException:
        if lock_made:  # its ledger is empty again: the failed write removed what it recorded
            (dest / LOCK).unlink(missing_ok=True)
        for folder in reversed(created):  # only what this run made, and only if it is empty again
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return dest / "index.html"


def _write_all(dest: Path, files: dict[str, Path], demo: dict, previous: dict[str, str]) -> None:
    """Stage every file, demo.json (the listing) included, as a temporary recorded in the lock's
    ledger beside its target, then rename them all into place. Staging is where a write fails (a
    full disk, the file-size limit): then nothing in `dest` has changed, and the lock's sweep
    removes the temporaries."""
    import json

    staged: list[tuple[Path, Path]] = []  # (temporary, target)
    digests = {}
    try:
        for rel, src in files.items():
            target = dest / rel
            target.parent.mkdir(exist_ok=True)
            tmp = claim(target.parent, target.name)
            with open(src, "rb") as f:
                digests[rel] = _write_new(tmp, iter(lambda: f.read(1 << 20), b""))
            staged.append((tmp, target))
        # A previous demo's files this one does not rewrite (other models) stay listed while unchanged.
        kept = {rel: digest for rel, digest in previous.items() if rel not in digests and (dest / rel).is_file()
                and not (dest / rel).is_symlink() and layout.sha256(dest / rel) == digest}
        listing = {**demo, "files": dict(sorted({**kept, **digests}.items()))}
        text = json.dumps(layout.json_safe(listing), indent=2, allow_nan=False) + "\n"
        tmp = claim(dest, DEMO_JSON)
        _write_new(tmp, [text.encode()])
        staged.append((tmp, dest / DEMO_JSON))
        for tmp, target in staged:
            os.replace(tmp, target)
    except OSError as e:  # the temporaries are in the lock's ledger: leaving `exclusive` removes them
        raise UserError(f"--demo {shown(dest)}: cannot write here ({e.strerror or e}); nothing was changed") from None


def _write_new(path: Path, blocks) -> str:
    """Write `blocks` of bytes into a new file (O_EXCL: never through someone else's file, mode 0666
    less the umask); returns its sha256."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        for block in blocks:
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def _tensor(array: np.ndarray) -> dict:
    """A float32 tensor as dims and base64 little-endian bytes (exact, unlike decimal text)."""
    if array.dtype != np.float32:
        raise ArtifactError(f"the demo page handles float32 tensors only, not {array.dtype}")
    return {"dims": list(array.shape), "data": base64.b64encode(np.ascontiguousarray(array, "<f4").tobytes()).decode()}
