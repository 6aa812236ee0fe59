"""Localization on real exports: a planted change is found at its node, born there, with a repro
that plain onnxruntime reproduces; every tensor is compared or listed; nothing runs when all agree."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from conftest import resign_folder
from tf_parity_export.models import MODELS, ModelSpec, TensorSig
from tf_parity_export.verify import layout, verify_models
from tf_parity_export.verify.cli import main as verify_main
from tf_parity_export.verify.localize.graph import produced

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from plant import plant  # noqa: E402  (tools/plant.py: the tests plant with the tool users run)

SPECS = {
    "loc_conv": ModelSpec("loc_conv", "_localize_builders:build_conv", "two Conv2D (NHWC in TF, NCHW in ONNX)",
                          inputs=(TensorSig("image", (None, 8, 8, 3)),), outputs=(TensorSig("y", (None, 3)),)),
    "loc_attention": ModelSpec("loc_attention", "_localize_builders:build_attention", "MultiHeadAttention + LayerNorm",
                               inputs=(TensorSig("tokens", (None, 4, 8)),), outputs=(TensorSig("y", (None, 4, 8)),)),
    "loc_cancel": ModelSpec("loc_cancel", "_localize_builders:build_cancel", "Dense(bias 1000) - 1000",
                            inputs=(TensorSig("x", (None, 4)),), outputs=(TensorSig("y", (None, 2)),)),
}
SEEDS = ["mlp", "sequential_mlp", "fancy_mlp", "nest_mlp", "chimera"]


@pytest.fixture(scope="session")
def small_models(tmp_path_factory, artifacts) -> Path:
    """The three small models above, exported once (registered only while exporting: after
    `artifacts`, so the session's every-model fixtures never see them)."""
    from tf_parity_export.export import export_models

    out = tmp_path_factory.mktemp("localize-models")
    MODELS.update(SPECS)
    try:
        export_models(list(SPECS), out, verify=False)
    finally:
        for name in SPECS:
            MODELS.pop(name, None)
    return out


@pytest.fixture
def copy_model(artifacts, small_models, tmp_path, monkeypatch):
    """A private copy of one exported model (seed or small), registered for the verifier."""
    for name, spec in SPECS.items():
        monkeypatch.setitem(MODELS, name, spec)

    def make(name: str) -> Path:
        source = small_models if name in SPECS else artifacts
        root = tmp_path / "artifacts"
        shutil.copytree(source / name, root / name)
        shutil.copy(source / layout.INDEX, root / layout.INDEX)
        return root

    return make


def replay(repro: Path, runtime: str = "onnxruntime") -> float:
    """Plain onnxruntime (or OpenVINO) on a repro folder, as its README says: the largest |got - expected|."""
    onnx.checker.check_model(str(repro / layout.ONNX), full_check=True)
    load = lambda p: numpy_helper.to_array(onnx.load_tensor(p))  # noqa: E731
    feed = {onnx.load_tensor(p).name: load(p) for p in sorted(glob.glob(str(repro / "test_data_set_0/input_*.pb")))}
    expected = load(str(repro / "test_data_set_0/output_0.pb"))
    if runtime == "openvino":
        import openvino as ov

        got = ov.Core().compile_model(str(repro / layout.ONNX), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(feed)[0]
    else:
        import onnxruntime as ort

        (got,) = ort.InferenceSession(str(repro / layout.ONNX), providers=["CPUExecutionProvider"]).run(None, feed)
    return float(np.abs(got - expected).max())


@pytest.mark.parametrize("name", [*SEEDS, "loc_conv", "loc_attention"])
def test_planted_initializer_is_localized_to_its_node_born_there(copy_model, name):
    root = copy_model(name)
    node = plant(root / name)
    rep = verify_models([name], root, runtimes=["ort_cpu", "openvino"])
    model = rep.models[0]
    assert {r.runtime for r in model.results if r.status == "failed"} == {"ort_cpu", "openvino"}
    for runtime in ("ort_cpu", "openvino"):
        found = model.localization[runtime]  # localized without being asked: it failed
        assert found.state == "diverges", found.summary()
        assert (found.first["node"], found.first["born"]) == (node, True), found.summary()
        assert found.born_at["node"] == node
        assert found.repro == str(root / layout.REPRO / name / runtime)
        assert found.line(name).startswith(f"{name}/{runtime}: first diverges at {node} (")
        assert f"), born there; repro: {found.repro}" in found.line(name)
        # the repro reproduces the mismatch in plain onnxruntime and OpenVINO, without this project
        assert replay(Path(found.repro)) > 1e-4 and replay(Path(found.repro), "openvino") > 1e-4
        # every tensor before the planted node agrees; the planted node is the first beyond tolerance
        assert all(p.ratio <= 1 for p in found.points if p.index < found.first["index"])
    # the repro folders are not inside the model folder: it still passes its integrity checks
    assert layout.check_folder(root, name)


def test_inherited_error_is_told_from_a_born_one(copy_model):
    """A bias of 1000 scaled by 1 + 2e-6 is within tolerance at its Gemm; the next node subtracts
    1000 and is beyond it, but that node alone, on TF's inputs, is exact: inherited."""
    root = copy_model("loc_cancel")
    gemm = plant(root / "loc_cancel", factor=1 + 2e-6, first=True, kind="bias")
    rep = verify_models(["loc_cancel"], root, runtimes=["ort_cpu"])
    found = rep.models[0].localization["ort_cpu"]
    points = {p.node: p for p in found.points}
    assert points[gemm].ratio <= 1  # the change itself is within the tolerance where it happens
    assert found.first["born"] is False and found.first["node"] != gemm, found.summary()
    assert found.first["index"] > points[gemm].index
    assert found.born_at is None and found.repro is None
    assert "inherited; no node is off by itself on TF's inputs" in found.summary()


def test_every_tensor_is_compared_or_listed_with_a_reason(copy_model):
    localized = {}
    for name in ("loc_conv", "loc_attention"):
        root = copy_model(name)
        rep = verify_models([name], root, runtimes=["ort_cpu"], localize=["ort_cpu"])
        found = localized[name] = rep.models[0].localization["ort_cpu"]
        assert found.state == "agrees" and found.first is None, found.summary()
        assert found.summary().startswith("no divergence (")
        every = {p.tensor for p in produced(onnx.load(str(root / name / layout.ONNX)))}
        compared = {p.tensor for p in found.points}
        listed = {u["tensor"] for u in found.unmatched}
        assert compared | listed == every and not compared & listed
        assert all(u["reason"] for u in found.unmatched)
        assert all(p.ratio <= 1 for p in found.points)
    layouts = [p.layout for p in localized["loc_conv"].points if p.op == "Conv"]
    assert layouts and all(lay == {"perm": [0, 3, 1, 2], "squeeze": False} for lay in layouts)  # TF NHWC, ONNX NCHW


def test_attention_tensors_tf2onnx_renames_are_matched_by_value(copy_model):
    """tf2onnx writes TF's Rsqrt as Sqrt (keeping the TF name) then Reciprocal: the Reciprocal is matched."""
    root = copy_model("loc_attention")
    rep = verify_models(["loc_attention"], root, runtimes=["ort_cpu"], localize=["ort_cpu"])
    found = rep.models[0].localization["ort_cpu"]
    rsqrt = [p for p in found.points if p.tf.endswith("/Rsqrt:0")]
    assert [p.op for p in rsqrt] == ["Reciprocal"]
    assert any(u["op"] == "Sqrt" and "matched closer by" in u["reason"] for u in found.unmatched)


def test_nothing_is_localized_when_every_runtime_agrees(artifacts):
    rep = verify_models(["mlp"], artifacts, runtimes=["ort_cpu", "litert"])
    assert rep and rep.models[0].localization == {}
    asked = verify_models(["mlp"], artifacts, runtimes=["ort_cpu", "litert", "tf_function"], localize=[])
    found = asked.models[0].localization
    assert set(found) == {"ort_cpu", "litert", "tf_function"}
    assert found["ort_cpu"].state == found["litert"].state == "agrees"
    assert found["tf_function"].state.startswith("unsupported: ")
    assert [p.op for p in found["litert"].points] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]


def test_litert_planted_weight_is_localized_to_its_op(copy_model):
    """One weight of model.tflite scaled in place: LiteRT's preserved tensors find the op."""
    from ai_edge_litert.interpreter import Interpreter

    root = copy_model("mlp")
    path = root / "mlp" / layout.TFLITE
    interpreter = Interpreter(model_path=str(path))
    weight = next(d for d in interpreter.get_tensor_details() if d["name"] == "mlp_1/dense_1_2/MatMul")
    values = interpreter.get_tensor(weight["index"])
    data = path.read_bytes()
    assert data.count(values.tobytes()) == 1
    path.write_bytes(data.replace(values.tobytes(), (values * np.float32(1.05)).tobytes()))
    resign_folder(root / "mlp")
    rep = verify_models(["mlp"], root, runtimes=["litert", "ort_cpu"])
    assert set(rep.models[0].localization) == {"litert"}  # ort_cpu agrees: not localized
    found = rep.models[0].localization["litert"]
    assert (found.first["node"], found.first["op"]) == ("FULLY_CONNECTED_1", "FULLY_CONNECTED"), found.summary()
    assert found.first["born"] is None and found.repro is None
    assert found.summary().startswith("first diverges at FULLY_CONNECTED_1 (FULLY_CONNECTED), born or inherited not "
                                      "tested (LiteRT")


def test_user_inputs_are_localized_against_tensorflow_live(copy_model, tmp_path):
    """A case without stored intermediates (here the user's own inputs) is localized against the
    serving function frozen again in this process."""
    root = copy_model("chimera")
    node = plant(root / "chimera")
    inputs = tmp_path / "mine.npz"
    np.savez(inputs, x=np.random.default_rng(3).random((5, 20), dtype=np.float32))
    rep = verify_models(["chimera"], root, runtimes=["ort_cpu"], inputs=inputs)
    found = rep.models[0].localization["ort_cpu"]
    assert found.reference.startswith("TensorFlow: the serving function frozen in this process")
    assert found.cases == [rep.models[0].cases[0]["name"]]
    assert (found.first["node"], found.first["born"]) == (node, True)


def test_cli_prints_one_line_per_runtime_and_draws_the_curve(copy_model, tmp_path):
    root = copy_model("nest_mlp")
    node = plant(root / "nest_mlp")
    out = tmp_path / "report.json"
    result = CliRunner().invoke(verify_main, ["nest_mlp", "--artifacts", str(root), "--json", str(out),
                                              "--providers", "ort_cpu,ort_node,ort_web", "--localize", "litert"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("nest_mlp/")]
    for runtime in ("ort_cpu", "ort_node", "ort_web"):
        assert f"nest_mlp/{runtime}: first diverges at {node} (Gemm), born there; repro: " \
               f"{root / layout.REPRO / 'nest_mlp' / runtime}" in lines
    assert any(line.startswith("nest_mlp/litert: no divergence (") for line in lines)  # asked for; it agrees
    data = json.loads(out.read_text())["models"][0]["localization"]
    assert set(data) == {"ort_cpu", "ort_node", "ort_web", "litert"}
    assert data["ort_cpu"]["first"]["node"] == node and data["ort_cpu"]["points"]
    page = out.with_suffix(".html").read_text()
    assert page.count("class='curve'") == 4 and "first divergence: " + node in page
    assert "tolerance (the model&#x27;s, scaled to each tensor)" in page or "tolerance (the model's" in page


def test_cli_refuses_an_unknown_runtime_to_localize(artifacts):
    result = CliRunner().invoke(verify_main, ["mlp", "--artifacts", str(artifacts), "--localize", "nosuch"])
    assert result.exit_code == 2 and "unknown runtime(s) ['nosuch']" in result.output


def test_a_folder_exported_without_the_tensor_map_says_so(copy_model):
    root = copy_model("mlp")
    (root / "mlp" / layout.TENSOR_SOURCES).unlink()
    (root / "mlp" / layout.TF_INTERMEDIATES).unlink()
    resign_folder(root / "mlp")
    rep = verify_models(["mlp"], root, runtimes=["ort_cpu"], localize=["ort_cpu"])
    assert rep.models[0].localization["ort_cpu"].state == (
        f"unavailable: mlp was exported without {layout.TENSOR_SOURCES} (re-export with `export-models mlp`)")


def test_a_damaged_tensor_map_is_one_line_and_the_verification_stands(copy_model):
    root = copy_model("mlp")
    (root / "mlp" / layout.TENSOR_SOURCES).write_text('{"schema": 1, "tensors": []}')
    resign_folder(root / "mlp")
    rep = verify_models(["mlp"], root, runtimes=["ort_cpu"], localize=["ort_cpu"])
    assert rep and rep.models[0].results
    assert rep.models[0].localization["ort_cpu"].state == (
        f"error: mlp: {layout.TENSOR_SOURCES} is not a schema-1 tensor map; re-export with `export-models mlp`")


def test_localized_without_tensorflow_on_the_stored_intermediates(copy_model, tf_free_python):
    root = copy_model("fancy_mlp")
    node = plant(root / "fancy_mlp")
    proc = subprocess.run([str(tf_free_python / "verify-models"), "fancy_mlp", "--artifacts", str(root),
                           "--providers", "ort_cpu", "--json", str(root / "out.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert f"fancy_mlp/ort_cpu: first diverges at {node} (Gemm), born there; repro: " \
           f"{root / layout.REPRO / 'fancy_mlp' / 'ort_cpu'}" in proc.stdout
    found = json.loads((root / "out.json").read_text())["models"][0]["localization"]["ort_cpu"]
    assert found["reference"] == "TensorFlow's values recorded at export on test_data_set_0 (random_b1)"


def test_intermediates_are_stored_within_the_cap(artifacts, monkeypatch, tmp_path):
    """Past the cap, tensors are named as left out (and listed unmatched), never silently dropped."""
    from tf_parity_export.export import export_models
    from tf_parity_export.verify.localize import artifact

    monkeypatch.setattr(artifact, "STORE_CAP_BYTES", 2000)
    export_models(["mlp"], tmp_path, verify=False)
    sources = json.loads((tmp_path / "mlp" / layout.TENSOR_SOURCES).read_text())
    stored = sources["stored"]
    assert stored["case"] == "random_b1" and stored["left_out"]
    assert sum(int(np.prod(shape)) * 4 for _, shape, _ in stored["index"]) <= 2000
    rep = verify_models(["mlp"], tmp_path, runtimes=["ort_cpu"], localize=["ort_cpu"])
    found = rep.models[0].localization["ort_cpu"]
    assert found.reference.startswith("TensorFlow's values recorded at export")
    capped = [u for u in found.unmatched if "past the stored values' size cap" in u["reason"]]
    assert capped and {u["tensor"] for u in capped}.isdisjoint(p.tensor for p in found.points)


def test_a_runtime_held_to_a_required_atol_is_localized_against_it(copy_model):
    root = copy_model("chimera")
    plant(root / "chimera")
    # an ATOL is for a reduced-precision runtime (an exact one is always held to the model's tolerance)
    ov = "openvino_default"
    held = verify_models(["chimera"], root, runtimes=[ov], require={ov: 1e3}, localize=[ov])
    assert held and held.models[0].localization[ov].first is None  # within atol 1000, scaled: no divergence
    plain = verify_models(["chimera"], root, runtimes=[ov], localize=[ov])
    assert not plain and plain.models[0].localization[ov].first is not None
