"""LiteRT, OpenVINO and reduced-precision modes: exact modes held to the tolerance,
reduced ones measured with the tightest tolerance they would pass."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from conftest import resign_folder
from tf_parity_export.models import MODELS, get_spec
from tf_parity_export.verify import layout, verify_models
from tf_parity_export.verify.cli import main as verify_main
from tf_parity_export.verify.runtimes import MODES, RUNTIMES, Subject, Unavailable, mode
from tf_parity_export.verify.runtimes.onnxruntime import LOADERS as ORT_LOADERS
from tf_parity_export.verify.runtimes.openvino import LOADERS as OPENVINO_LOADERS

IDS = list(MODELS)


def model_report(report, name):
    return next(m for m in report.models if m.model == name)


def openvino_computes_in(report) -> str:
    return model_report(report, "chimera").precision["openvino_default"]["computes_in"]


@pytest.mark.parametrize("name", IDS)
def test_tflite_structure_is_checked(report, name):
    """serving_default, input x, the card's outputs, WHILE/IF kept for the looping models."""
    checks = {c.name: c for c in model_report(report, name).checks}
    for check in ("tflite_inputs", "tflite_outputs", "tflite_control_flow"):
        assert checks[check].passed, checks[check]
    if get_spec(name).control_flow:
        assert checks["tflite_control_flow"].detail == "has ['WHILE', 'IF']"


def test_tflite_structure_check_fails_on_the_wrong_model(artifacts, copy_of):
    """fancy_mlp's card with mlp's .tflite (re-signed): outputs and control flow are wrong, and named."""
    import shutil

    root = copy_of("fancy_mlp")
    shutil.copy(artifacts / "mlp" / layout.TFLITE, root / "fancy_mlp" / layout.TFLITE)
    resign_folder(root / "fancy_mlp")
    rep = verify_models(["fancy_mlp"], root, runtimes=["litert"])
    failures = "\n".join(rep.failures())
    assert "structure check tflite_outputs failed: expected ['total'], found ['logits']" in failures
    assert "structure check tflite_control_flow failed: missing ['WHILE', 'IF']" in failures


@pytest.mark.parametrize("name", IDS)
def test_openvino_default_is_measured_not_failed(report, name):
    """The run passes; the default mode's error and tightest tolerance are in the report.
    On a CPU with bf16 (this one) it is outside the model's tolerance, visibly."""
    assert report, report.failures()
    m = model_report(report, name)
    spec = get_spec(name)
    p = m.precision["openvino_default"]
    assert p["mode"] == "auto" and p["exact"] is False and p["computes_in"] in ("fp32", "bf16", "fp16")
    assert p["tightest_atol"] == p["max_abs"] and p["max_abs"] is not None
    statuses = {r.status for r in m.results if r.runtime == "openvino_default"}
    if p["computes_in"] == "bf16":
        assert p["max_abs"] > spec.atol and not p["within_tolerance"]
        assert "measured" in statuses and "failed" not in statuses
    exact = m.precision["openvino"]
    assert exact["mode"] == "fp32" and exact["computes_in"] == "fp32" and exact["within_tolerance"]
    assert exact["max_abs"] <= spec.atol


def test_reduced_mode_fails_when_required(artifacts, report):
    if openvino_computes_in(report) != "bf16":
        pytest.skip(f"OpenVINO computes in {openvino_computes_in(report)} on this CPU, not bf16: nothing to fail")
    runner = CliRunner()
    required = runner.invoke(verify_main, ["chimera", "--artifacts", str(artifacts), "--require", "openvino_default"])
    assert required.exit_code == 1
    assert "error: chimera/openvino_default: case " in required.output
    worst = model_report(report, "chimera").precision["openvino_default"]["max_abs"]
    loose = runner.invoke(verify_main, ["chimera", "--artifacts", str(artifacts), "--providers", "ort_cpu",
                                        "--require", f"openvino_default:{worst * 1.01:.6g}"])
    assert loose.exit_code == 0, loose.output
    assert "openvino_default: reduced precision (mode auto, computes in bf16 here): required" in loose.output
    tight = runner.invoke(verify_main, ["chimera", "--artifacts", str(artifacts), "--providers", "ort_cpu",
                                        "--require", f"openvino_default:{worst * 0.5:.6g}"])
    assert tight.exit_code == 1


def test_tightest_tolerance_is_what_the_comparison_needs(artifacts, report, tmp_path):
    """Re-run with the reported tightest atol: it passes; with a tenth of it: it fails."""
    p = model_report(report, "fancy_mlp").precision["litert"]
    assert p["tightest_atol"] == p["max_abs"] and 0 < p["max_abs"] <= 1e-5
    table = CliRunner().invoke(verify_main, ["fancy_mlp", "--artifacts", str(artifacts), "--tolerances",
                                             "--providers", "litert,openvino_default", "--json", str(tmp_path / "r.json")])
    assert table.exit_code == (0 if openvino_computes_in(report) == "fp32" else 1)
    lines = [line.split() for line in table.output.splitlines()]
    header = next(i for i, line in enumerate(lines) if line[:2] == ["model", "runtime"])
    row = next(line for line in lines[header + 2:] if line[:2] == ["fancy_mlp", "litert"])
    assert row[2:4] == ["fp32", "fp32"] and float(row[4]) == pytest.approx(p["max_abs"], rel=1e-2)


