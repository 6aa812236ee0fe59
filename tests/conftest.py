"""Shared fixtures: one real export of every model per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tf_parity_export.models import MODELS


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every registered model exported once (real TensorFlow and tf2onnx)."""
    from tf_parity_export.export import export_models

    out = tmp_path_factory.mktemp("artifacts")
    export_models(list(MODELS), out, verify=False)
    return out


@pytest.fixture(scope="session")
def report(artifacts: Path):
    """The verifier's report on those artifacts, on every runtime."""
    from tf_parity_export.verify import verify_models

    return verify_models(list(MODELS), artifacts)


@pytest.fixture
def copy_of(artifacts: Path, tmp_path: Path):
    """A private copy of the session artifacts, for tests that damage files."""
    import shutil

    def make(name: str) -> Path:
        dest = tmp_path / "artifacts"
        shutil.copytree(artifacts / name, dest / name)
        return dest

    return make
