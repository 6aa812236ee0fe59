"""Generic control-flow coverage on the ONNX graph (verify/coverage.py), with no probe."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tf_parity_export.models import get_spec
from tf_parity_export.verify import layout
from tf_parity_export.verify.coverage import GraphCoverage, find_covering_inputs, instrument


@pytest.mark.parametrize("name", ["fancy_mlp", "chimera"])
def test_graph_measurement_agrees_with_the_probe_case_by_case(report, name):
    """Every case: the Loop's trip count is the probe's iteration count, and
    the If took `then` exactly when the probe saw the scaling branch."""
    m = next(m for m in report.models if m.model == name)
    (loop,) = [s for s in m.graph_sites if s.op == "Loop"]
    (branch,) = [s for s in m.graph_sites if s.op == "If"]
    assert len(m.cases) == len(m.graph_paths) >= 11
    seen = set()
    for case in m.cases:
        probe, graph = case["path"], m.graph_paths[case["name"]]
        assert graph.trips[loop.label] == [probe["iterations"]], case["name"]
        took = "then" if probe["branch"] == "scaled" else "else"
        assert graph.branches[branch.label] == {"then": int(took == "then"), "else": int(took == "else")}
        assert (graph.margin < 1e-4) == (case["kind"] == "boundary"), case["name"]
        seen.add((min(probe["iterations"], 2), took))
    assert seen == {(i, b) for i in (0, 1, 2) for b in ("then", "else")}  # every combination was compared


def _nested_model() -> onnx.ModelProto:
    """y = If(x > 2, then: Loop(2) of +1 on x, else: x) ; z = Loop(n = floor(x)) whose body runs
    an If on the iteration's parity and a Loop of `iteration` trips (nested two deep)."""
    i64 = lambda name, v: helper.make_tensor(name, TensorProto.INT64, [], [v])  # noqa: E731
    f32 = lambda name, v: helper.make_tensor(name, TensorProto.FLOAT, [], [v])  # noqa: E731
    inner = helper.make_graph(  # the Loop nested in the outer Loop's body: t += 1, `i` times
        [helper.make_node("Add", ["t_in", "one_f"], ["t_out"]), helper.make_node("Identity", ["c_in2"], ["c_out2"])],
        "inner", [helper.make_tensor_value_info("j", TensorProto.INT64, []),
                  helper.make_tensor_value_info("c_in2", TensorProto.BOOL, []),
                  helper.make_tensor_value_info("t_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("c_out2", TensorProto.BOOL, []),
         helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [])])
    then_g = helper.make_graph([helper.make_node("Add", ["s_in", "one_f"], ["s_then"])], "even", [],
                               [helper.make_tensor_value_info("s_then", TensorProto.FLOAT, [])])
    else_g = helper.make_graph([helper.make_node("Sub", ["s_in", "one_f"], ["s_else"])], "odd", [],
                               [helper.make_tensor_value_info("s_else", TensorProto.FLOAT, [])])
    body = helper.make_graph([
        helper.make_node("Mod", ["i", "two_i"], ["parity"]),
        helper.make_node("Equal", ["parity", "zero_i"], ["even"]),
        helper.make_node("If", ["even"], ["s_mid"], then_branch=then_g, else_branch=else_g, name="If_parity"),
        helper.make_node("Loop", ["i", "true", "zero_f"], ["t_last"], body=inner, name="Loop_inner"),
        helper.make_node("Add", ["s_mid", "t_last"], ["s_out"]),
        helper.make_node("Identity", ["c_in"], ["c_out"]),
    ], "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [])])
    two_loop = helper.make_graph(  # in the top If's then branch: u += 1, twice
        [helper.make_node("Add", ["u_in", "one_f"], ["u_out"]), helper.make_node("Identity", ["c_in3"], ["c_out3"])],
        "twice", [helper.make_tensor_value_info("k", TensorProto.INT64, []),
                  helper.make_tensor_value_info("c_in3", TensorProto.BOOL, []),
                  helper.make_tensor_value_info("u_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("c_out3", TensorProto.BOOL, []),
         helper.make_tensor_value_info("u_out", TensorProto.FLOAT, [])])
    top_then = helper.make_graph([helper.make_node("Loop", ["two_i", "true", "xs"], ["y_then"], body=two_loop,
                                                   name="Loop_in_then")], "then", [],
                                 [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, [])])
    top_else = helper.make_graph([helper.make_node("Identity", ["xs"], ["y_else"])], "else", [],
                                 [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, [])])
    graph = helper.make_graph([
        helper.make_node("ReduceSum", ["x"], ["xs"], keepdims=0),
        helper.make_node("Greater", ["xs", "two_f"], ["big"]),
        helper.make_node("If", ["big"], ["y"], then_branch=top_then, else_branch=top_else, name="If_top"),
        helper.make_node("Cast", ["xs"], ["n"], to=TensorProto.INT64),
        helper.make_node("Loop", ["n", "true", "zero_f"], ["z"], body=body, name="Loop_outer"),
    ], "nested", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, []), helper.make_tensor_value_info("z", TensorProto.FLOAT, [])],
        initializer=[i64("two_i", 2), i64("zero_i", 0), f32("one_f", 1.0), f32("two_f", 2.0), f32("zero_f", 0.0),
                     helper.make_tensor("true", TensorProto.BOOL, [], [True])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("x,top,outer,parity,inner,in_then", [
    (0.0, "else", [0], (0, 0), [], []),
    (1.0, "else", [1], (1, 0), [0], []),
    (3.0, "then", [3], (2, 1), [0, 1, 2], [2]),
    (4.0, "then", [4], (2, 2), [0, 1, 2, 3], [2]),
])
def test_nested_if_and_loop_are_measured(tmp_path, x, top, outer, parity, inner, in_then):
    model = _nested_model()
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(tmp_path / "m.onnx"))
    cov = GraphCoverage(tmp_path / "m.onnx", "nested")
    labels = {s.label for s in cov.sites}
    assert labels == {"If_top", "If_top.then/Loop_in_then", "Loop_outer", "Loop_outer.body/If_parity",
                      "Loop_outer.body/Loop_inner"}
    static = {s.label for s in cov.sites if s.static}
    assert static == {"If_top.then/Loop_in_then"}  # a constant trip count: no 0/1/many required of it
    feed = {"x": np.array([[x]], np.float32)}
    path = cov.trace(feed)
    assert path.branches["If_top"] == {"then": int(top == "then"), "else": int(top == "else")}
    assert path.trips["Loop_outer"] == outer
    assert path.branches["Loop_outer.body/If_parity"] == {"then": parity[0], "else": parity[1]}
    assert path.trips["Loop_outer.body/Loop_inner"] == inner
    assert path.trips["If_top.then/Loop_in_then"] == in_then
    # the instrumented copy computes what the original computes
    copy, _, _ = instrument(model)
    want = ort.InferenceSession(model.SerializeToString()).run(["y", "z"], feed)
    got = ort.InferenceSession(copy.SerializeToString()).run(["y", "z"], feed)
    assert [float(v) for v in want] == [float(v) for v in got]
    assert path.margin == pytest.approx(abs(x - 2) / max(x, 2))  # If_top's comparison x > 2


