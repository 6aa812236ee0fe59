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
        shutil.copy(artifacts / "manifest.json", dest / "manifest.json")
        return dest

    return make


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
