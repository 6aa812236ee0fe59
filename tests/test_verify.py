"""The verifier on real artifacts: every runtime, coverage, and each failure mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tf_parity_export.models import MODELS, InputError, get_spec
from tf_parity_export.verify import layout, verify_models
from tf_parity_export.verify.compare import compare_output

IDS = list(MODELS)
CPU_RUNTIMES = ["tf_eager", "tf_function", "saved_model", "ort_cpu", "ort_cpu_noopt", "onnx_reference", "litert", "openvino"]


def test_fresh_artifacts_pass(report):
    assert report, report.failures()
    assert [m.model for m in report.models] == IDS


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("runtime", CPU_RUNTIMES)
def test_every_cpu_runtime_ran_every_case(report, name, runtime):
    m = next(m for m in report.models if m.model == name)
    assert m.runtimes[runtime] == "ran"
    results = [r for r in m.results if r.runtime == runtime]
    assert [r.case for r in results] == [c["name"] for c in m.cases]
    assert {b for b in (c["batch"] for c in m.cases)} >= {1, 2, 7}
    for r in results:
        assert r.status in ("passed", "boundary")
        for o in r.outputs if r.status == "passed" else []:
            assert o and o.max_abs <= o.atol + o.rtol * 1e3  # numbers are recorded, and small


@pytest.mark.parametrize("runtime", ["ort_cuda", "ort_tensorrt"])
def test_absent_gpu_provider_is_unavailable_not_passed(report, runtime):
    import onnxruntime as ort

    provider = {"ort_cuda": "CUDAExecutionProvider", "ort_tensorrt": "TensorrtExecutionProvider"}[runtime]
    for m in report.models:
        if provider in ort.get_available_providers():
            assert m.runtimes[runtime] == "ran"
        else:
            assert m.runtimes[runtime].startswith(f"unavailable: {provider} is not in this onnxruntime build")
            assert not [r for r in m.results if r.runtime == runtime]


def test_asking_for_an_absent_provider_fails(artifacts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA; the absent-provider path cannot be exercised")
    rep = verify_models(["mlp"], artifacts, runtimes=["ort_cpu", "ort_cuda"])
    assert not rep
    assert rep.failures() == [f"mlp/ort_cuda: {rep.models[0].runtimes['ort_cuda']}"]


@pytest.mark.parametrize("name", ["fancy_mlp", "chimera"])
def test_control_flow_coverage_is_measured(report, name):
    m = next(m for m in report.models if m.model == name)
    assert all(m.coverage.values()), m.coverage
    counted = [c["path"] for c in m.cases if c["kind"] != "boundary"]
    iterations = {p["iterations"] for p in counted}
    assert {0, 1} <= iterations and max(iterations) >= 10
    assert {p["branch"] for p in counted} == {"scaled", "kept"}
    boundary = [c for c in m.cases if c["kind"] == "boundary"]
    assert boundary and all(c["path"]["margin"] < 1e-4 for c in boundary)
    assert {r.status for r in m.results if r.case in {c["name"] for c in boundary}} == {"boundary"}


def test_structure_checks_recorded(report):
    for m in report.models:
        names = {c.name for c in m.checks}
        assert {"onnx_inputs", "onnx_outputs", "onnx_control_flow", "onnx_checker",
                "saved_model_inputs", "saved_model_outputs"} <= names
        assert all(c.passed for c in m.checks)


def test_json_report_has_every_number(report, tmp_path):
    from tf_parity_export.verify.render import write_report

    write_report(report, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["schema"] == "tf-parity-report/1" and data["passed"] is True
    assert {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxruntime_providers"} <= set(data["environment"])
    out = data["models"][0]["results"][0]["outputs"][0]
    assert set(out) >= {"shape", "dtype", "max_abs", "max_rel", "worst_index", "atol", "rtol", "passed"}


def _rehash(folder):
    from conftest import resign_folder

    resign_folder(folder)


def test_planted_mismatch_is_caught_and_named(copy_of):
    """An ONNX written from the model with one weight changed must fail on every ONNX runtime."""
    from tf_parity_export.export.onnx_model import export_onnx

    root = copy_of("mlp")
    spec = get_spec("mlp")
    model = spec.build()
    bias = model.dense2.bias  # one weight: the first logit's bias, moved by 1e-3
    bias.assign(bias.numpy() + np.eye(1, bias.shape[0], dtype=np.float32)[0] * 1e-3)
    export_onnx(spec.serving_function(model), spec, root / "mlp" / layout.ONNX)
    _rehash(root / "mlp")
    rep = verify_models(["mlp"], root, runtimes=["saved_model", "ort_cpu", "onnx_reference"])
    failed = {line.split(":")[0] for line in rep.failures()}
    assert failed == {"mlp/ort_cpu", "mlp/onnx_reference"}
    assert "output 'logits' max abs error" in rep.failures()[0]


def test_changed_file_is_refused_by_hash(copy_of):
    root = copy_of("fancy_mlp")
    onnx_path = root / "fancy_mlp" / layout.ONNX
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx_path.write_bytes(bytes(data))
    rep = verify_models(["fancy_mlp"], root)
    assert rep.failures() == ["fancy_mlp: model.onnx changed since export (sha256 mismatch); "
                              "re-export with `export-models fancy_mlp`"]


def test_truncated_onnx_is_named_even_with_a_matching_hash(copy_of):
    root = copy_of("fancy_mlp")
    onnx_path = root / "fancy_mlp" / layout.ONNX
    onnx_path.write_bytes(onnx_path.read_bytes()[:1000])
    _rehash(root / "fancy_mlp")
    rep = verify_models(["fancy_mlp"], root)
    assert rep.failures() == ["fancy_mlp: model.onnx cannot be parsed (DecodeError)"]


def test_missing_model_folder_does_not_stop_the_others(copy_of):
    root = copy_of("mlp")
    rep = verify_models(["nest_mlp", "mlp"], root)
    assert rep.failures() == [f"nest_mlp: no artifact folder at {root / 'nest_mlp'}; run `export-models nest_mlp`"]
    assert rep.models[1].runtimes["ort_cpu"] == "ran"


@pytest.mark.parametrize("bad,message", [
    (np.full((2, 20), np.inf, np.float32), "'x' contains infinity; inputs must be finite"),
    (np.full((2, 20), np.nan, np.float32), "'x' contains NaN; inputs must be finite"),
    (np.zeros((2, 21), np.float32), "'x' has shape (2, 21), fancy_mlp takes ('batch', 20) with batch >= 1"),
    (np.zeros((0, 20), np.float32), "'x' has shape (0, 20)"),
    (np.zeros((2, 20), np.float64), "'x' is float64, fancy_mlp takes float32"),
], ids=["inf", "nan", "shape", "empty", "dtype"])
def test_bad_user_inputs_are_refused_before_running(tmp_path, bad, message):
    path = tmp_path / "in.npz"
    np.savez(path, x=bad)
    with pytest.raises(InputError) as e:
        verify_models(["fancy_mlp"], tmp_path / "nowhere", inputs=path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_wrong_key_and_unreadable_file(tmp_path):
    np.savez(tmp_path / "k.npz", y=np.zeros((1, 20), np.float32))
    with pytest.raises(InputError, match=r"has keys \['y'\], fancy_mlp takes \['x'\]"):
        verify_models(["fancy_mlp"], tmp_path, inputs=tmp_path / "k.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(InputError, match="not a readable .npz file"):
        verify_models(["fancy_mlp"], tmp_path, inputs=tmp_path / "junk.npz")


def test_user_inputs_are_verified(artifacts, tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.random.default_rng(7).normal(size=(5, 20)).astype(np.float32))
    rep = verify_models(["fancy_mlp"], artifacts, runtimes=["ort_cpu", "saved_model"], inputs=path)
    assert rep, rep.failures()
    assert [c["name"] for c in rep.models[0].cases] == ["user:mine.npz"]


def test_compare_rules():
    ref = np.array([1.0, 100.0, 0.0], np.float32)
    # 1e-4 off on 100 is within rtol*|ref| = 1e-3 -> passes although over atol
    assert compare_output("y", ref, ref + np.array([0, 1e-4, 0], np.float32), 1e-5, 1e-5)
    bad = compare_output("y", ref, ref + np.array([0, 0, 1e-3], np.float32), 1e-5, 1e-5)
    assert not bad and bad.worst_index == [2]
    assert not compare_output("y", ref, np.array([1.0, np.nan, 0.0], np.float32), 1e-5, 1e-5)
    assert compare_output("y", np.array([np.nan]), np.array([np.nan]), 1e-5, 1e-5)
    assert not compare_output("y", ref, ref[:2], 1e-5, 1e-5)



# --- verdict plumbing: each kind of finding reaches the failures (and so the exit code) ----------

def test_runtime_that_raises_during_inference_is_an_error_and_fails_the_run(copy_of):
    """A real onnxruntime failure, no mock: the logits are reshaped to [3, -1] and back, which no batch
    of 10 logits (1, 2 or 7 rows) divides into. The model loads; inference raises."""
    import onnx
    from onnx import helper, numpy_helper

    root = copy_of("mlp")
    folder = root / "mlp"
    model = onnx.load(str(folder / layout.ONNX))
    graph = model.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = ["pre_" + o if o == out else o for o in node.output]
    graph.initializer.extend([numpy_helper.from_array(np.array([3, -1], np.int64), "odd_shape"),
                              numpy_helper.from_array(np.array([-1, 10], np.int64), "back_shape")])
    graph.node.extend([helper.make_node("Reshape", ["pre_" + out, "odd_shape"], ["odd"]),
                       helper.make_node("Reshape", ["odd", "back_shape"], [out])])
    onnx.save(model, str(folder / layout.ONNX))
    _rehash(folder)
    rep = verify_models(["mlp"], root, runtimes=["ort_cpu"])
    results = rep.models[0].results
    assert {r.status for r in results} == {"error"} and len(results) == 3
    assert not rep
    assert rep.failures()[0].startswith("mlp/ort_cpu: case random_b1: ")
    assert len(rep.failures()) == 3 and all("\n" not in line for line in rep.failures())
    assert rep.to_json()["passed"] is False


def test_failed_structure_check_is_in_the_failures(copy_of):
    """The classic tf2onnx leak: a weight listed as a graph input too. Every runtime still agrees
    (an initializer that is also an input is an overridable default), so only the check can catch it."""
    import onnx

    root = copy_of("mlp")
    folder = root / "mlp"
    model = onnx.load(str(folder / layout.ONNX))
    weight = model.graph.initializer[0]
    model.graph.input.append(onnx.helper.make_tensor_value_info(weight.name, weight.data_type, list(weight.dims)))
    onnx.save(model, str(folder / layout.ONNX))
    _rehash(folder)
    rep = verify_models(["mlp"], root, runtimes=["ort_cpu"])
    assert {r.status for r in rep.models[0].results} == {"passed"}
    [line] = rep.failures()
    assert line.startswith("mlp: structure check onnx_inputs failed: expected [('x', 'float32', ('batch', 20))], found ")
    assert line.endswith(" (a captured constant leaked out as an input?)")


def test_stored_outputs_changed_are_caught_with_tensorflow_installed(copy_of):
    """Edit one stored TF eager output and re-hash the card: only the test-data check can catch it
    (with TensorFlow the runtimes are compared with a fresh TF eager, not with the stored outputs)."""
    from onnx import numpy_helper

    root = copy_of("mlp")
    folder = root / "mlp"
    path = folder / "test_data_set_1" / "output_0.pb"
    import onnx

    tensor = onnx.TensorProto.FromString(path.read_bytes())
    values = numpy_helper.to_array(tensor).copy()
    values[1, 3] += 1e-3
    path.write_bytes(numpy_helper.from_array(values, tensor.name).SerializeToString())
    _rehash(folder)
    rep = verify_models(["mlp"], root, runtimes=["ort_cpu"])
    assert rep.failures() == ["mlp: structure check test_data_outputs failed: outputs differ from TF eager: ['random_b2']"]
