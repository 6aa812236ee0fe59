"""ONNX test data sets, and verification without TensorFlow in a real second environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tf_parity_export.models import MODELS, get_spec
from tf_parity_export.verify import layout, verify_models
from tf_parity_export.verify.runtimes import web

ROOT = Path(__file__).resolve().parents[1]
IDS = list(MODELS)


def sets(folder: Path) -> list[Path]:
    return sorted(folder.glob("test_data_set_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))


@pytest.mark.parametrize("name", IDS)
def test_test_data_sets_replay_in_plain_onnxruntime(artifacts, name):
    """What onnx_test_runner does: feed input_i.pb, compare with output_i.pb."""
    spec = get_spec(name)
    folder = artifacts / name
    found = sets(folder)
    card = json.loads((folder / layout.CARD).read_text())
    assert [e["set"] for e in card["test_data"]] == [p.name for p in found]
    batches = set()
    session = ort.InferenceSession(str(folder / layout.ONNX), providers=["CPUExecutionProvider"])
    for base in found:
        inputs = [onnx.TensorProto.FromString(p.read_bytes()) for p in sorted(base.glob("input_*.pb"))]
        outputs = [onnx.TensorProto.FromString(p.read_bytes()) for p in sorted(base.glob("output_*.pb"))]
        assert [t.name for t in inputs] == ["x"] and [t.name for t in outputs] == [o.name for o in spec.outputs]
        feed = {t.name: numpy_helper.to_array(t) for t in inputs}
        batches.add(feed["x"].shape[0])
        got = session.run(None, feed)
        for want, have in zip(outputs, got):
            np.testing.assert_allclose(have, numpy_helper.to_array(want), rtol=spec.rtol, atol=spec.atol)
    assert batches >= {1, 2, 7}


@pytest.mark.parametrize("name", ["fancy_mlp", "chimera"])
def test_coverage_cases_are_test_data_but_boundary_cases_are_not(artifacts, name):
    card = json.loads((artifacts / name / layout.CARD).read_text())
    kinds = {e["case"]: e["kind"] for e in card["test_data"]}
    assert {"loop0_scaled", "loop0_kept", "loop1_scaled", "loop1_kept", "loop12_scaled", "loop12_kept"} <= set(kinds)
    assert not [c for c in kinds if c.startswith("boundary")]
    assert all(e["path"]["margin"] >= 1e-4 for e in card["test_data"])


def test_stored_outputs_are_checked_against_eager(report):
    for m in report.models:
        [check] = [c for c in m.checks if c.name == "test_data_outputs"]
        assert check.passed and check.detail.endswith("test data sets match TF eager")


def test_tf_free_environment_replays_the_stored_test_data(tf_free_python, artifacts, tmp_path):
    python = str(tf_free_python / "python")
    probe = subprocess.run([python, "-c", "import tensorflow"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'tensorflow'" in probe.stderr
    result = subprocess.run([str(tf_free_python / "verify-models"), "--all", "--artifacts", str(artifacts),
                             "--json", str(tmp_path / "r.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TensorFlow is not installed: replaying them" in result.stdout
    assert (tmp_path / "r.html").is_file()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["environment"]["tensorflow"] == "not installed"
    for m in report["models"]:
        card = json.loads((artifacts / m["model"] / layout.CARD).read_text())
        assert m["reference"].startswith("stored test data")
        assert [c["name"] for c in m["cases"]] == [e["case"] for e in card["test_data"]]
        for runtime in ("tf_eager", "tf_function", "saved_model"):
            assert m["runtimes"][runtime].startswith("unavailable: TensorFlow is not installed")
        browser = web.missing() is None
        assert browser or m["runtimes"]["ort_web"] == f"unavailable: {web.missing()}"
        for runtime in ("ort_cpu", "ort_cpu_noopt", "onnx_reference", "litert", *(["ort_web"] if browser else [])):
            assert m["runtimes"][runtime] == "ran"
            replayed = [r for r in m["results"] if r["runtime"] == runtime]
            assert len(replayed) == len(card["test_data"]) and all(r["status"] == "passed" for r in replayed)
        if m["model"] in ("fancy_mlp", "chimera"):
            assert all(m["coverage"].values())


def test_tf_free_environment_still_catches_a_mismatch(tf_free_python, copy_of, resign):
    """A stored output that disagrees with the ONNX model fails the replay (hash re-signed)."""
    root = copy_of("mlp")
    folder = root / "mlp"
    target = folder / "test_data_set_0" / "output_0.pb"
    tensor = onnx.TensorProto.FromString(target.read_bytes())
    array = numpy_helper.to_array(tensor).copy()
    array[0, 0] += 1e-3
    target.write_bytes(numpy_helper.from_array(array, tensor.name).SerializeToString())
    resign(folder)
    result = subprocess.run([str(tf_free_python / "verify-models"), "mlp", "--artifacts", str(root),
                             "--providers", "ort_cpu"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "error: mlp/ort_cpu: case random_b1: output 'logits' max abs error 0.001" in result.stderr


def node_ready() -> bool:
    return shutil.which("node") is not None and (ROOT / "node" / "node_modules" / "onnxruntime-node").is_dir()


def test_node_runtime_ran_or_says_why(report):
    """CI installs onnxruntime-node, so there it must run; elsewhere it is `unavailable` with the reason."""
    if os.environ.get("CI"):
        assert node_ready(), "CI must install node/ (see README's test command)"
    for m in report.models:
        state = m.runtimes["ort_node"]
        if node_ready():
            assert state == "ran"
            results = [r for r in m.results if r.runtime == "ort_node"]
            assert len(results) == len(m.cases)
            assert all(r.status in ("passed", "boundary") for r in results)
        else:
            assert state.startswith("unavailable: ")


@pytest.mark.skipif(not node_ready(), reason="node or onnxruntime-node is not installed here")
def test_node_runtime_catches_a_planted_mismatch(copy_of, resign):
    from tf_parity_export.export.onnx_model import export_onnx

    root = copy_of("nest_mlp")
    spec = get_spec("nest_mlp")
    model = spec.build()
    bias = model.dense.bias
    bias.assign(bias.numpy() + 1e-3)
    export_onnx(spec.serving_function(model), spec, root / "nest_mlp" / layout.ONNX)
    resign(root / "nest_mlp")
    rep = verify_models(["nest_mlp"], root, runtimes=["ort_node"])
    assert rep.failures() and all(line.startswith("nest_mlp/ort_node: case ") for line in rep.failures())
