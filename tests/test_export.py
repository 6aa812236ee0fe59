"""The exported files: layout, structure, and loadability with plain TF/onnxruntime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from tf_parity_export.models import MODELS, UserError, get_spec
from tf_parity_export.verify import layout
from tf_parity_export.verify.inputs import random_cases

IDS = list(MODELS)


def test_every_registered_model_is_exported(artifacts):
    """Guard: adding a model to the registry is enough to get it exported and indexed."""
    index = json.loads((artifacts / layout.INDEX).read_text())
    assert sorted(index["models"]) == sorted(MODELS)
    for name in MODELS:
        folder = artifacts / name
        assert (folder / layout.ONNX).is_file()
        assert (folder / layout.SAVED_MODEL / "saved_model.pb").is_file()
        assert (folder / layout.WEIGHTS).is_file()


def test_no_temporary_folders_left(artifacts):
    assert [p.name for p in artifacts.iterdir() if p.name.startswith(".")] == [".export.lock"]


@pytest.mark.parametrize("name", IDS)
def test_card_hashes_match_files(artifacts, name):
    card = json.loads((artifacts / name / layout.CARD).read_text())
    assert card["files"] == layout.hash_tree(artifacts / name)
    assert card["signature"]["inputs"] == [{"name": "x", "shape": [None, 20], "dtype": "float32"}]
    assert card["parameters"] > 0 and card["opset"] == 17


@pytest.mark.parametrize("name", IDS)
def test_onnx_graph_matches_signature(artifacts, name):
    spec = get_spec(name)
    model = onnx.load(str(artifacts / name / layout.ONNX))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["x"]  # no leaked constant inputs
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 20]
    assert [o.name for o in model.graph.output] == [t.name for t in spec.outputs]
    assert model.opset_import[0].version == 17


@pytest.mark.parametrize("name", ["fancy_mlp", "chimera"])
def test_control_flow_stays_loop_and_if(artifacts, name):
    model = onnx.load(str(artifacts / name / layout.ONNX))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Loop") == 1 and ops.count("If") == 1
    # the constant weight is an initializer, not an input
    shapes = [tuple(t.dims) for t in model.graph.initializer]
    assert (20, 20) in shapes


@pytest.mark.parametrize("name", IDS)
def test_artifacts_load_without_this_package(artifacts, name):
    """What the README shows: plain tf.saved_model.load and onnxruntime.InferenceSession."""
    import onnxruntime as ort

    from tf_parity_export.models.lazy_tf import import_tensorflow

    tf = import_tensorflow()
    spec = get_spec(name)
    model = spec.build()
    model.load_weights(str(artifacts / name / layout.WEIGHTS))
    serve = tf.saved_model.load(str(artifacts / name / layout.SAVED_MODEL)).signatures["serving_default"]
    session = ort.InferenceSession(str(artifacts / name / layout.ONNX), providers=["CPUExecutionProvider"])
    out = spec.outputs[0].name
    for case in random_cases(spec, batch_sizes=(1, 2, 7, 64)):
        x = case.feed["x"]
        eager = np.asarray(model(x))
        np.testing.assert_allclose(serve(x=tf.constant(x))[out].numpy(), eager, rtol=spec.rtol, atol=spec.atol)
        np.testing.assert_allclose(session.run([out], {"x": x})[0], eager, rtol=spec.rtol, atol=spec.atol)


def test_saved_model_cli_shows_named_signature(artifacts):
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    assert cli, "saved_model_cli is installed with tensorflow"
    shown = subprocess.run([cli, "show", "--all", "--dir", str(artifacts / "fancy_mlp" / layout.SAVED_MODEL)],
                           capture_output=True, text=True, check=True).stdout
    assert "signature_def['serving_default']" in shown
    assert "inputs['x']" in shown and "outputs['total']" in shown


def test_bad_opset_is_a_user_error(tmp_path):
    from tf_parity_export.export import export_models

    with pytest.raises(UserError, match="opset 99 is not supported"):
        export_models(["mlp"], tmp_path, opset=99, verify=False)
    assert [p for p in tmp_path.rglob("*") if p.is_dir()] == []  # nothing half-written


def test_other_opset_exports_and_verifies(tmp_path):
    from tf_parity_export.export import export_models

    _, report = export_models(["fancy_mlp"], tmp_path, opset=13)
    assert report, report.failures()
    assert onnx.load(str(tmp_path / "fancy_mlp" / layout.ONNX)).opset_import[0].version == 13