def test_reduced_findings_in_json_and_table(artifacts, tmp_path):
    result = CliRunner().invoke(verify_main, ["--all", "--artifacts", str(artifacts), "--providers", "ort_cpu",
                                              "--require", "openvino_default:1", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    for m in data["models"]:
        p = m["precision"]["openvino_default"]
        assert set(p) >= {"mode", "exact", "computes_in", "max_abs", "max_rel", "worst_case", "tightest_atol",
                          "tightest_rtol", "within_tolerance"}
        assert m["precision"]["ort_cpu"]["mode"] == "fp32"


def test_litert_catches_a_planted_mismatch(copy_of):
    """A .tflite converted from weights changed by 1e-3 fails litert alone, named."""
    from tf_parity_export.export.saved_model import export_saved_model
    from tf_parity_export.export.tflite import export_tflite

    root = copy_of("nest_mlp")
    spec = get_spec("nest_mlp")
    model = spec.build()
    model.dense.bias.assign(model.dense.bias.numpy() + 1e-3)
    export_saved_model(model, spec.serving_function(model), root / "sm")
    export_tflite(root / "sm", root / "nest_mlp" / layout.TFLITE)
    resign_folder(root / "nest_mlp")
    rep = verify_models(["nest_mlp"], root, runtimes=["ort_cpu", "litert"])
    assert rep.failures() and all(line.startswith("nest_mlp/litert: case ") for line in rep.failures())


def test_openvino_exact_catches_a_planted_mismatch(copy_of):
    from tf_parity_export.export.onnx_model import export_onnx

    root = copy_of("mlp")
    spec = get_spec("mlp")
    model = spec.build()
    model.dense2.bias.assign(model.dense2.bias.numpy() + 1e-3)
    export_onnx(spec.serving_function(model), spec, root / "mlp" / layout.ONNX)
    resign_folder(root / "mlp")
    rep = verify_models(["mlp"], root, runtimes=["openvino"])
    assert rep.failures() and all(line.startswith("mlp/openvino: case ") for line in rep.failures())


def test_modes_are_data_on_the_runtimes():
    assert {name: mode(name) for name in MODES} == {
        "ort_cuda_tf32": "tf32", "ort_tensorrt_fp16": "fp16", "openvino_default": "auto"}
    assert all(mode(name) == "fp32" for name in RUNTIMES if name not in MODES)
    assert OPENVINO_LOADERS["openvino"].keywords["hint"] == "f32"
    assert OPENVINO_LOADERS["openvino_default"].keywords["hint"] is None


# What each GPU runtime passes to onnxruntime: the provider, then its options. TensorRT hands
# what it cannot build to CUDA, with TF32 off.
GPU_SESSIONS = {
    "ort_cuda": [("CUDAExecutionProvider", {"use_tf32": "0"})],
    "ort_cuda_tf32": [("CUDAExecutionProvider", {"use_tf32": "1"})],
    "ort_tensorrt": [("TensorrtExecutionProvider", {"trt_fp16_enable": "False"}),
                     ("CUDAExecutionProvider", {"use_tf32": "0"})],
    "ort_tensorrt_fp16": [("TensorrtExecutionProvider", {"trt_fp16_enable": "True"}),
                          ("CUDAExecutionProvider", {"use_tf32": "0"})],
}


@pytest.mark.parametrize("name", list(GPU_SESSIONS))
def test_gpu_runtimes_pass_their_precision_options(artifacts, name):
    """The options reach onnxruntime as provider_options of a real InferenceSession call; without
    the provider (this machine) the runtime is unavailable, naming it, never passed."""
    loader = ORT_LOADERS[name]
    assert loader.keywords["providers"] == GPU_SESSIONS[name]
    assert all(p in ort.get_all_providers() for p, _ in GPU_SESSIONS[name])  # names onnxruntime knows
    provider = GPU_SESSIONS[name][0][0]
    subject = Subject(get_spec("mlp"), artifacts / "mlp", None)
    if provider in ort.get_available_providers():
        runtime = loader(subject)
        x = np.random.default_rng(0).random((2, 20), dtype=np.float32)
        assert runtime.infer({"x": x})["logits"].shape == (2, 10)
    else:
        with pytest.raises(Unavailable, match=f"{provider} is not in this onnxruntime build"):
            loader(subject)


def test_tf_reference_runs_without_tf32():
    from tf_parity_export.models.lazy_tf import import_tensorflow

    tf = import_tensorflow()
    assert tf.config.experimental.tensor_float_32_execution_enabled() is False


def test_bench_covers_the_new_runtimes(artifacts, tmp_path):
    result = CliRunner().invoke(verify_main, ["fancy_mlp", "--bench", "--artifacts", str(artifacts), "--providers",
                                              "litert,openvino,openvino_default", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["models"]["fancy_mlp"]
    for runtime in ("litert", "openvino", "openvino_default"):
        assert rows[runtime]["batch_1_ms"] > 0 and rows[runtime]["batch_64_ms"] > 0