@pytest.mark.parametrize("name", ["fancy_mlp", "chimera"])
def test_generic_search_covers_the_seed_models_without_their_probes(artifacts, name):
    """No probe: magnitudes, signs and gradient steps on the compared values find every
    branch and loop count class (chimera's zero-iteration loop needs the descent)."""
    onnx_path = artifacts / name / layout.ONNX
    found, missing = find_covering_inputs(get_spec(name), onnx_path)
    assert missing == []
    cov = GraphCoverage(onnx_path)
    paths = [cov.trace(feed) for feed in found.values()]
    (loop,) = [s for s in cov.sites if s.op == "Loop"]
    (branch,) = [s for s in cov.sites if s.op == "If"]
    assert {t for p in paths for t in p.hits(loop)} == {"0", "1", "many"}
    assert {t for p in paths for t in p.hits(branch)} == {"then", "else"}
    assert all(p.margin >= 1e-4 for p in paths)  # no boundary case is offered as covering


def test_unreachable_branch_is_named_by_node_and_path(tmp_path):
    """sum(x*x) + 1 < 0.5 never holds: the search says so, naming the node and where it sits."""
    inner = helper.make_graph([helper.make_node("Identity", ["s"], ["r"])], "b", [],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, [])])
    other = helper.make_graph([helper.make_node("Neg", ["s"], ["q"])], "c", [],
                              [helper.make_tensor_value_info("q", TensorProto.FLOAT, [])])
    graph = helper.make_graph([
        helper.make_node("Mul", ["x", "x"], ["xx"]),
        helper.make_node("ReduceSum", ["xx"], ["s0"], keepdims=0),
        helper.make_node("Add", ["s0", "one"], ["s"]),
        helper.make_node("Less", ["s", "half"], ["small"]),
        helper.make_node("If", ["small"], ["y"], then_branch=inner, else_branch=other, name="If_never"),
    ], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
                     helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    from tf_parity_export.models import ModelSpec, TensorSig

    spec = ModelSpec("never", "a:b", "s", (TensorSig("x", (None, 3)),), (TensorSig("y", ()),))
    found, missing = find_covering_inputs(spec, tmp_path / "m.onnx")
    assert missing == ["If If_never took then"]
    assert len(found) == 1
