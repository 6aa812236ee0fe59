"""Real Keras layers of every class users export (issue 16): RNNs after a masking Embedding on int32
ids, attention with exact gelu, Normalization's captured constants, dict inputs and outputs, a loop its
cap stops, a model TFLite cannot convert, and models that cannot be exported at all, all in one run:
one model's failure is that model's, and a deployment runtime that cannot take a model is
`unsupported` with the tool's reason."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from _real_models import SPECS
from tf_parity_export.export.cli import main as export_main
from tf_parity_export.models import MODELS
from tf_parity_export.verify import layout, verify_models
from tf_parity_export.verify.cli import main as verify_main

EXPORTABLE = ["rnn_stack", "attention", "normalized", "dict_io", "capped_loop", "determinant"]
ONNX_RUNTIMES = ["ort_cpu", "ort_cpu_noopt", "onnx_reference", "ort_node", "ort_web", "openvino"]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Every model of tests/_real_models.py exported and verified in one run, the two that cannot
    be exported listed among them."""
    from tf_parity_export.export import export_models

    with pytest.MonkeyPatch.context() as patch:
        for name, spec in SPECS.items():
            patch.setitem(MODELS, name, spec)
        out = tmp_path_factory.mktemp("real")
        lines: list[str] = []
        names = ["broken", *EXPORTABLE[:3], "unranged_ids", *EXPORTABLE[3:]]
        results, report = export_models(names, out, progress=lines.append)
        yield out, results, report, lines


def _model(report, name):
    return next(m for m in report.models if m.model == name)


def test_one_models_failure_is_that_models_and_the_rest_are_exported(real):
    out, results, report, lines = real
    assert [r.name for r in results] == EXPORTABLE
    failures = report.failures()
    assert "broken: build: RuntimeError: weights file /nowhere/w.h5 not found" in failures
    assert ("unranged_ids: signature: input 'ids' is int32 and has no range; declare the values it may take: "
            "TensorSig('ids', ..., dtype='int32', range=(low, high))") in failures
    assert failures == [f for f in failures if f.startswith(("broken:", "unranged_ids:"))]  # nothing else failed
    assert not (out / "broken").exists() and not (out / "unranged_ids").exists()
    assert sorted(json.loads((out / layout.INDEX).read_text())["models"]) == sorted(EXPORTABLE)
    assert any(line.startswith("[1/8] broken: not exported: broken: build: RuntimeError") for line in lines)


@pytest.mark.parametrize("name", EXPORTABLE)
def test_every_exported_model_agrees_on_every_onnx_runtime(real, name):
    _, _, report, _ = real
    m = _model(report, name)
    assert not m.failures(), m.failures()
    for runtime in ["tf_function", "saved_model", *ONNX_RUNTIMES]:
        if (name, runtime) == ("determinant", "openvino"):  # a deployment runtime without the op: unsupported
            assert m.runtimes[runtime] == ("unsupported: OpenVINO cannot compile model.onnx: "
                                           "No conversion rule found for operations: Det-17"), m.runtimes[runtime]
            continue
        assert m.runtimes[runtime] == "ran", (runtime, m.runtimes[runtime])
        counted = [r for r in m.results if r.runtime == runtime and r.status not in ("boundary", "loop_cap")]
        assert counted and all(r.status == "passed" for r in counted), (runtime, counted)


def test_rnns_become_onnx_ops_and_litert_runs_them_with_a_fixed_batch(real):
    out, _, report, lines = real
    ops = {n.op_type for n in onnx.load(str(out / "rnn_stack" / layout.ONNX)).graph.node}
    assert [i.name for i in onnx.load(str(out / "rnn_stack" / layout.ONNX)).graph.input] == ["ids"]
    assert ops & {"LSTM", "GRU", "RNN", "Loop"}, ops  # a fused recurrent op or a Loop, never unrolled
    card = json.loads((out / "rnn_stack" / layout.CARD).read_text())
    assert card["formats"]["litert"]["status"] == "ok" and card["formats"]["litert"]["static_batch"] == 1
    assert "TensorListReserve" in card["formats"]["litert"]["reason"]  # why the dynamic batch failed
    assert _model(report, "rnn_stack").runtimes["litert"] == "ran"
    assert any("rnn_stack: litert: converted with a fixed batch of one row" in line for line in lines)


def test_integer_inputs_keep_their_dtype_and_range_end_to_end(real):
    out, _, report, _ = real
    card = json.loads((out / "rnn_stack" / layout.CARD).read_text())
    assert card["signature"]["inputs"] == [{"name": "ids", "shape": [None, 6], "dtype": "int32", "range": [0, 40]}]
    for entry in card["test_data"]:
        tensor = onnx.TensorProto.FromString((out / "rnn_stack" / entry["set"] / "input_0.pb").read_bytes())
        ids = onnx.numpy_helper.to_array(tensor)
        assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < 40


