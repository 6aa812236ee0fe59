"""A static demo page: the exported ONNX models run in the visitor's own browser.

`export-models --all --demo DIR` writes into DIR a page (index.html, demo.js,
the onnxruntime-web glue the ort_web runtime uses), onnxruntime-web's WASM
build copied from the pinned npm package (node/node_modules; never into
artifacts/, whose bytes `--check` compares), each model's ONNX file, and
demo.json with the models' signatures, tolerances and ONNX test data sets (inputs
and TF eager's outputs, as base64 float32). Serve it with
`python -m http.server -d DIR` and open the printed address.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np

from tf_parity_export.models import ArtifactError, UserError, get_spec
from tf_parity_export.verify import layout
from tf_parity_export.verify.runtimes import web
from tf_parity_export.verify.runtimes.node import INSTALL
from tf_parity_export.verify.test_data import read_sets

PAGE_DIR = Path(__file__).resolve().parent / "demo_page"
# The WASM-only build: the script and the one module/binary pair it loads.
ORT_FILES = (web.ORT_SCRIPT, "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
SERVE = "python -m http.server -d {dest}"


def check_demo_dest(dest: Path) -> None:
    """Refuse, before anything is exported, a destination that cannot hold the demo."""
    missing = [f for f in ORT_FILES if not (web.ORT_DIST / f).is_file()]
    if missing:
        raise UserError(f"--demo needs onnxruntime-web, which is not installed in {web.NODE_DIR} (run: {INSTALL})")
    if dest.exists() and not dest.is_dir():
        raise UserError(f"--demo {dest}: exists and is not a folder")


def write_demo(names: list[str], artifacts: Path, dest: Path) -> Path:
    """Write the demo page for the named models' artifacts into `dest`.

    Only the demo's own files are written (index.html, demo.js, ort_runner.js,
    demo.json, ort/*, models/*); nothing in `dest` is removed.

    Returns:
        The path of the page (dest/index.html).
    """
    check_demo_dest(dest)
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
    try:
        (dest / "ort").mkdir(parents=True, exist_ok=True)
        (dest / "models").mkdir(exist_ok=True)
        for name in names:
            _copy(Path(artifacts) / name / layout.ONNX, dest / "models" / f"{name}.onnx")
        for file in ORT_FILES:
            _copy(web.ORT_DIST / file, dest / "ort" / file)
        for file in ("index.html", "demo.js"):
            _copy(PAGE_DIR / file, dest / file)
        _copy(web.PAGE_DIR / "ort_runner.js", dest / "ort_runner.js")
    except OSError as e:
        raise UserError(f"--demo {dest}: cannot write here ({e.strerror})") from None
    layout.write_json(dest / "demo.json", {"schema": "tf-parity-demo/1", "models": models})
    return dest / "index.html"


def _tensor(array: np.ndarray) -> dict:
    """A float32 tensor as dims and base64 little-endian bytes (exact, unlike decimal text)."""
    if array.dtype != np.float32:
        raise ArtifactError(f"the demo page handles float32 tensors only, not {array.dtype}")
    return {"dims": list(array.shape), "data": base64.b64encode(np.ascontiguousarray(array, "<f4").tobytes()).decode()}


def _copy(src: Path, dst: Path) -> None:
    """Copy through a temporary name, so a reader never sees half a file."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
