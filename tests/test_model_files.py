"""A model file is a model (issue 17): `export-models m.keras` (Keras 3), a legacy `.h5` and a
SavedModel folder export and verify like a registered model, and verify again in a fresh process
from the folder alone; bad files are one line each."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tf_parity_export.export.cli import main as export_main
from tf_parity_export.verify import layout

TESTS = Path(__file__).resolve().parent
RUNTIMES = "tf_eager,tf_function,saved_model,ort_cpu,onnx_reference,litert"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three small models saved the ways users save them."""
    from tf_parity_export.models.lazy_tf import import_tensorflow

    import_tensorflow()
    import keras

    sys.path.insert(0, str(TESTS))
    import _custom_layers

    root = tmp_path_factory.mktemp("files")
    keras.utils.set_random_seed(3)
    ids = keras.Input((5,), dtype="int32", name="ids")
    extra = keras.Input((2,), name="extra")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(30, 4)(ids))
    z = keras.layers.Concatenate()([h, extra])
    keras.Model([ids, extra], {"score": keras.layers.Dense(1)(z), "probs": keras.layers.Dense(3, activation="softmax")(z)}
                ).save(root / "texts.keras")
    x = keras.Input((6,), name="x")
    keras.Model(x, keras.layers.Dense(2)(_custom_layers.Squash()(keras.layers.Dense(4)(x)))).save(root / "custom.keras")
    dense = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(4, activation="tanh"),
                              keras.layers.Dense(2)])
    dense.save(root / "legacy.h5")
    dense.export(str(root / "served"), format="tf_saved_model")
    tokens = keras.Input((4,), dtype="int32", name="tokens")
    keras.Model(tokens, keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Embedding(12, 2)(tokens)))).export(
        str(root / "tokens_served"), format="tf_saved_model")  # a SavedModel: its Embedding is not visible
    return root


