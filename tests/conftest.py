"""Shared fixtures: one real export of every model per test session."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from tf_parity_export.models import MODELS


def _made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder `make` fills, made once per test run. Under pytest-xdist every worker runs the
    session fixtures: the first to get the lock makes the folder in the run's shared temporary
    folder, the others wait for it and use it (both exporting would double the suite's slowest work)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        out = tmp_path_factory.mktemp(name)
        make(out)
        return out
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's own
    out, done, failed = shared / name, shared / f"{name}.done", shared / f"{name}.failed"
    with open(shared / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if `make` raises
        if failed.exists():  # the other worker's attempt failed: the same error, not the same minutes again
            raise RuntimeError(f"making {name} failed in another worker: {failed.read_text()}")
        if not done.exists():
            out.mkdir()
            try:
                make(out)
            except BaseException as e:
                failed.write_text(f"{type(e).__name__}: {e}")
                raise
            done.touch()
    return out


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every registered model exported once (real TensorFlow and tf2onnx). Tests only read it (those
    that damage files take a copy_of it)."""
    from tf_parity_export.export import export_models

    return _made_once(tmp_path_factory, "artifacts", lambda out: export_models(list(MODELS), out, verify=False))


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory, artifacts: Path):
    """The verifier's report on those artifacts, on every runtime (made once per run, like them)."""
    import pickle

    from tf_parity_export.verify import verify_models

    def make(folder: Path) -> None:
        (folder / "report.pickle").write_bytes(pickle.dumps(verify_models(list(MODELS), artifacts)))

    return pickle.loads((_made_once(tmp_path_factory, "report", make) / "report.pickle").read_bytes())


@pytest.fixture(scope="session")
def tf_free_python(tmp_path_factory) -> Path:
    """A second virtual environment with onnxruntime, onnx, numpy, click, LiteRT and playwright (for ort_web),
    and no TensorFlow. Returns its bin/ folder."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]

    def make(folder: Path) -> None:
        venv = folder / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               "--no-compile"]  # no .pyc compiled ahead: a third of the install time
        subprocess.run([*pip, "-c", str(root / "constraints.txt"), "onnxruntime", "onnx", "numpy", "click",
                        "ai-edge-litert", "playwright"], check=True)
        subprocess.run([*pip, "--no-deps", "-e", str(root)], check=True)

    return _made_once(tmp_path_factory, "tf-free", make) / "venv" / "bin"


@pytest.fixture
def short_tmpdir():
    """An empty folder with a short path, to be a run's TMPDIR (Chromium's socket path inside it must stay
    under 108 bytes, which pytest's own temporary folders are too deep for)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="tfp-", dir="/tmp" if Path("/tmp").is_dir() else None))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def as_plugin(monkeypatch):
    """Register a spec as if an entry point had provided it (replacing a seed model's for the test)."""
    from tf_parity_export.models import plugins

    def register(spec):
        monkeypatch.setitem(MODELS, spec.name, spec)
        monkeypatch.setitem(plugins.ORIGINS, spec.name, plugins.Origin(spec.name, "tests:SPEC", "test-plugin 1.0"))
        return spec.name

    return register


@pytest.fixture
def copy_of(artifacts: Path, tmp_path: Path):
    """A private copy of the session artifacts, for tests that damage files."""
    import shutil

    def make(name: str) -> Path:
        dest = tmp_path / "artifacts"
        shutil.copytree(artifacts / name, dest / name)
        shutil.copy(artifacts / "manifest.json", dest / "manifest.json")
        return dest

    return make


@pytest.fixture
def chromium(report):
    """A headless Chromium driven by Playwright, for tests that look at pages.

    Depends on `report` so the verifier's own browser (ort_web) has run and
    stopped first, and lives for one test only: Playwright's sync API cannot
    run twice at once in one thread.
    Skips with a one-line reason where there is no Chromium or Playwright.
    """
    from tf_parity_export.verify.runtimes import web

    reason = web.missing()
    if reason:
        pytest.skip(f"no browser here: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=web.find_chromium(), args=web.CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def count_colours(chromium):
    """How many distinct colours a PNG screenshot has (decoded by Chromium itself, into a canvas)."""
    return lambda png: _count_colours(chromium, png)


def _count_colours(browser, png: bytes) -> int:
    import base64

    page = browser.new_page()
    try:
        return page.evaluate("""async (b64) => {
            const img = new Image();
            img.src = 'data:image/png;base64,' + b64;
            await img.decode();
            const canvas = new OffscreenCanvas(img.width, img.height);
            const ctx = canvas.getContext('2d');
            ctx.drawImage(img, 0, 0);
            const px = new Uint32Array(ctx.getImageData(0, 0, img.width, img.height).data.buffer);
            return new Set(px).size;
        }""", base64.b64encode(png).decode())
    finally:
        page.close()


def resign_folder(folder: Path) -> None:
    """Re-sign a model folder after changing it, as an attacker with write access
    to everything would: card.json's hashes, then manifest.json's entry for the card."""
    import json

    from tf_parity_export.verify import layout

    card = json.loads((folder / layout.CARD).read_text())
    card["files"] = layout.hash_tree(folder)
    (folder / layout.CARD).write_text(json.dumps(card))
    index_path = folder.parent / layout.INDEX
    index = json.loads(index_path.read_text())
    index["models"][folder.name].update(card_sha256=layout.sha256(folder / layout.CARD),
                                        onnx_sha256=layout.sha256(folder / layout.ONNX))
    index_path.write_text(json.dumps(index))


@pytest.fixture
def resign():
    """`resign(folder)`: re-sign a changed model folder's card and manifest entry."""
    return resign_folder
