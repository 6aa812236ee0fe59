"""verify/structure.py on synthetic ONNX files: each check fails on what it exists to catch."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tf_parity_export.models import ArtifactError, ModelSpec, TensorSig
from tf_parity_export.verify import layout
from tf_parity_export.verify.structure import Check, onnx_checks, saved_model_checks

F, B, I64 = TensorProto.FLOAT, TensorProto.BOOL, TensorProto.INT64

SPEC = ModelSpec(name="toy", builder="none:none", summary="a toy",
                 inputs=(TensorSig("x", (None, 4)),), outputs=(TensorSig("y", (None, 4)), TensorSig("n", (None, 1))),
                 control_flow=("Loop", "If"))


def _graph(*, unrolled=False, inputs=None, outputs=None, extra_nodes=()):
    """y = x halved while the loop runs (a Loop) then an If; or the same with the Loop unrolled."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Mul", ["x_in", "half"], ["x_out"])],
        "body", [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
                 helper.make_tensor_value_info("x_in", F, None)],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("x_out", F, None)])
    then = helper.make_graph([helper.make_node("Identity", ["h"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", F, None)])
    other = helper.make_graph([helper.make_node("Neg", ["h"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", F, None)])
    loop = ([helper.make_node("Mul", ["x", "half"], ["h1"]), helper.make_node("Mul", ["h1", "half"], ["h"])] if unrolled
            else [helper.make_node("Loop", ["M", "", "x"], ["h"], body=body)])
    nodes = [*loop, helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["flag"]),
             helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other),
             helper.make_node("ReduceL2", ["y"], ["n"], keepdims=1, axes=[1]), *extra_nodes]
    graph = helper.make_graph(
        nodes, "toy",
        inputs if inputs is not None else [helper.make_tensor_value_info("x", F, ["batch", 4])],
        outputs if outputs is not None else [helper.make_tensor_value_info("y", F, ["batch", 4]),
                                             helper.make_tensor_value_info("n", F, ["batch", 1])],
        initializer=[numpy_helper.from_array(np.int64(2), "M"), numpy_helper.from_array(np.float32(0.5), "half"),
                     numpy_helper.from_array(np.float32(0), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _checks(tmp_path, model) -> dict[str, Check]:
    onnx.save(model, str(tmp_path / layout.ONNX))
    return {c.name: c for c in onnx_checks(SPEC, tmp_path)}


def test_a_faithful_graph_passes_every_check(tmp_path):
    checks = _checks(tmp_path, _graph())
    assert list(checks) == ["onnx_inputs", "onnx_outputs", "onnx_control_flow", "onnx_checker"]
    assert all(c.passed for c in checks.values()), checks
    assert checks["onnx_inputs"].detail == "[('x', 'float32', ('batch', 4))]"
    assert checks["onnx_control_flow"].detail == "has ['Loop', 'If']"
    assert checks["onnx_checker"].detail == "onnx.checker full_check passed"
    assert checks["onnx_inputs"].to_json() == {"check": "onnx_inputs", "passed": True,
                                               "detail": "[('x', 'float32', ('batch', 4))]"}


def test_unrolled_loop_fails_the_control_flow_check(tmp_path):
    check = _checks(tmp_path, _graph(unrolled=True))["onnx_control_flow"]
    assert not check.passed and check.detail == "missing ['Loop']"


def test_no_control_flow_expected_says_so(tmp_path):
    onnx.save(_graph(unrolled=True), str(tmp_path / layout.ONNX))
    spec = ModelSpec(name="plain", builder="none:none", summary="", inputs=SPEC.inputs, outputs=SPEC.outputs)
    check = {c.name: c for c in onnx_checks(spec, tmp_path)}["onnx_control_flow"]
    assert check.passed and check.detail == "has no control flow (none expected)"


@pytest.mark.parametrize("value, found", [
    (helper.make_tensor_value_info("input", F, ["batch", 4]), "('input', 'float32', ('batch', 4))"),
    (helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", 4]), "('x', 'float64', ('batch', 4))"),
    (helper.make_tensor_value_info("x", TensorProto.INT32, ["batch", 4]), "('x', 'int32', ('batch', 4))"),
    (helper.make_tensor_value_info("x", TensorProto.UINT8, ["batch", 4]), "('x', '?', ('batch', 4))"),
    (helper.make_tensor_value_info("x", F, [1, 4]), "('x', 'float32', (1, 4))"),
    (helper.make_tensor_value_info("x", F, ["N", 4]), "('x', 'float32', ('N', 4))"),
    (helper.make_tensor_value_info("x", F, ["batch", 4, 1]), "('x', 'float32', ('batch', 4, 1))"),
], ids=["name", "float64", "int32", "unknown-dtype", "fixed-batch", "batch-named-N", "rank"])
def test_wrong_input_name_dtype_or_dims_fail_the_input_check(tmp_path, value, found):
    model = _graph(inputs=[value])
    if value.name != "x":
        model.graph.node[0].input[2] = value.name
        model.graph.node[1].input[0] = value.name
    check = _checks(tmp_path, model)["onnx_inputs"]
    assert not check.passed
    assert check.detail == f"expected [('x', 'float32', ('batch', 4))], found [{found}]"


def test_leaked_constant_input_is_named(tmp_path):
    inputs = [helper.make_tensor_value_info("x", F, ["batch", 4]), helper.make_tensor_value_info("w", F, [4, 4])]
    check = _checks(tmp_path, _graph(inputs=inputs))["onnx_inputs"]
    assert not check.passed
    assert check.detail == ("expected [('x', 'float32', ('batch', 4))], found [('x', 'float32', ('batch', 4)), "
                            "('w', 'float32', (4, 4))] (a captured constant leaked out as an input?)")


def test_missing_input_is_not_called_a_leak(tmp_path):
    check = _checks(tmp_path, _graph(inputs=[]))["onnx_inputs"]
    assert check.passed is False and check.detail == "expected [('x', 'float32', ('batch', 4))], found []"


@pytest.mark.parametrize("outputs", [
    [helper.make_tensor_value_info("y", F, ["batch", 4])],
    [helper.make_tensor_value_info("n", F, ["batch", 1]), helper.make_tensor_value_info("y", F, ["batch", 4])],
    [helper.make_tensor_value_info("y", F, ["batch", 4]), helper.make_tensor_value_info("n", F, ["batch", 2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 4]),
     helper.make_tensor_value_info("n", F, ["batch", 1])],
], ids=["missing", "order", "dims", "dtype"])
def test_wrong_outputs_fail_the_output_check(tmp_path, outputs):
    found = str([(o.name, {1: "float32", 10: "float16"}[o.type.tensor_type.elem_type],
                  tuple(d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim)) for o in outputs])
    check = _checks(tmp_path, _graph(outputs=outputs))["onnx_outputs"]
    assert check.passed is False
    assert check.detail == f"expected [('y', 'float32', ('batch', 4)), ('n', 'float32', ('batch', 1))], found {found}"


def test_invalid_graph_fails_the_onnx_checker_with_one_line(tmp_path):
    model = _graph(extra_nodes=[helper.make_node("Relu", ["nowhere"], ["r"])])
    check = _checks(tmp_path, model)["onnx_checker"]
    assert check.passed is False and "nowhere" in check.detail and "\n" not in check.detail


def test_unparseable_onnx_is_an_artifact_error(tmp_path):
    (tmp_path / layout.ONNX).write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ArtifactError, match=r"^toy: model\.onnx cannot be parsed \(DecodeError\)$"):
        onnx_checks(SPEC, tmp_path)


def _signature(inputs, outputs):
    return SimpleNamespace(structured_input_signature=((), {k: None for k in inputs}),
                           structured_outputs={k: None for k in outputs})


def test_saved_model_signature_keys_must_equal_the_spec():
    good = saved_model_checks(SPEC, _signature(["x"], ["n", "y"]))
    assert [(c.name, c.passed) for c in good] == [("saved_model_inputs", True), ("saved_model_outputs", True)]
    assert good[1].detail == "expected ['n', 'y'], found ['n', 'y']"
    bad_in, bad_out = saved_model_checks(SPEC, _signature(["input_1"], ["output_0", "y"]))
    assert not bad_in.passed and bad_in.detail == "expected ['x'], found ['input_1']"
    assert not bad_out.passed and bad_out.detail == "expected ['n', 'y'], found ['output_0', 'y']"


def test_inconsistent_types_fail_the_onnx_checker_not_crash(tmp_path):
    """full_check runs type inference: its InferenceError is a failed check, not a traceback."""
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 4]),
               helper.make_tensor_value_info("n", F, ["batch", 1])]
    check = _checks(tmp_path, _graph(outputs=outputs))["onnx_checker"]
    assert not check.passed and "differs from existing elem type" in check.detail and "\n" not in check.detail


# --- model.tflite: the signature and the control flow, as LiteRT reports them ----------------------

SIGS = {"serving_default": {"inputs": ["x"], "outputs": ["y", "n"]}}
OPS = {"FULLY_CONNECTED", "WHILE", "IF", "LESS"}


def test_tflite_checks_pass_a_faithful_model():
    from tf_parity_export.verify.structure import TFLITE_CONTROL_FLOW, tflite_checks

    assert TFLITE_CONTROL_FLOW == {"Loop": "WHILE", "If": "IF"}
    assert [c.to_json() for c in tflite_checks(SPEC, SIGS, OPS)] == [
        {"check": "tflite_inputs", "passed": True, "detail": "expected ['x'], found ['x']"},
        {"check": "tflite_outputs", "passed": True, "detail": "expected ['n', 'y'], found ['n', 'y']"},
        {"check": "tflite_control_flow", "passed": True, "detail": "has ['WHILE', 'IF']"}]
    plain = ModelSpec(name="p", builder="none:none", summary="", inputs=SPEC.inputs, outputs=SPEC.outputs,
                      control_flow=("Custom",))
    assert tflite_checks(plain, SIGS, {"Custom"})[2].detail == "has ['Custom']"  # other ops are looked up as named
    none = ModelSpec(name="p", builder="none:none", summary="", inputs=SPEC.inputs, outputs=SPEC.outputs)
    assert tflite_checks(none, SIGS, set())[2].to_json() == {
        "check": "tflite_control_flow", "passed": True, "detail": "has no control flow (none expected)"}


@pytest.mark.parametrize("ops, missing", [({"FULLY_CONNECTED", "IF"}, ["WHILE"]), ({"WHILE"}, ["IF"]),
                                          (set(), ["WHILE", "IF"]), ({"Loop", "If"}, ["WHILE", "IF"])])
def test_tflite_control_flow_unrolled_or_lost_fails(ops, missing):
    from tf_parity_export.verify.structure import tflite_checks

    check = tflite_checks(SPEC, SIGS, ops)[2]
    assert (check.name, check.passed, check.detail) == ("tflite_control_flow", False, f"missing {missing}")


@pytest.mark.parametrize("sig, which, detail", [
    ({"inputs": ["x", "extra"], "outputs": ["y", "n"]}, 0, "expected ['x'], found ['extra', 'x']"),
    ({"inputs": ["input_1"], "outputs": ["y", "n"]}, 0, "expected ['x'], found ['input_1']"),
    ({"inputs": ["x"], "outputs": ["y"]}, 1, "expected ['n', 'y'], found ['y']"),
    ({"inputs": ["x"], "outputs": ["output_0", "output_1"]}, 1, "expected ['n', 'y'], found ['output_0', 'output_1']"),
])
def test_tflite_signature_names_other_than_the_specs_fail(sig, which, detail):
    from tf_parity_export.verify.structure import tflite_checks

    checks = tflite_checks(SPEC, {"serving_default": sig, "other": SIGS["serving_default"]}, OPS)
    assert [c.passed for c in checks] == [which != 0, which != 1, True]
    assert checks[which].detail == detail


def test_a_tflite_model_without_the_serving_signature_fails_naming_what_it_has():
    from tf_parity_export.verify.structure import tflite_checks

    assert [c.to_json() for c in tflite_checks(SPEC, {"b": {}, "a": {}}, OPS)] == [
        {"check": "tflite_signature", "passed": False, "detail": "no 'serving_default' signature (has ['a', 'b'])"}]


def test_tflite_checks_on_the_committed_fancy_mlp_read_by_litert():
    """The real file through the real reader: what the runtime feeds tflite_checks (no TensorFlow needed)."""
    from pathlib import Path

    from tf_parity_export.models import get_spec
    from tf_parity_export.verify.structure import tflite_checks

    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is an optional extra")
    # the repository's artifacts/ (also from tools/mutation.py's staged copy of the tests, deeper in build/)
    root = next(p for p in Path(__file__).resolve().parents if (p / "artifacts" / "manifest.json").is_file())
    path = root / "artifacts" / "fancy_mlp" / layout.TFLITE
    interpreter = litert.Interpreter(model_path=str(path))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    spec = get_spec("fancy_mlp")
    assert [c.passed for c in tflite_checks(spec, interpreter.get_signature_list(), ops)] == [True] * 3
    assert not tflite_checks(spec, interpreter.get_signature_list(), ops - {"WHILE"})[2].passed
