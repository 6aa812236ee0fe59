"""Installed like any package (issue 17): a non-editable install in a fresh virtual environment runs
ort_node and ort_web after the one documented command, `verify-models --install-node`, which puts
the pinned Node project in a per-user folder (site-packages is not the user's to write, and a
reinstall would lose node_modules there). Marked `install`: it builds a venv and runs npm (about a
minute); the README's test command runs it after the plain suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.install


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with this package installed non-editable (a built wheel), without TensorFlow."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--no-compile"]  # no .pyc compiled ahead: a third of the install time
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), "onnxruntime", "onnx", "numpy", "click", "playwright"],
                   check=True)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True)  # not -e: files copied into site-packages
    return venv / "bin"


def test_a_non_editable_install_runs_node_and_the_browser_after_install_node(installed, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("TF_PARITY_NODE_DIR", None)
    verify = [str(installed / "verify-models"), "--all", "--artifacts", str(ROOT / "artifacts")]
    site = subprocess.run([str(installed / "python"), "-c", "import tf_parity_export, pathlib; "
                           "print(pathlib.Path(tf_parity_export.__file__).parent)"], capture_output=True, text=True,
                          cwd=tmp_path, check=True).stdout.strip()
    assert "site-packages" in site and (Path(site) / "node" / "package-lock.json").is_file()  # shipped, not linked
    before = subprocess.run([*verify, "--providers", "ort_node"], capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=600)
    assert before.returncode == 1
    assert "run: verify-models --install-node" in before.stdout + before.stderr, before.stdout + before.stderr
    install = subprocess.run([str(installed / "verify-models"), "--install-node"], capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=900)
    assert install.returncode == 0, install.stdout + install.stderr
    where = tmp_path / "cache" / "tf-parity-export"
    assert [p.name for p in where.iterdir()] == ["node-0.1.0"]
    assert (where / "node-0.1.0" / "node_modules" / "onnxruntime-node").is_dir()
    after = subprocess.run([*verify, "--providers", "ort_node,ort_web"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=900)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "PASSED" in after.stdout and "ort_node" in after.stdout and "ort_web" in after.stdout