def test_user_inputs_keep_their_dtype(real, tmp_path):
    out, _, _, _ = real
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MODELS, "rnn_stack", SPECS["rnn_stack"])
        good = tmp_path / "ids.npz"
        np.savez(good, ids=np.array([[0, 1, 2, 3, 39, 0], [5, 0, 0, 0, 0, 0]], np.int32))
        runner = CliRunner()
        ok = runner.invoke(verify_main, ["rnn_stack", "--artifacts", str(out), "--inputs", str(good),
                                         "--providers", "tf_eager,ort_cpu,onnx_reference,litert"])
        assert ok.exit_code == 0, ok.output
        for bad, message in ((np.zeros((1, 6), np.float32), "'ids' is float32, rnn_stack takes int32"),
                             (np.full((1, 6), 40, np.int32), "'ids' holds values in [40, 40], outside its range [0, 40)")):
            np.savez(tmp_path / "bad.npz", ids=bad)
            result = runner.invoke(verify_main, ["rnn_stack", "--artifacts", str(out), "--inputs",
                                                 str(tmp_path / "bad.npz"), "--providers", "ort_cpu"])
            errors = [line for line in result.output.splitlines() if line.startswith("error:")]
            assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.output


def test_captured_constants_stay_constants(real):
    out, _, _, _ = real
    model = onnx.load(str(out / "normalized" / layout.ONNX))
    assert [i.name for i in model.graph.input] == ["features"]  # Normalization's mean and variance did not leak


def test_exact_gelu_is_valid_onnx(real):
    out, _, _, _ = real
    ops = {n.op_type for n in onnx.load(str(out / "attention" / layout.ONNX)).graph.node}
    assert "Erf" in ops and "Erfc" not in ops  # tf2onnx's Erfc (no ONNX opset has it) written as 1 - Erf


def test_dict_inputs_and_outputs_are_matched_by_name(real):
    out, results, _, _ = real
    import onnxruntime as ort

    model = next(r.model for r in results if r.name == "dict_io")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((2, 2), np.float32)
    keras_out = model({"a": a, "b": b})
    session = ort.InferenceSession(str(out / "dict_io" / layout.ONNX))
    assert [i.name for i in session.get_inputs()] == ["a", "b"]
    probs, score = session.run(["probs", "score"], {"a": a, "b": b})
    np.testing.assert_allclose(probs, keras_out["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(score, keras_out["score"], rtol=1e-5, atol=1e-6)


def test_a_loop_stopped_by_its_cap_is_a_loop_cap_case(real, tmp_path):
    out, _, report, _ = real
    m = _model(report, "capped_loop")
    assert all(hits for hits in m.coverage.values()), m.coverage  # 0, 1 and 2+ trips, found without the cap
    assert not any(c["kind"] == "capped" for c in m.cases)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MODELS, "capped_loop", SPECS["capped_loop"])
        np.savez(tmp_path / "zeros.npz", x=np.zeros((2, 4), np.float32))  # max|h| stays 0 < 10: never ends alone
        capped = verify_models(["capped_loop"], out, ["ort_cpu"], tmp_path / "zeros.npz")
    case = capped.models[0].cases[0]
    assert case["kind"] == "capped" and case["path"]["capped_loops"]
    assert capped.models[0].failures() == [
        "capped_loop: no case was compared: all 1 are loop_cap cases, reported but not counted; "
        "give inputs away from the thresholds"]


def test_a_model_tflite_cannot_convert_is_unsupported_on_litert_only(real, tmp_path):
    out, _, report, lines = real
    card = json.loads((out / "determinant" / layout.CARD).read_text())
    litert = card["formats"]["litert"]
    assert litert["status"] == "unsupported" and "MatrixDeterminant" in litert["reason"], litert
    assert not (out / "determinant" / layout.TFLITE).exists()
    m = _model(report, "determinant")
    assert m.runtimes["litert"].startswith("unsupported: the TFLite converter could not convert this model: ")
    assert not m.failures()  # not deployed to LiteRT: the model still passes
    assert m.failures({"litert"}) == [f"determinant/litert: {m.runtimes['litert']}"]  # required: it fails
    assert any(line.startswith("      determinant: litert: unsupported: ") for line in lines)


def test_export_models_takes_providers_and_require(tmp_path):
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MODELS, "determinant", SPECS["determinant"])
        runner = CliRunner()
        args = ["determinant", "--out", str(tmp_path / "a")]
        ok = runner.invoke(export_main, [*args, "--providers", "ort_cpu,onnx_reference"])
        assert ok.exit_code == 0, ok.output
        header = next(line for line in ok.output.splitlines() if line.startswith("model "))
        assert header.split() == ["model", "cases", "ort_cpu", "onnx_reference"]  # only the runtimes asked for
        asked = runner.invoke(export_main, [*args, "--providers", "ort_cpu,openvino"])  # asked for: required
        assert asked.exit_code == 1
        assert [line for line in asked.output.splitlines() if line.startswith("error:")] == [
            "error: determinant/openvino: unsupported: OpenVINO cannot compile model.onnx: "
            "No conversion rule found for operations: Det-17"]
        required = runner.invoke(export_main, [*args, "--providers", "ort_cpu", "--require", "litert"])
        assert required.exit_code == 1
        errors = [line for line in required.output.splitlines() if line.startswith("error:")]
        assert errors == ["error: determinant/litert: unsupported: the TFLite converter could not convert this model: "
                          + json.loads((tmp_path / "a" / "determinant" / layout.CARD).read_text())
                          ["formats"]["litert"]["reason"]]
        refused = runner.invoke(export_main, [*args, "--no-verify", "--providers", "ort_cpu"])
        assert refused.exit_code == 2 and "do not go with --no-verify" in refused.output