def _export(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(export_main, [*args, "--providers", RUNTIMES])
    return result.exit_code, result.output


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_a_keras_file_exports_and_verifies_and_again_in_a_fresh_process(files, tmp_path):
    out = tmp_path / "art"
    code, output = _export(str(files / "texts.keras"), "--out", str(out), "--input-range", "ids=0:30",
                           "--atol", "2e-5")
    assert code == 0, output
    card = json.loads((out / "texts" / layout.CARD).read_text())
    assert card["signature"]["inputs"] == [{"name": "ids", "shape": [None, 5], "dtype": "int32", "range": [0, 30]},
                                           {"name": "extra", "shape": [None, 2], "dtype": "float32"}]
    assert [o["name"] for o in card["signature"]["outputs"]] == ["score", "probs"] and card["signature"]["atol"] == 2e-5
    assert card["source"]["format"] == "keras" and (out / "texts" / "source.keras").is_file()
    assert "source.keras" in card["files"]
    fresh = subprocess.run([sys.executable, "-c", "from tf_parity_export.verify.cli import entry; entry()", "texts",
                            "--artifacts", str(out), "--providers", RUNTIMES], capture_output=True, text=True,
                           timeout=600)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "texts " in fresh.stdout and "PASSED" in fresh.stdout
    listed = subprocess.run([sys.executable, "-c", "from tf_parity_export.verify.cli import entry; entry()", "--all",
                             "--artifacts", str(out), "--providers", "ort_cpu"], capture_output=True, text=True,
                            timeout=600)
    assert "\ntexts " in listed.stdout  # --all takes the models exported from files too


def test_a_legacy_h5_and_a_savedmodel_folder_export_and_verify(files, tmp_path):
    out = tmp_path / "art"
    code, output = _export(str(files / "legacy.h5"), str(files / "served"), "--out", str(out))
    assert code == 0, output
    assert json.loads((out / "legacy" / layout.CARD).read_text())["source"]["format"] == "h5"
    served = json.loads((out / "served" / layout.CARD).read_text())
    assert served["source"]["format"] == "saved_model" and served["source"]["file"] is None
    assert [t["name"] for t in served["signature"]["inputs"]] == ["features"]
    fresh = subprocess.run([sys.executable, "-c", "from tf_parity_export.verify.cli import entry; entry()",
                            "legacy", "served", "--artifacts", str(out), "--providers", RUNTIMES],
                           capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr


def test_custom_layers_load_with_the_module_that_registers_them(files, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    out = tmp_path / "art"
    code, output = _export(str(files / "custom.keras"), "--out", str(out), "--name", "squash_net",
                           "--custom-module", "_custom_layers")
    assert code == 0, output
    assert json.loads((out / "squash_net" / layout.CARD).read_text())["source"]["custom_modules"] == ["_custom_layers"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _truncated(files: Path, tmp_path: Path) -> Path:
    data = (files / "texts.keras").read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    return path


def _unsigned(files: Path, tmp_path: Path) -> Path:
    from tf_parity_export.models.lazy_tf import import_tensorflow

    tf = import_tensorflow()
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "unsigned"))
    return tmp_path / "unsigned"


@pytest.mark.parametrize("make,message", [
    (lambda files, tmp: _write(tmp / "notes.keras", "my notes"), "notes.keras: cannot be loaded as a Keras model: "),
    (_truncated, "cut.keras: cannot be loaded as a Keras model: "),
    (_unsigned, "unsigned: the SavedModel has no 'serving_default' signature (it has none); export one"),
    (lambda files, tmp: files / "custom.keras",
     "custom.keras: cannot be loaded as a Keras model: it uses 'Squash', which is not registered here; "
     "pass --custom-module MODULE"),
    (lambda files, tmp: tmp / "missing.keras", "missing.keras: cannot be loaded as a Keras model: "),
    (lambda files, tmp: files, "not a .keras or .h5 file, nor a SavedModel folder"),
])
def test_a_bad_model_file_is_one_line(files, tmp_path, make, message):
    path = make(files, tmp_path)
    result = subprocess.run([sys.executable, "-c", "from tf_parity_export.export.cli import entry; entry()",
                             str(path), "--out", str(tmp_path / "art")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    errors = _errors(result.stderr)
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "art" / path.stem).exists()


def test_file_options_need_a_file_and_ranges_are_checked(files, tmp_path):
    runner = CliRunner()
    no_file = runner.invoke(export_main, ["mlp", "--input-range", "x=0:1", "--out", str(tmp_path)])
    assert no_file.exit_code == 2 and "--input-range describe a model file" in no_file.output
    bad = runner.invoke(export_main, [str(files / "texts.keras"), "--input-range", "ids=5:1", "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "--input-range 'ids=5:1': give NAME=LOW:HIGH" in bad.output
    other = runner.invoke(export_main, [str(files / "texts.keras"), "--input-range", "tokens=0:9", "--out",
                                        str(tmp_path)])
    assert other.exit_code == 1 and "--input-range names ['tokens']; " in other.output
    unranged = runner.invoke(export_main, [str(files / "texts.keras"), "--out", str(tmp_path), "--providers", "ort_cpu"])
    assert unranged.exit_code == 0, unranged.output  # the ids feed an Embedding: its size is the range
    assert "texts: input 'ids' has no declared range; using [0, 30) from the Embedding it feeds" in unranged.output


def test_integer_ids_of_a_savedmodel_take_their_range_from_the_flag(files, tmp_path):
    """A SavedModel shows no Embedding to take the range from: the error names the flag that gives it."""
    code, output = _export(str(files / "tokens_served"), "--out", str(tmp_path / "a"))
    assert code == 1 and _errors(output) == ["error: tokens_served: signature: input 'tokens' is int32 and has no "
                                             "range; declare the values it may take: --input-range tokens=LOW:HIGH"]
    code, output = _export(str(files / "tokens_served"), "--out", str(tmp_path / "b"), "--input-range", "tokens=0:12")
    assert code == 0, output
