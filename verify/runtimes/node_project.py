"""Where the Node project of the `ort_node` and `ort_web` runtimes lives, and how to install it.

The project (package.json and package-lock.json pinning onnxruntime-node and
onnxruntime-web, and infer.mjs) ships inside the Python package, as
`tf_parity_export/node/` (in a source checkout, the repository's `node/`
folder, where the test command runs `npm ci`). A non-editable install cannot
write into site-packages as a user, and its node_modules would be lost on
every reinstall, so `verify-models --install-node` installs the project into
a per-user folder, `$XDG_CACHE_HOME/tf-parity-export/node-<version>` (default
`~/.cache/...`): one folder per release, since the pinned versions change with
it. The runtimes take the first of: `$TF_PARITY_NODE_DIR`, the shipped folder
when it holds node_modules (a checkout after `npm ci`), the per-user folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from tf_parity_export.models import UserError
from tf_parity_export.models.text import shown

SHIPPED = Path(__file__).resolve().parents[2] / "node"  # verify/runtimes/ -> the package root (or the checkout)
FILES = ("package.json", "package-lock.json", "infer.mjs")
INSTALL = "verify-models --install-node"


def _version() -> str:
    try:
        return metadata.version("tf-parity-export")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "dev"


def user_dir() -> Path:
    """The per-user folder `verify-models --install-node` installs into."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tf-parity-export" / f"node-{_version()}"


def _installed(folder: Path) -> bool:
    return (folder / "node_modules" / "onnxruntime-node").is_dir() and (folder / "infer.mjs").is_file()


def node_dir() -> Path:
    """The Node project the runtimes use (see the module docstring for the order)."""
    explicit = os.environ.get("TF_PARITY_NODE_DIR")
    if explicit:
        return Path(explicit)
    for folder in (SHIPPED, user_dir()):
        if _installed(folder):
            return folder
    return user_dir() if not (SHIPPED / "package-lock.json").is_file() or not os.access(SHIPPED, os.W_OK) else SHIPPED


def install(echo=print) -> Path:
    """Install the shipped Node project into the per-user folder with `npm ci`; one UserError line on failure.

    ONNXRUNTIME_NODE_INSTALL=skip: onnxruntime-node's install script would otherwise download
    CUDA binaries from GitHub; its CPU runtime is inside the package.
    """
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        raise UserError("--install-node needs Node.js 18+ and npm on PATH (e.g. apt-get install nodejs npm)")
    missing = [f for f in FILES if not (SHIPPED / f).is_file()]
    if missing:
        raise UserError(f"--install-node: this installation lacks {', '.join(missing)} in {shown(SHIPPED)}; "
                        "reinstall tf-parity-export")
    dest = user_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copyfile(SHIPPED / name, dest / name)
    except OSError as e:
        raise UserError(f"--install-node: cannot write {shown(dest)} ({e.strerror})") from None
    echo(f"installing onnxruntime-node and onnxruntime-web into {shown(dest)} (npm ci)")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=dest, capture_output=True, text=True,
                          env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"})
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[-1]
        raise UserError(f"--install-node: npm ci failed in {shown(dest)}: {last}")
    return dest
