"""verify/verifier.py's verdicts on a synthetic model folder, replayed as without TensorFlow.

The folder is what `export-models` writes (card, ONNX, test data sets; the TF
files are stand-in bytes, hashed but never loaded on this path), so
`verify_model(..., with_tf=False)` runs real onnxruntime and onnx.reference on
it in milliseconds. Each test plants one finding and checks it reaches the
failures, so the printed verdict and the exit code cannot disagree.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tf_parity_export.models import ModelSpec, TensorSig, UserError
from tf_parity_export.verify import layout
from tf_parity_export.verify.test_data import write_set
from tf_parity_export.verify.verifier import STORED, CaseResult, ModelReport, Report, tool_versions, verify_model

F = TensorProto.FLOAT
SPEC = ModelSpec(name="toy", builder="none:none", summary="", inputs=(TensorSig("x", (None, 4)),),
                 outputs=(TensorSig("y", (None, 4)),))
FEEDS = [np.array([[1, -2, 3, -4]], np.float32), np.array([[0.5, 0, -1, 2], [3, 2, 1, 0]], np.float32)]


def _onnx(reshape_to=None, leak=False, op="Relu"):
    nodes = [helper.make_node(op, ["x"], ["h"]), helper.make_node("Mul", ["h", "two"], ["y"])]
    inits = [numpy_helper.from_array(np.float32(2), "two")]
    if reshape_to is not None:  # reshape and back: fails at run time when the batch does not divide
        nodes[-1].output[0] = "pre"
        inits += [numpy_helper.from_array(np.array(reshape_to, np.int64), "odd"),
                  numpy_helper.from_array(np.array([-1, 4], np.int64), "back")]
        nodes += [helper.make_node("Reshape", ["pre", "odd"], ["o"]), helper.make_node("Reshape", ["o", "back"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", F, ["batch", 4])]
    if leak:
        inputs.append(helper.make_tensor_value_info("two", F, []))
    graph = helper.make_graph(nodes, "toy", inputs, [helper.make_tensor_value_info("y", F, ["batch", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _folder(tmp_path, model=None, paths=(None, None), expected=None):
    folder = tmp_path / "toy"
    (folder / layout.SAVED_MODEL).mkdir(parents=True)
    (folder / layout.SAVED_MODEL / "saved_model.pb").write_bytes(b"stand-in")
    (folder / layout.WEIGHTS).write_bytes(b"stand-in")
    (folder / layout.TFLITE).write_bytes(b"stand-in")
    onnx.save(model or _onnx(), str(folder / layout.ONNX))
    entries = []
    for i, feed in enumerate(FEEDS):
        want = (expected or {}).get(i, np.maximum(feed, 0) * 2)
        entries.append({"set": write_set(folder, i, SPEC, {"x": feed}, {"y": want}), "case": f"case{i}",
                        "kind": "random", "path": paths[i]})
    card = {"schema": layout.SCHEMA_VERSION, "files": layout.hash_tree(folder), "test_data": entries}
    _sign(folder, card)
    return folder


def _sign(folder, card):
    """Write the card and record it in manifest.json, as an export does."""
    layout.write_json(folder / layout.CARD, card)
    entry = {"card_sha256": layout.sha256(folder / layout.CARD), "onnx_sha256": layout.sha256(folder / layout.ONNX)}
    layout.write_json(folder.parent / layout.INDEX, {"models": {folder.name: entry}})


def _verify(folder, runtimes=("ort_cpu", "onnx_reference"), **kw):
    return verify_model(SPEC, folder, list(runtimes), with_tf=False, **kw)


def test_faithful_folder_passes_on_every_onnx_runtime(tmp_path):
    rep = _verify(_folder(tmp_path), runtimes=("ort_cpu", "ort_cpu_noopt", "onnx_reference"))
    assert rep.failures() == [] and rep.error == "" and rep.reference == STORED
    assert rep.runtimes == {"ort_cpu": "ran", "ort_cpu_noopt": "ran", "onnx_reference": "ran"}
    assert [(r.runtime, r.case, r.status) for r in rep.results] == [
        (rt, c, "passed") for rt in ("ort_cpu", "ort_cpu_noopt", "onnx_reference") for c in ("case0", "case1")]
    assert rep.cases == [{"name": "case0", "kind": "random", "batch": 1}, {"name": "case1", "kind": "random", "batch": 2}]
    assert [c.name for c in rep.checks] == ["onnx_inputs", "onnx_outputs", "onnx_control_flow", "onnx_checker"]
    assert rep.coverage == {}
    assert rep.to_json()["passed"] is True


def test_runtime_that_raises_during_inference_is_an_error_and_a_failure(tmp_path):
    rep = _verify(_folder(tmp_path, _onnx(reshape_to=[3, -1])), runtimes=("ort_cpu",))
    assert [r.status for r in rep.results] == ["error", "error"]
    lines = rep.failures()
    assert len(lines) == 2 and lines[0].startswith("toy/ort_cpu: case case0: ")
    assert all("\n" not in line for line in lines)
    reason = rep.results[0].reason
    assert reason.split(": ")[0].isidentifier() and lines[0] == f"toy/ort_cpu: case case0: {reason}"
    assert "Reshape" in reason.split(": ", 1)[1]  # the exception's own first line, after its type
    assert rep.to_json()["passed"] is False


def test_an_exception_without_a_message_is_still_named(tmp_path):
    from tf_parity_export.verify import verifier

    class Silent:
        name = "silent"

        def infer(self, feed):
            raise KeyError()  # str() of this is "" : the reason must still say what happened

    result = verifier._run_case(SPEC, Silent(), verifier.Case("c", "random", {"x": FEEDS[0]}), {}, None, 1e-5)
    assert (result.status, result.reason) == ("error", "KeyError: ")


def test_a_mismatch_is_a_failure_naming_output_error_index_and_tolerances(tmp_path):
    wrong = FEEDS[1].clip(0) * 2
    wrong[1, 2] += 0.5
    rep = _verify(_folder(tmp_path, expected={1: wrong}), runtimes=("ort_cpu",))
    assert [r.status for r in rep.results] == ["passed", "failed"]
    assert rep.failures() == ["toy/ort_cpu: case case1: output 'y' max abs error 0.5, max rel 0.2 at [1, 2] "
                              "exceeds atol=1e-05 and rtol=1e-05 (1 of 8 elements out of tolerance)"]


def test_a_boundary_case_is_reported_apart_not_failed(tmp_path):
    """A case whose recorded path sits on a decision boundary may go either way: not a failure, not a pass."""
    wrong = FEEDS[0].clip(0) * 2 + 1
    paths = ({"iterations": 0, "branch": "kept", "margin": 1e-6}, {"iterations": 1, "branch": "kept", "margin": 0.2})
    rep = _verify(_folder(tmp_path, paths=paths, expected={0: wrong}), runtimes=("ort_cpu",))
    assert [c["kind"] for c in rep.cases] == ["boundary", "random"]
    assert rep.cases[0]["path"] == {**paths[0], "source": "recorded at export"}
    assert [r.status for r in rep.results] == ["boundary", "passed"]
    assert rep.failures() == []


def test_a_margin_just_over_the_boundary_is_an_ordinary_case(tmp_path):
    from tf_parity_export.verify.inputs import BOUNDARY_MARGIN

    paths = ({"iterations": 0, "branch": "kept", "margin": BOUNDARY_MARGIN},
             {"iterations": 0, "branch": "kept", "margin": BOUNDARY_MARGIN * 0.999})
    rep = _verify(_folder(tmp_path, paths=paths), runtimes=("ort_cpu",))
    assert [c["kind"] for c in rep.cases] == ["random", "boundary"]


def test_a_failed_structure_check_is_a_failure_even_when_every_runtime_agrees(tmp_path):
    rep = _verify(_folder(tmp_path, _onnx(leak=True)), runtimes=("ort_cpu",))
    assert {r.status for r in rep.results} == {"passed"}
    assert rep.failures() == ["toy: structure check onnx_inputs failed: expected [('x', 'float32', ('batch', 4))], "
                              "found [('x', 'float32', ('batch', 4)), ('two', 'float32', ())] "
                              "(a captured constant leaked out as an input?)"]


def test_a_runtime_that_cannot_load_the_model_is_an_error(tmp_path):
    rep = _verify(_folder(tmp_path, _onnx(op="NoSuchOp")), runtimes=("ort_cpu", "onnx_reference"))
    assert list(rep.runtimes) == ["ort_cpu", "onnx_reference"]  # the next runtime is still tried
    assert rep.runtimes["ort_cpu"].startswith("error: toy: model.onnx cannot be loaded by onnxruntime (")
    assert f"toy/ort_cpu: {rep.runtimes['ort_cpu']}" in rep.failures()
    assert not [r for r in rep.results if r.runtime == "ort_cpu"]


def test_unavailable_runtime_fails_only_when_required(tmp_path):
    rep = _verify(_folder(tmp_path), runtimes=("tf_eager", "ort_cpu"))
    assert list(rep.runtimes) == ["tf_eager", "ort_cpu"] and len(rep.results) == 2  # the next runtime still runs
    assert rep.runtimes["tf_eager"].startswith("unavailable: TensorFlow is not installed here")
    assert rep.failures() == [] and rep.failures({"ort_cpu"}) == []
    assert rep.failures({"tf_eager"}) == [f"toy/tf_eager: {rep.runtimes['tf_eager']}"]
    chosen = Report([rep], {"ort_cpu"}, 1.0, {})
    required = Report([rep], {"ort_cpu", "tf_eager"}, 1.0, {})
    assert chosen and chosen.to_json()["passed"] is True and chosen.to_json()["failures"] == []
    assert not required and required.to_json()["passed"] is False
    assert required.failures() == required.to_json()["failures"] == rep.failures({"tf_eager"})
    assert required.to_json()["models"][0]["passed"] is False and chosen.to_json()["models"][0]["passed"] is True


def test_a_bad_artifact_is_one_error_and_nothing_runs(tmp_path):
    folder = _folder(tmp_path)
    (folder / layout.ONNX).write_bytes(b"changed")
    rep = _verify(folder)
    assert rep.error == "toy: model.onnx changed since export (sha256 mismatch); re-export with `export-models toy`"
    assert rep.failures() == [rep.error] and rep.results == [] and rep.runtimes == {}
    assert rep.to_json()["passed"] is False and rep.to_json()["error"] == rep.error


def test_card_and_external_data_problems_name_the_model(tmp_path):
    folder = _folder(tmp_path)
    (folder / layout.CARD).unlink()
    assert _verify(folder).failures() == [f"toy: {folder / layout.CARD} is missing; re-export with `export-models toy`"]
    model = _onnx()
    two = model.graph.initializer[0]
    two.ClearField("float_data")
    two.ClearField("raw_data")
    two.data_location = TensorProto.EXTERNAL
    two.external_data.add(key="location", value="../elsewhere.bin")
    folder = _folder(tmp_path / "ext", model)
    assert _verify(folder).failures() == ["toy: model.onnx tensor 'two' points to external data at '../elsewhere.bin', "
                                          "outside the model folder; refusing it"]
    two.external_data[0].value = "w.bin"  # inside, but not in the card
    folder = _folder(tmp_path / "unlisted", model)
    assert _verify(folder).failures() == ["toy: model.onnx tensor 'two' reads 'w.bin', which card.json does not list; "
                                          "refusing it"]


def test_user_inputs_need_tensorflow(tmp_path):
    from tf_parity_export.verify.inputs import Case

    rep = _verify(_folder(tmp_path), user_case=Case("user:mine.npz", "user", {"x": FEEDS[0]}))
    assert rep.failures() == ["toy: --inputs needs TensorFlow to compute reference outputs; without it only the "
                              "stored test data sets can be replayed"]


def test_stored_test_data_that_is_not_a_valid_feed_is_an_error(tmp_path):
    folder = _folder(tmp_path)
    bad = np.array([[np.nan, 0, 0, 0]], np.float32)
    (folder / "test_data_set_0" / "input_0.pb").write_bytes(numpy_helper.from_array(bad, "x").SerializeToString())
    card = json.loads((folder / layout.CARD).read_text())
    card["files"] = layout.hash_tree(folder)
    _sign(folder, card)
    assert _verify(folder).failures() == ["toy: case case0: 'x' contains NaN; inputs must be finite"]


def test_each_failure_kind_is_listed_in_order():
    rep = ModelReport("m", runtimes={"a": "ran", "b": "error: boom", "c": "unavailable: no"})
    rep.results = [CaseResult("a", "c1", "passed"), CaseResult("a", "c2", "error", reason="E: x"),
                   CaseResult("a", "c3", "boundary")]
    rep.coverage = {"loop ran once": [], "branch kept": ["c1"]}
    from tf_parity_export.verify.structure import Check

    rep.checks = [Check("ok", True, ""), Check("bad", False, "why")]
    assert rep.failures({"c"}) == ["m: structure check bad failed: why", "m/b: error: boom", "m/c: unavailable: no",
                                   "m/a: case c2: E: x",
                                   "m: no input covers 'loop ran once' (coverage; --allow-uncovered to accept)"]
    data = rep.to_json({"c"})
    assert data["passed"] is False and data["checks"][1] == {"check": "bad", "passed": False, "detail": "why"}
    assert data["results"][1] == {"runtime": "a", "case": "c2", "status": "error", "reason": "E: x", "outputs": []}
    assert set(data) == {"model", "passed", "error", "reference", "runtimes", "precision", "cases", "coverage",
                         "allow_uncovered", "insensitive", "allow_insensitive", "graph_coverage", "checks", "results",
                         "localization"}
    assert data["graph_coverage"] == {"nodes": [], "cases": {}} and data["allow_uncovered"] is False
    assert data["localization"] == {}  # nothing localized unless a runtime is outside the tolerance or asked for
    rep.allow_uncovered = True  # missing coverage is reported, not failed; every other finding still fails
    assert rep.failures({"c"}) == ["m: structure check bad failed: why", "m/b: error: boom", "m/c: unavailable: no",
                                   "m/a: case c2: E: x"]
    assert rep.to_json({"c"})["allow_uncovered"] is True
    rep.results, rep.checks, rep.runtimes = [], [], {}
    assert rep.failures() == [] and rep.to_json()["passed"] is True


def test_report_json_is_strict_and_agrees_with_its_truth():
    ok = Report([ModelReport("m")], set(), 1.23456, {"python": "3.11.0"})
    data = ok.to_json()
    assert data == {"schema": "tf-parity-report/1", "passed": True, "seconds": 1.235, "environment": {"python": "3.11.0"},
                    "failures": [], "models": [ok.models[0].to_json()]}
    json.dumps(data, allow_nan=False)


def test_tool_versions_keep_what_decides_the_bytes():
    env = {"python": "3.11.9", "platform": "Linux-x", "tensorflow": "2.21.0", "keras": "3.15.1", "tf2onnx": "1.17.0",
           "onnx": "1.23.2", "onnxruntime": "1.32.0", "onnxruntime_providers": ["CPUExecutionProvider"]}
    assert tool_versions(env) == {"python": "3.11", "tensorflow": "2.21.0", "keras": "3.15.1", "tf2onnx": "1.17.0",
                                  "onnx": "1.23.2", "onnxruntime": "1.32.0"}


@pytest.mark.parametrize("runtimes", [(), ("ort_cpu",)])
def test_no_runtime_chosen_runs_nothing_but_still_checks(tmp_path, runtimes):
    rep = _verify(_folder(tmp_path, _onnx(leak=True)), runtimes=runtimes)
    assert rep.failures()[0].startswith("toy: structure check onnx_inputs failed")
    assert len(rep.results) == 2 * len(runtimes)


def test_coverage_counts_recorded_paths_but_never_boundary_cases(tmp_path):
    """With a probe declared, each required path must be taken by an input that is not on a boundary.
    (The rules as they stand; verify/verifier.py's REQUIRED_PATHS.)"""
    from dataclasses import replace

    spec = replace(SPEC, probe="none:never_resolved_without_tensorflow")
    paths = ({"iterations": 0, "branch": "scaled", "margin": 0.3}, {"iterations": 1, "branch": "kept", "margin": 1e-6})
    rep = verify_model(spec, _folder(tmp_path, paths=paths), ["ort_cpu"], with_tf=False)
    assert rep.coverage == {"loop ran 0 times": ["case0"], "loop ran once": [], "loop ran 10+ times": [],
                            "branch scaled": ["case0"], "branch kept": []}
    assert rep.failures() == [f"toy: no input covers '{need}' (coverage; --allow-uncovered to accept)"
                              for need in ("loop ran once", "loop ran 10+ times", "branch kept")]


@pytest.mark.parametrize("iterations, hits", [
    (0, {"loop ran 0 times"}), (1, {"loop ran once"}), (9, set()), (10, {"loop ran 10+ times"}),
    (12, {"loop ran 10+ times"}),
])
def test_each_loop_requirement_is_met_only_by_its_count(tmp_path, iterations, hits):
    from dataclasses import replace

    spec = replace(SPEC, probe="none:never_resolved_without_tensorflow")
    paths = ({"iterations": iterations, "branch": "kept", "margin": 0.3}, None)
    rep = verify_model(spec, _folder(tmp_path, paths=paths), ["ort_cpu"], with_tf=False)
    assert {need for need, names in rep.coverage.items() if names and need.startswith("loop")} == hits


# --- reduced-precision runtimes: measured, not failed, unless required --------------------------

def _declare_reduced(monkeypatch, name="ort_cpu_noopt", numeric="tf32"):
    """Declare a real runtime reduced-precision, as ort_cuda_tf32 is (no GPU here): the verdict rule is what is tested."""
    from tf_parity_export.verify import runtimes

    monkeypatch.setitem(runtimes.MODES, name, numeric)


def test_modes_are_declared_for_the_reduced_runtimes_only():
    from tf_parity_export.verify.runtimes import EXACT, MODES, REDUCED, RUNTIMES, mode

    assert EXACT == "fp32" and mode("ort_cpu") == "fp32" and mode("no_such_runtime") == "fp32"
    assert MODES == {"ort_cuda_tf32": "tf32", "ort_tensorrt_fp16": "fp16", "openvino_default": "auto"}
    assert all(mode(n) == m and m in REDUCED for n, m in MODES.items()) and set(MODES) <= set(RUNTIMES)


def test_a_reduced_runtime_outside_the_tolerance_is_measured_not_failed(tmp_path, monkeypatch):
    _declare_reduced(monkeypatch)
    wrong = FEEDS[1].clip(0) * 2
    wrong[1, 2] += 0.5
    folder = _folder(tmp_path, expected={1: wrong})
    rep = _verify(folder, runtimes=("ort_cpu_noopt", "ort_cpu"))
    assert [(r.runtime, r.status) for r in rep.results] == [
        ("ort_cpu_noopt", "passed"), ("ort_cpu_noopt", "measured"), ("ort_cpu", "passed"), ("ort_cpu", "failed")]
    assert rep.failures() == ["toy/ort_cpu: case case1: output 'y' max abs error 0.5, max rel 0.2 at [1, 2] "
                              "exceeds atol=1e-05 and rtol=1e-05 (1 of 8 elements out of tolerance)"]
    p = rep.precision["ort_cpu_noopt"]
    scale = {k: p.pop(k) for k in ("worst_scale_error", "min_cosine", "min_snr_db")}
    assert p == {"mode": "tf32", "exact": False, "computes_in": "tf32", "atol": 1e-5, "rtol": 1e-5,
                 "within_tolerance": False, "max_abs": 0.5, "max_rel": 0.2, "worst_case": "case1", "worst_output": "y",
                 "worst_index": [1, 2], "tightest_atol": 0.5, "tightest_rtol": 0.2}
    assert 0 < scale["worst_scale_error"] < 1 and 0.99 < scale["min_cosine"] < 1 and 0 < scale["min_snr_db"] < 100
    p.update(scale)
    assert rep.precision["ort_cpu"]["exact"] is True and rep.precision["ort_cpu"]["mode"] == "fp32"
    assert rep.to_json()["precision"] == rep.precision


def test_a_required_reduced_runtime_fails_at_its_own_atol_or_the_models(tmp_path, monkeypatch):
    _declare_reduced(monkeypatch)
    wrong = FEEDS[1].clip(0) * 2
    wrong[1, 2] += 0.5
    folder = _folder(tmp_path, expected={1: wrong})
    rep = _verify(folder, runtimes=("ort_cpu_noopt",), required={"ort_cpu_noopt": None})
    assert [r.status for r in rep.results] == ["passed", "failed"] and len(rep.failures()) == 1
    rep = _verify(folder, runtimes=("ort_cpu_noopt",), required={"ort_cpu_noopt": 0.4})
    assert [r.status for r in rep.results] == ["passed", "failed"]
    assert rep.failures()[0].endswith("exceeds atol=0.4 and rtol=1e-05 (1 of 8 elements out of tolerance)")
    assert rep.precision["ort_cpu_noopt"]["atol"] == 0.4
    rep = _verify(folder, runtimes=("ort_cpu_noopt",), required={"ort_cpu_noopt": 0.5})
    assert [r.status for r in rep.results] == ["passed", "passed"] and rep.failures() == []
    assert rep.precision["ort_cpu_noopt"]["within_tolerance"] is True
    with pytest.raises(UserError) as info:  # an exact runtime has no ATOL of its own
        _verify(folder, runtimes=("ort_cpu",), required={"ort_cpu": 0.5})
    assert str(info.value) == ("--require ort_cpu:0.5: ort_cpu is exact (fp32), always held to the model's own "
                               "tolerance; an ATOL is for a reduced-precision runtime (openvino_default, "
                               "ort_cpu_noopt, ort_cuda_tf32, ort_tensorrt_fp16). Use --require ort_cpu to require it")
    # (ort_cpu_noopt is declared reduced in this test; the list is every runtime whose mode is not fp32)
    exact = _verify(folder, runtimes=("ort_cpu",), required={"ort_cpu": None})
    assert [r.status for r in exact.results] == ["passed", "failed"]


def test_a_reduced_runtime_that_errors_is_still_a_failure(tmp_path, monkeypatch):
    _declare_reduced(monkeypatch, "ort_cpu")
    rep = _verify(_folder(tmp_path, _onnx(reshape_to=[3, -1])), runtimes=("ort_cpu",))
    assert [r.status for r in rep.results] == ["error", "error"] and len(rep.failures()) == 2
    assert rep.precision["ort_cpu"]["max_abs"] is None and rep.precision["ort_cpu"]["within_tolerance"] is False


def _result(case, status, ref, got, atol=1e-5, rtol=1e-5):
    from tf_parity_export.verify.compare import compare_output

    return CaseResult("rt", case, status, [compare_output("y", np.asarray(ref, np.float32), np.asarray(got, np.float32),
                                                          atol, rtol)])


def test_precision_summary_reports_the_worst_counted_error_and_the_tightest_tolerances():
    from tf_parity_export.verify.verifier import precision_summary

    results = [_result("b", "passed", [1, 2], [1, 2.25]), _result("a", "measured", [4, 8], [4.5, 8]),
               _result("c", "boundary", [1, 1], [9, 1]), _result("d", "loop_cap", [1, 1], [1, 9])]
    p = precision_summary("ort_cpu", "", results, 1e-5, 2e-5)
    assert p == {"mode": "fp32", "exact": True, "computes_in": "fp32", "atol": 1e-5, "rtol": 2e-5,
                 "within_tolerance": False, "max_abs": 0.5, "max_rel": 0.125, "worst_case": "a", "worst_output": "y",
                 "worst_index": [0], "tightest_atol": 0.5, "tightest_rtol": 0.125,
                 # the worst over counted outputs, each against its own scale: b 0.25 / 2, a 0.5 / 8
                 "worst_scale_error": 0.125, "min_cosine": pytest.approx(min(
                     (1 + 2 * 2.25) / np.sqrt(5 * (1 + 2.25**2)), (4 * 4.5 + 64) / np.sqrt(80 * (4.5**2 + 64)))),
                 "min_snr_db": pytest.approx(10 * np.log10(5 / 0.0625))}
    within = precision_summary("ort_cuda_tf32", "bf16", results[:1] + results[2:], 1e-5, 2e-5)
    assert within["within_tolerance"] is True and within["computes_in"] == "bf16" and within["max_abs"] == 0.25
    assert precision_summary("openvino_default", "", [], 1e-5, 1e-5)["computes_in"] == "unknown"
    assert precision_summary("ort_tensorrt_fp16", "", [], 1e-5, 1e-5)["computes_in"] == "fp16"


def test_the_tightest_rtol_is_the_worst_relative_error_wherever_the_worst_absolute_one_is():
    """Case "big" has the worst absolute error (0.5 on 1000), case "small" the worst relative one
    (1e-3 on 1e-3): the tightest rtol is small's, and it is the rtol the comparison rule needs."""
    from tf_parity_export.verify.compare import compare_output
    from tf_parity_export.verify.verifier import precision_summary

    refs, gots = {"big": [1000.0, 1.0], "small": [1e-3, 2.0]}, {"big": [1000.5, 1.0], "small": [2e-3, 2.0]}
    results = [_result(c, "measured", refs[c], gots[c]) for c in ("big", "small")]
    p = precision_summary("ort_cuda_tf32", "", results, 1e-5, 1e-5)
    assert (p["worst_case"], p["tightest_atol"]) == ("big", pytest.approx(0.5))
    assert p["tightest_rtol"] == p["max_rel"] == pytest.approx(1.0, rel=1e-6)

    def passes(atol: float, rtol: float) -> bool:
        return all(compare_output("y", np.asarray(refs[c], np.float32), np.asarray(gots[c], np.float32), atol, rtol)
                   for c in refs)

    assert passes(0.0, p["tightest_rtol"] * 1.0001) and not passes(0.0, p["tightest_rtol"] * 0.9)
    assert passes(p["tightest_atol"] * 1.0001, 0.0) and not passes(p["tightest_atol"] * 0.9, 0.0)


@pytest.mark.parametrize("results", [
    [], [CaseResult("rt", "a", "error", reason="E: x")],
    "error_and_pass", "nan", "zero_reference", "only_apart",
])
def test_precision_summary_gives_none_where_nothing_could_be_compared(results):
    from tf_parity_export.verify.verifier import precision_summary

    if results == "error_and_pass":
        results = [_result("a", "passed", [1], [1.5]), CaseResult("rt", "b", "error", reason="E: x")]
    elif results == "nan":
        results = [_result("a", "passed", [1], [1.5]), _result("b", "failed", [1], [np.nan])]
    elif results == "only_apart":
        results = [_result("a", "boundary", [1], [1.5])]
    elif results == "zero_reference":  # the largest relative error is infinite: no rtol alone would do
        p = precision_summary("rt", "", [_result("a", "failed", [0, 1], [0.5, 1])], 1e-5, 1e-5)
        assert p["max_abs"] == p["tightest_atol"] == 0.5 and p["max_rel"] == p["tightest_rtol"] == float("inf")
        return
    p = precision_summary("rt", "", results, 1e-5, 1e-5)
    assert [p[k] for k in ("max_abs", "max_rel", "worst_case", "worst_output", "worst_index", "tightest_atol",
                           "tightest_rtol")] == [None] * 7


# --- cases reported apart: boundary and loop cap ---------------------------------------------------

def test_a_capped_loop_is_reported_apart_and_all_apart_is_a_failure(tmp_path):
    from tf_parity_export.verify.verifier import APART

    assert APART == {"boundary": "boundary", "capped": "loop_cap"}
    wrong = FEEDS[0].clip(0) * 2 + 1
    paths = ({"iterations": 64, "branch": "kept", "capped": True, "margin": 1e-9}, {"iterations": 1, "margin": 0.5})
    rep = _verify(_folder(tmp_path, paths=paths, expected={0: wrong}), runtimes=("ort_cpu",))
    assert [c["kind"] for c in rep.cases] == ["capped", "random"]  # capped wins over a boundary margin
    assert [r.status for r in rep.results] == ["loop_cap", "passed"] and rep.failures() == []
    paths = ({"iterations": 64, "capped": True}, {"iterations": 0, "margin": 1e-7})
    rep = _verify(_folder(tmp_path / "all", paths=paths), runtimes=("ort_cpu",))
    assert [r.status for r in rep.results] == ["loop_cap", "boundary"]
    assert rep.failures() == ["toy: no case was compared: all 2 are boundary or loop_cap cases, reported but not "
                              "counted; give inputs away from the thresholds"]
    assert _verify(_folder(tmp_path / "none", paths=paths), runtimes=()).failures() == []  # nothing ran: nothing to say


def test_a_capped_flag_that_is_false_or_a_missing_margin_counts_normally(tmp_path):
    paths = ({"iterations": 3, "capped": False, "margin": 0.5}, {"iterations": 1, "margin": None})
    rep = _verify(_folder(tmp_path, paths=paths), runtimes=("ort_cpu",))
    assert [c["kind"] for c in rep.cases] == ["random", "random"] and rep.failures() == []


# --- large batches in chunks; sums over the batch -------------------------------------------------

class _Recording:
    """A real onnxruntime session that records the batch of every call."""

    def __init__(self, folder, spec=SPEC):
        from tf_parity_export.verify.runtimes import RUNTIMES, Subject

        self.inner = RUNTIMES["ort_cpu"](Subject(spec, folder, None))
        self.batches = []

    def infer(self, feed):
        self.batches.append(next(iter(feed.values())).shape[0])
        return self.inner.infer(feed)


def test_a_row_wise_model_runs_a_large_batch_in_chunks_with_the_same_result(tmp_path, monkeypatch):
    from tf_parity_export.verify import verifier

    runtime = _Recording(_folder(tmp_path))
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    monkeypatch.setattr(verifier, "CHUNK_ROWS", 4)
    y = verifier.infer(SPEC, runtime, {"x": x})
    assert runtime.batches == [4, 4, 2] and np.array_equal(y["y"], np.maximum(x, 0) * 2)
    runtime.batches.clear()
    verifier.infer(SPEC, runtime, {"x": x[:4]})
    assert runtime.batches == [4]
    from dataclasses import replace

    summed = replace(SPEC, outputs=(TensorSig("y", (None, 4), sums_per_row=0), TensorSig("t", ())))
    runtime.batches.clear()
    verifier.infer(summed, runtime, {"x": x})  # an output without the batch dimension: never split
    assert runtime.batches == [10]
    assert verifier.CHUNK_ROWS == 4 and 1 << 16 == 65536


def test_terms_count_the_batch_times_the_terms_per_row_of_a_summed_output():
    from tf_parity_export.verify.verifier import _terms

    spec = ModelSpec(name="s", builder="none:none", summary="", inputs=(TensorSig("x", (None, 4)),),
                     outputs=(TensorSig("y", (None, 4)), TensorSig("total", (), sums_per_row=20)))
    feed = {"x": np.zeros((7, 4), np.float32)}
    assert _terms(spec, "total", feed) == 140 and _terms(spec, "y", feed) == 1 and _terms(spec, "none", feed) == 1


def test_a_summed_output_is_compared_with_its_grown_tolerance(tmp_path):
    from dataclasses import replace

    from tf_parity_export.verify.compare import summed_rtol

    spec = replace(SPEC, outputs=(TensorSig("y", (None, 4), sums_per_row=4),))
    folder = _folder(tmp_path)
    rep = verify_model(spec, folder, ["ort_cpu"], with_tf=False)
    assert [[(o.terms, o.rtol) for o in r.outputs] for r in rep.results] == [
        [(4, summed_rtol(1e-5, 4))], [(8, summed_rtol(1e-5, 8))]]


def test_a_scope_given_is_used_and_left_open(tmp_path):
    from tf_parity_export.verify.runtimes import RunScope

    class Service:
        closed = False

        def close(self):
            self.closed = True

    with RunScope() as scope:
        service = scope.shared("browser", Service)
        rep = _verify(_folder(tmp_path), runtimes=("ort_cpu",), scope=scope)
        assert rep.failures() == [] and len(rep.results) == 2
        assert not service.closed and scope.shared("browser", Service) is service  # the caller closes it
    assert service.closed


class _UnloadableWeights:
    """Stands in for the Keras model the exporter already built (verify_models' `models`): its weights fail to load."""

    def load_weights(self, path):
        raise OSError("truncated HDF5 file")


def test_with_tensorflow_the_weights_are_loaded_into_the_prebuilt_model(tmp_path):
    from tf_parity_export.verify.runtimes import REFERENCE

    rep = verify_model(SPEC, _folder(tmp_path), ["ort_cpu"], prebuilt=_UnloadableWeights())
    assert rep.reference == REFERENCE
    assert rep.error == "toy: model.weights.h5 cannot be loaded (truncated HDF5 file)" and rep.results == []


class _NumpyToy:
    """Stands in for the Keras model (TF eager) without TensorFlow: the toy graph's function in numpy."""

    def load_weights(self, path):
        pass

    def __call__(self, x):
        return np.maximum(x, 0) * 2


class _ToyPath:
    def __init__(self, x):
        self.x = x

    def to_json(self):
        return {"iterations": int(self.x.shape[0]), "branch": "kept" if self.x.sum() > 0 else "scaled",
                "margin": 0.5, "norm_before_loop": float(np.linalg.norm(self.x))}


class _ToyProbe:
    def __init__(self, model):
        assert isinstance(model, _NumpyToy)  # the model the folder's weights were loaded into

    def trace(self, x):
        return _ToyPath(x)


def toy_probe(model):
    return _ToyProbe(model)


def test_with_the_model_each_cases_path_is_the_probes_trace(tmp_path):
    """With TensorFlow (here a numpy stand-in for the model) the probe traces every case itself."""
    from dataclasses import replace

    from tf_parity_export.verify.inputs import random_cases

    spec = replace(SPEC, probe=f"{__name__}:toy_probe")
    rep = verify_model(spec, _folder(tmp_path), ["ort_cpu"], prebuilt=_NumpyToy())
    cases = random_cases(spec)
    assert rep.error == "" and [c["name"] for c in rep.cases] == [c.name for c in cases]
    assert [c["path"] for c in rep.cases] == [_ToyPath(c.feed["x"]).to_json() for c in cases]
    assert rep.coverage["loop ran once"] == ["random_b1"] and rep.failures()[0].startswith("toy: no input covers")


def test_a_probes_recorded_path_is_the_cases_path(tmp_path):
    from dataclasses import replace

    spec = replace(SPEC, probe="none:never_resolved_without_tensorflow")
    paths = ({"iterations": 0, "branch": "scaled", "margin": 0.3}, None)
    rep = verify_model(spec, _folder(tmp_path, paths=paths), ["ort_cpu"], with_tf=False)
    assert rep.cases == [{"name": "case0", "kind": "random", "batch": 1,
                          "path": {"iterations": 0, "branch": "scaled", "margin": 0.3, "source": "recorded at export"}},
                         {"name": "case1", "kind": "random", "batch": 2}]


def test_a_runtimes_own_structure_checks_and_device_precision_reach_the_report(tmp_path, monkeypatch):
    """As LiteRT reports tflite_checks and OpenVINO the precision its device picked: here onnxruntime's real
    session, loaded with a failed check and a device precision attached (the plumbing is what is tested)."""
    from tf_parity_export.verify import runtimes
    from tf_parity_export.verify.runtimes.base import FnRuntime
    from tf_parity_export.verify.structure import Check

    def load(subject):
        session = runtimes.RUNTIMES["ort_cpu"](subject)
        return FnRuntime("openvino_default", session.infer, [Check("tflite_inputs", False, "expected ['x'], found []")],
                         "bf16")

    monkeypatch.setitem(runtimes.RUNTIMES, "openvino_default", load)
    rep = _verify(_folder(tmp_path), runtimes=("openvino_default",))
    assert [c.name for c in rep.checks][-1] == "tflite_inputs"
    assert rep.failures() == ["toy: structure check tflite_inputs failed: expected ['x'], found []"]
    assert rep.precision["openvino_default"]["computes_in"] == "bf16" and rep.precision["openvino_default"]["mode"] == "auto"
    assert [r.status for r in rep.results] == ["passed", "passed"]


def test_a_runtime_object_without_checks_or_precision_is_reported_as_its_mode(tmp_path, monkeypatch):
    """ort_node and ort_web return their own runtime objects (no `checks`, no `precision`): neither is required."""
    from tf_parity_export.verify import runtimes

    class Plain:
        def __init__(self, subject):
            self.name, self.session = "ort_node", runtimes.RUNTIMES["ort_cpu"](subject)

        def infer(self, feed):
            return self.session.infer(feed)

    monkeypatch.setitem(runtimes.RUNTIMES, "ort_node", Plain)
    rep = _verify(_folder(tmp_path), runtimes=("ort_node",))
    assert rep.failures() == [] and [c.name for c in rep.checks] == [
        "onnx_inputs", "onnx_outputs", "onnx_control_flow", "onnx_checker"]
    assert rep.precision["ort_node"]["computes_in"] == "fp32"


def _endless(threshold: float) -> onnx.ModelProto:
    """y = x * 1e38, halved while max|y| > threshold, with no trip-count cap. With threshold 1 a finite
    input ends unless a product overflows to infinity (infinity halved stays infinite); with -1 none ends."""
    body = helper.make_graph(
        [helper.make_node("Div", ["h", "two"], ["h2"]), helper.make_node("Abs", ["h2"], ["a"]),
         helper.make_node("ReduceMax", ["a"], ["m"], keepdims=0), helper.make_node("Greater", ["m", "limit"], ["c"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c_in", TensorProto.BOOL, []), helper.make_tensor_value_info("h", F, None)],
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("h2", F, None)])
    nodes = [helper.make_node("Mul", ["x", "big"], ["h0"]), helper.make_node("Abs", ["h0"], ["a0"]),
             helper.make_node("ReduceMax", ["a0"], ["m0"], keepdims=0), helper.make_node("Greater", ["m0", "limit"], ["go"]),
             helper.make_node("Loop", ["", "go", "h0"], ["y"], body=body)]
    inits = [numpy_helper.from_array(np.float32(v), n) for n, v in (("big", 1e38), ("two", 2), ("limit", threshold))]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", F, ["batch", 4])],
                              [helper.make_tensor_value_info("y", F, ["batch", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_case_whose_trace_passes_the_deadline_is_reported_apart_and_run_nowhere(tmp_path, monkeypatch):
    """case0 (-4 * 1e38 = -inf in float32) never ends; case1 (at most 3 * 1e38) does."""
    import onnxruntime as ort

    monkeypatch.setenv("TF_PARITY_DEADLINE", "0.5")
    model = _endless(1.0)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    folder = _folder(tmp_path, model, expected={0: np.zeros((1, 4), np.float32), 1: session.run(None, {"x": FEEDS[1]})[0]})
    rep = _verify(folder)
    rep.allow_uncovered = True  # the loop's 0 and 1 trip counts are not what this is about
    [unfinished] = [c for c in rep.cases if c["kind"] == "deadline"]
    assert unfinished["name"] == "case0" and unfinished["reason"] == (
        "its control-flow trace in onnxruntime did not finish within the deadline of 0.5 s (set TF_PARITY_DEADLINE="
        "SECONDS to change it); a loop that never ends on this input")
    assert [(r.runtime, r.case, r.status) for r in rep.results] == [("ort_cpu", "case1", "passed"),
                                                                  ("onnx_reference", "case1", "passed")]
    assert rep.failures() == []


def test_when_every_case_passes_the_deadline_nothing_was_compared_and_that_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_PARITY_DEADLINE", "0.3")
    rep = _verify(_folder(tmp_path, _endless(-1.0)))
    rep.allow_uncovered = True
    assert [c["kind"] for c in rep.cases] == ["deadline", "deadline"] and rep.results == []
    assert rep.failures() == ["toy: no case was compared: all 2 are deadline cases, reported but not counted; "
                              "give inputs on which the model finishes"]


def test_a_case_a_runtime_cannot_take_is_unsupported_and_fails_only_where_required(tmp_path, monkeypatch):
    """The browser says a case is beyond its page up front (Unsupported): that case is `unsupported`, the
    runtime's state says why, its other cases are compared, and only requiring it fails the run."""
    from tf_parity_export.verify import runtimes
    from tf_parity_export.verify.runtimes.base import FnRuntime, Unsupported

    def load(subject):
        ort_cpu = runtimes.RUNTIMES["ort_cpu"](subject)

        def infer(feed):
            if len(feed["x"]) > 1:
                raise Unsupported("a case of 2 rows exceeds this runtime's limit of 1 row")
            return ort_cpu.infer(feed)

        return FnRuntime("ort_web", infer, bounded=infer)

    monkeypatch.setitem(runtimes.RUNTIMES, "ort_web", load)
    rep = _verify(_folder(tmp_path), runtimes=("ort_web",))
    state = "unsupported: a case of 2 rows exceeds this runtime's limit of 1 row"
    assert rep.runtimes == {"ort_web": state}
    assert [(r.case, r.status, r.reason) for r in rep.results] == [
        ("case0", "passed", ""), ("case1", "unsupported", state.removeprefix("unsupported: "))]
    assert rep.failures() == [] and rep.failures({"ort_web"}) == [f"toy/ort_web: {state}"]
    assert rep.precision["ort_web"]["within_tolerance"] and rep.precision["ort_web"]["max_abs"] == 0.0
