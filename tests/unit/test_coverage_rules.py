"""verify/coverage.py: the generic coverage rules and the measurement on synthetic ONNX graphs (no TensorFlow).

Each If needs both branches, each data-dependent Loop the trip-count classes
0, 1 and many (2+), each met only by the right counts; a Loop with a constant
trip count needs nothing; cases on a decision boundary are never counted.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tf_parity_export.models import ArtifactError, ModelSpec, TensorSig
from tf_parity_export.verify import coverage, layout
from tf_parity_export.verify.coverage import (LOOP_CLASSES, GraphCoverage, GraphPath, Site, coverage_of,
                                              has_control_flow, instrument, requirement_name, requirements)

IF, LOOP = Site("If_1", "If", ""), Site("Loop_2", "Loop", "If_0.then")
STATIC = Site("Loop_3", "Loop", "", static=True)


def test_sites_name_their_place_and_their_targets():
    assert (IF.label, LOOP.label) == ("If_1", "If_0.then/Loop_2")
    assert IF.targets() == ["then", "else"] and LOOP.targets() == ["0", "1", "many"] and STATIC.targets() == []
    assert LOOP_CLASSES == ("0", "1", "many")
    assert LOOP.to_json() == {"node": "Loop_2", "op": "Loop", "path": "If_0.then", "static": False}
    assert STATIC.to_json()["static"] is True and Site("n", "Loop", "").static is False
    assert requirements([IF, STATIC, LOOP]) == [(IF, "then"), (IF, "else"), (LOOP, "0"), (LOOP, "1"), (LOOP, "many")]
    assert [requirement_name(s, t) for s, t in requirements([IF, LOOP])] == [
        "If If_1 took then", "If If_1 took else", "Loop If_0.then/Loop_2 ran 0 times",
        "Loop If_0.then/Loop_2 ran once", "Loop If_0.then/Loop_2 ran 2+ times"]


@pytest.mark.parametrize("trips, classes", [
    ([0], {"0"}), ([1], {"1"}), ([2], {"many"}), ([12], {"many"}), ([], set()), ([0, 1, 3], {"0", "1", "many"}),
])
def test_each_loop_class_is_met_only_by_its_counts(trips, classes):
    path = GraphPath(trips={LOOP.label: trips})
    assert path.hits(LOOP) == classes
    cov = coverage_of([LOOP], {"c": path})
    assert {need for need, cases in cov.items() if cases} == {requirement_name(LOOP, t) for t in classes}


@pytest.mark.parametrize("counts, branches", [
    ({"then": 1, "else": 0}, {"then"}), ({"then": 0, "else": 3}, {"else"}), ({"then": 2, "else": 1}, {"then", "else"}),
    ({"then": 0, "else": 0}, set()), ({}, set()),
])
def test_each_if_branch_is_met_only_when_it_ran(counts, branches):
    path = GraphPath(branches={IF.label: counts} if counts else {})
    assert path.hits(IF) == branches
    assert {n for n, cases in coverage_of([IF], {"c": path}).items() if cases} == {
        requirement_name(IF, t) for t in branches}


def test_coverage_of_lists_every_requirement_with_the_cases_reaching_it_in_order():
    paths = {"a": GraphPath(branches={"If_1": {"then": 1, "else": 0}}, trips={LOOP.label: [0]}),
             "b": GraphPath(branches={"If_1": {"then": 1, "else": 0}}, trips={LOOP.label: [5]}),
             "c": GraphPath(trips={"Loop_3": [0]})}
    assert coverage_of([IF, LOOP, STATIC], paths) == {
        "If If_1 took then": ["a", "b"], "If If_1 took else": [], "Loop If_0.then/Loop_2 ran 0 times": ["a"],
        "Loop If_0.then/Loop_2 ran once": [], "Loop If_0.then/Loop_2 ran 2+ times": ["b"]}
    assert coverage_of([], paths) == {} and coverage_of([IF], {})["If If_1 took then"] == []


def test_a_graph_path_serialises_its_margin_and_source():
    path = GraphPath(branches={"If_1": {"then": 1, "else": 0}}, trips={"Loop_2": [3]}, margin=0.25)
    assert path.to_json() == {"branches": {"If_1": {"then": 1, "else": 0}}, "trips": {"Loop_2": [3]}, "margin": 0.25,
                              "source": "onnx graph"}
    assert GraphPath().to_json()["margin"] is None and GraphPath().margin == float("inf")


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


def _save(model, tmp_path):
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(tmp_path / "m.onnx"))
    return tmp_path / "m.onnx"


@pytest.mark.parametrize("x,top,outer,parity,inner,in_then", [
    (0.0, "else", [0], (0, 0), [], []),
    (1.0, "else", [1], (1, 0), [0], []),
    (3.0, "then", [3], (2, 1), [0, 1, 2], [2]),
    (4.0, "then", [4], (2, 2), [0, 1, 2, 3], [2]),
])
def test_nested_if_and_loop_are_measured(tmp_path, x, top, outer, parity, inner, in_then):
    model = _nested_model()
    cov = GraphCoverage(_save(model, tmp_path), "nested")
    assert [(s.label, s.op) for s in cov.sites] == [
        ("If_top", "If"), ("If_top.then/Loop_in_then", "Loop"), ("Loop_outer", "Loop"),
        ("Loop_outer.body/If_parity", "If"), ("Loop_outer.body/Loop_inner", "Loop")]
    static = {s.label for s in cov.sites if s.static}
    assert static == {"If_top.then/Loop_in_then"}  # a constant trip count: no 0/1/many required of it
    feed = {"x": np.array([[x]], np.float32)}
    path = cov.trace(feed)
    assert path.branches == {"If_top": {"then": int(top == "then"), "else": int(top == "else")},
                             "Loop_outer.body/If_parity": {"then": parity[0], "else": parity[1]}}
    assert path.trips == {"Loop_outer": outer, "Loop_outer.body/Loop_inner": inner, "If_top.then/Loop_in_then": in_then}
    # the instrumented copy computes what the original computes
    copy, sites, extra = instrument(model)
    assert sites == cov.sites and len(copy.graph.output) == 2 + len(extra)
    assert [o.name for o in copy.graph.output[:2]] == ["y", "z"] and cov.outputs == ["y", "z"]
    want = ort.InferenceSession(model.SerializeToString()).run(["y", "z"], feed)
    got = ort.InferenceSession(copy.SerializeToString()).run(["y", "z"], feed)
    assert [float(v) for v in want] == [float(v) for v in got]
    assert path.margin == pytest.approx(abs(x - 2) / max(x, 2))  # If_top's comparison x > 2
    assert model.graph.node[2].op_type == "If" and len(model.graph.node[2].output) == 1  # the original is untouched
    assert path.scores["If_top"]["score"] == pytest.approx([(x - 2) / max(x, 2)])


def _branch_model(op="Greater", batch_if=False):
    """y = If(sum(x) <op> 2) then 2x else x: one If deciding on a comparison of its input."""
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["a"])], "then", [],
                               [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 1])])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["b"])], "else", [],
                               [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 1])])
    graph = helper.make_graph([
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node(op, ["s", "two"], ["c"]),
        helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="If_b"),
    ], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op, x, took, score", [
    ("Greater", 3.0, "then", 1 / 3), ("Greater", 1.0, "else", -0.5), ("Less", 1.0, "then", 0.5),
    ("Less", 4.0, "else", -0.5), ("GreaterOrEqual", 2.5, "then", 0.2), ("LessOrEqual", 2.5, "else", -0.2),
])
def test_a_comparison_logs_its_margin_and_a_score_positive_where_it_held(tmp_path, op, x, took, score):
    cov = GraphCoverage(_save(_branch_model(op), tmp_path))
    path = cov.trace({"x": np.array([[x]], np.float32)})
    assert path.branches == {"If_b": {"then": int(took == "then"), "else": int(took == "else")}}
    assert path.margin == pytest.approx(abs(x - 2) / max(abs(x), 2))
    assert path.scores == {"If_b": {"score": [pytest.approx(score)]}}


def test_an_equal_condition_is_covered_but_has_no_margin(tmp_path):
    cov = GraphCoverage(_save(_branch_model("Equal"), tmp_path))
    path = cov.trace({"x": np.array([[2.0]], np.float32)})
    assert path.branches == {"If_b": {"then": 1, "else": 0}} and path.margin == float("inf") and path.scores == {}
    near = cov.trace({"x": np.array([[0.0]], np.float32)})  # |0 - 2| / max(0, 2): not near, and no margin anyway
    assert near.margin == float("inf") and near.branches["If_b"] == {"then": 0, "else": 1}


def test_a_margin_of_zero_operands_stays_finite(tmp_path):
    model = _branch_model()
    model.graph.initializer[0].float_data[0] = 0.0  # sum(x) > 0 with x = 0: both operands 0
    cov = GraphCoverage(_save(model, tmp_path))
    path = cov.trace({"x": np.array([[0.0]], np.float32)})
    assert path.margin == 0.0 and path.scores["If_b"]["score"] == [0.0]


def _while_model(static=False):
    """A while loop: halve s while s > 1 (the count depends on x), or a for loop of 3 trips."""
    body = helper.make_graph([
        helper.make_node("Div", ["s_in", "two"], ["s_out"]),
        helper.make_node("Greater", ["s_out", "one"], ["c_out"]) if not static else
        helper.make_node("Identity", ["c_in"], ["c_out"]),
    ], "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0)]
    if static:
        nodes.append(helper.make_node("Loop", ["three", "", "s"], ["y"], body=body, name="Loop_for"))
    else:
        nodes += [helper.make_node("Greater", ["s", "one"], ["enter"]),
                  helper.make_node("Loop", ["", "enter", "s"], ["y"], body=body, name="Loop_w")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
                              initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
                                           helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
                                           helper.make_tensor("three", TensorProto.INT64, [], [3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("x, trips, enter, tests", [
    (0.5, [0], [-0.5], []), (1.5, [1], [1 / 3], [-0.25]), (3.0, [2], [2 / 3], [1 / 3, -0.25]),
])
def test_a_while_loop_logs_its_trips_and_the_scores_of_entering_and_continuing(tmp_path, x, trips, enter, tests):
    cov = GraphCoverage(_save(_while_model(), tmp_path))
    assert cov.sites == [Site("Loop_w", "Loop", "", static=False)]
    path = cov.trace({"x": np.array([[x]], np.float32)})
    assert path.trips == {"Loop_w": trips} and path.branches == {}
    assert path.scores["Loop_w"]["enter_score"] == pytest.approx(enter)
    assert path.scores["Loop_w"].get("score", []) == pytest.approx(tests)
    assert path.margin == pytest.approx(min(abs(v) for v in [*enter, *tests]))
    assert float(cov.session.run(["y"], {"x": np.array([[x]], np.float32)})[0]) == pytest.approx(x / 2 ** trips[0])


def test_a_for_loop_is_static_and_needs_no_count(tmp_path):
    cov = GraphCoverage(_save(_while_model(static=True), tmp_path))
    assert cov.sites == [Site("Loop_for", "Loop", "", static=True)] and requirements(cov.sites) == []
    assert cov.trace({"x": np.array([[1.0]], np.float32)}).trips == {"Loop_for": [3]}


def test_static_loops_need_a_fixed_count_a_fixed_entry_condition_and_a_fixed_body_condition():
    from tf_parity_export.verify.coverage import _is_static_loop

    def loop(trip, cond, body_nodes, out="c_out"):
        body = helper.make_graph(body_nodes, "b", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                                  helper.make_tensor_value_info("c_in", TensorProto.BOOL, [])],
                                 [helper.make_tensor_value_info(out, TensorProto.BOOL, [])])
        return helper.make_node("Loop", [trip, cond], [], body=body), body

    identity = [helper.make_node("Identity", ["c_in"], ["c_out"])]
    consts = {"N", "T"}
    assert _is_static_loop(*loop("N", "", identity), consts)
    assert _is_static_loop(*loop("N", "T", identity), consts)
    assert _is_static_loop(*loop("N", "", [], out="c_in"), consts)  # the condition passed straight through
    assert not _is_static_loop(*loop("n", "", identity), consts)  # a computed trip count
    assert _is_static_loop(*loop("", "T", identity), consts)  # no trip count, never false: runs alike every time
    assert not _is_static_loop(*loop("", "t", identity), consts)  # a computed entry condition: a while loop
    assert not _is_static_loop(*loop("N", "c", identity), consts)  # a computed first condition
    # a condition computed from the iteration number or the previous condition alone runs alike every time
    assert _is_static_loop(*loop("N", "", [helper.make_node("Not", ["c_in"], ["c_out"])]), consts)
    assert _is_static_loop(*loop("N", "", [helper.make_node("Identity", ["i"], ["c_out"])]), consts)
    assert not _is_static_loop(*loop("N", "", [helper.make_node("Identity", ["x"], ["c_out"])]), consts)  # an input


def _counter_loop(data_dependent: bool) -> onnx.ModelProto:
    """An RNN-style Loop: a carried step counter k, tested `k + 1 < 5` (or `k + 1 < round(sum(x))`)."""
    body = helper.make_graph([
        helper.make_node("Add", ["k_in", "one"], ["k_out"]),
        helper.make_node("Less", ["k_out", "bound" if data_dependent else "five"], ["c_out"]),
        helper.make_node("Add", ["h_in", "x_sum"], ["h_out"]),
    ], "steps", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("k_in", TensorProto.INT64, []),
                 helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("k_out", TensorProto.INT64, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [])])
    graph = helper.make_graph([
        helper.make_node("ReduceSum", ["x"], ["x_sum"], keepdims=0),
        helper.make_node("Round", ["x_sum"], ["x_round"]),
        helper.make_node("Cast", ["x_round"], ["bound"], to=TensorProto.INT64),
        helper.make_node("Loop", ["limit", "", "zero", "zero_f"], ["k_last", "y"], body=body, name="Loop_steps"),
    ], "steps", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[helper.make_tensor("limit", TensorProto.INT64, [], [100]),
                     helper.make_tensor("zero", TensorProto.INT64, [], [0]),
                     helper.make_tensor("one", TensorProto.INT64, [], [1]),
                     helper.make_tensor("five", TensorProto.INT64, [], [5]),
                     helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_step_counter_against_a_constant_is_a_static_loop_and_no_boundary(tmp_path):
    cov = GraphCoverage(_save(_counter_loop(data_dependent=False), tmp_path))
    assert cov.sites == [Site("Loop_steps", "Loop", "", static=True)] and requirements(cov.sites) == []
    path = cov.trace({"x": np.array([[2.0]], np.float32)})
    # the last test compares 5 with 5: a counter reaching its bound is no decision boundary
    assert path.trips == {"Loop_steps": [5]} and path.margin == float("inf") and not path.capped
    (tmp_path / "dd").mkdir()
    varying = GraphCoverage(_save(_counter_loop(data_dependent=True), tmp_path / "dd"))
    assert varying.sites == [Site("Loop_steps", "Loop", "", static=False)]
    assert varying.trace({"x": np.array([[3.0]], np.float32)}).trips == {"Loop_steps": [3]}


def test_has_control_flow_looks_into_subgraphs(tmp_path):
    assert has_control_flow(_save(_branch_model(), tmp_path))
    assert has_control_flow(_save(_while_model(), tmp_path))  # a Loop alone
    external = _while_model()
    two = external.graph.initializer[0]
    two.ClearField("float_data")
    two.data_location = TensorProto.EXTERNAL
    two.external_data.add(key="location", value="absent.bin")
    onnx.save(external, str(tmp_path / "ext.onnx"))
    assert has_control_flow(tmp_path / "ext.onnx")  # the graph alone is read: no external data followed
    plain = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    assert not has_control_flow(_save(helper.make_model(plain, opset_imports=[helper.make_opsetid("", 17)]), tmp_path))
    # an If only inside a custom node's graph attribute still counts
    inner = _branch_model().graph
    node = helper.make_node("Custom", ["x"], ["y"], domain="example", body=inner)
    wrapped = helper.make_graph([node], "w", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(wrapped), str(tmp_path / "w.onnx"))
    assert has_control_flow(tmp_path / "w.onnx")


def test_an_unparseable_graph_is_one_line(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\xff\xff garbage")
    with pytest.raises(ArtifactError, match=r"^toy: m\.onnx cannot be parsed \(DecodeError\)$"):
        GraphCoverage(tmp_path / "m.onnx", "toy")
    with pytest.raises(ArtifactError, match=r"^: m\.onnx cannot be parsed \(DecodeError\)$"):  # no name given
        GraphCoverage(tmp_path / "m.onnx")


def test_a_graph_without_control_flow_traces_an_empty_path(tmp_path):
    plain = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    cov = GraphCoverage(_save(helper.make_model(plain, opset_imports=[helper.make_opsetid("", 17)]), tmp_path))
    assert cov.sites == [] and cov.fetch == []
    assert cov.trace({"x": np.ones(1, np.float32)}) == GraphPath()


def test_the_coverage_table_and_report_lines():
    sites = [IF, LOOP]
    rows = [("a", GraphPath(branches={"If_1": {"then": 1, "else": 0}}, trips={LOOP.label: [0, 1, 2, 3, 4]}), False),
            ("bb", GraphPath(branches={"If_1": {"then": 2, "else": 3}}, trips={}), True)]
    assert coverage.table(sites, rows) == [
        "case           If If_1        Loop If_0.then/Loop_2",
        "-------------  -------------  ---------------------",
        "a              then           0,1,2,3,...",
        "bb (boundary)  thenx2+elsex3  -",
    ]
    assert coverage.table([IF], [("c", GraphPath(), False)]) == ["case  If If_1", "----  -------", "c     -"]
    four = GraphPath(trips={LOOP.label: [5, 6, 7, 8]})
    assert coverage.table([LOOP], [("d", four, False)])[2].split()[1] == "5,6,7,8"  # four shown whole

    class M:  # a verifier.ModelReport's fields that report_lines reads
        model, graph_sites, graph_paths = "toy", sites, {name: p for name, p, _ in rows}
        cases = [{"name": "a", "kind": "random"}, {"name": "bb", "kind": "boundary"}]
        coverage = coverage_of(sites, {"a": rows[0][1]})

    lines = coverage.report_lines(M)
    assert lines == ["toy control flow, measured in onnxruntime on model.onnx (If: branch taken; Loop: iterations):",
                     *("  " + line for line in coverage.table(sites, rows))]
    M.coverage = {"loop ran once": []}  # a probe's requirements: the generic verdict is shown beside them
    assert coverage.report_lines(M)[-1] == (
        "toy graph coverage: If If_1 took then (1), If If_1 took else (MISSING), Loop If_0.then/Loop_2 ran 0 times (1), "
        "Loop If_0.then/Loop_2 ran once (1), Loop If_0.then/Loop_2 ran 2+ times (1)")
    M.graph_sites = []
    assert coverage.report_lines(M) == []


# --- through the verifier: no probe, the graph's own coverage ----------------------------------------

SPEC = ModelSpec(name="toy", builder="none:none", summary="", inputs=(TensorSig("x", (None, 1)),),
                 outputs=(TensorSig("y", (None, 1)),))


def _folder(tmp_path, feeds, model=None, paths=None):
    """A model folder (stand-in TF files, never loaded without TensorFlow) whose stored outputs are onnxruntime's."""
    from tf_parity_export.verify.test_data import write_set

    folder = tmp_path / "toy"
    (folder / layout.SAVED_MODEL).mkdir(parents=True)
    for rel in (f"{layout.SAVED_MODEL}/saved_model.pb", layout.WEIGHTS, layout.TFLITE):
        (folder / rel).write_bytes(b"stand-in")
    model = model or _branch_model()
    onnx.save(model, str(folder / layout.ONNX))
    session = ort.InferenceSession(model.SerializeToString())
    entries = []
    for i, x in enumerate(feeds):
        feed = {"x": np.array(x, np.float32).reshape(-1, 1)}
        entries.append({"set": write_set(folder, i, SPEC, feed, {"y": session.run(["y"], feed)[0]}),
                        "case": f"case{i}", "kind": "random", "path": (paths or {}).get(i)})
    layout.write_json(folder / layout.CARD, {"schema": layout.SCHEMA_VERSION, "files": layout.hash_tree(folder),
                                             "test_data": entries})
    layout.write_json(tmp_path / layout.INDEX, {"models": {"toy": {
        "card_sha256": layout.sha256(folder / layout.CARD), "onnx_sha256": layout.sha256(folder / layout.ONNX)}}})
    return folder


def test_the_verifier_requires_both_branches_of_a_graph_without_a_probe(tmp_path):
    from tf_parity_export.verify.verifier import verify_model

    rep = verify_model(SPEC, _folder(tmp_path, [[3.0], [1.0]]), ["ort_cpu"], with_tf=False)
    assert rep.coverage == {"If If_b took then": ["case0"], "If If_b took else": ["case1"]} and rep.failures() == []
    assert rep.graph_sites == [Site("If_b", "If", "")] and set(rep.graph_paths) == {"case0", "case1"}
    assert rep.cases[0]["path"] == {"branches": {"If_b": {"then": 1, "else": 0}}, "trips": {},
                                    "margin": pytest.approx(1 / 3), "source": "onnx graph"}
    assert rep.to_json()["graph_coverage"]["nodes"] == [{"node": "If_b", "op": "If", "path": "", "static": False}]
    rep = verify_model(SPEC, _folder(tmp_path / "one", [[3.0], [4.0]]), ["ort_cpu"], with_tf=False)
    assert rep.failures() == ["toy: no input covers 'If If_b took else' (coverage; --allow-uncovered to accept)"]


def test_a_boundary_case_never_counts_as_coverage_in_the_graph(tmp_path):
    """sum(x) = 2.0001 takes `then`, but within BOUNDARY_MARGIN of 2: another runtime may take `else`."""
    from tf_parity_export.verify.verifier import verify_model

    rep = verify_model(SPEC, _folder(tmp_path, [[2.0001], [1.0]]), ["ort_cpu"], with_tf=False)
    assert [c["kind"] for c in rep.cases] == ["boundary", "random"]
    assert [r.status for r in rep.results] == ["boundary", "passed"]
    assert rep.coverage == {"If If_b took then": [], "If If_b took else": ["case1"]}
    assert rep.failures() == ["toy: no input covers 'If If_b took then' (coverage; --allow-uncovered to accept)"]
    rep = verify_model(SPEC, _folder(tmp_path / "far", [[2.001], [1.0]]), ["ort_cpu"], with_tf=False)
    assert rep.cases[0]["kind"] == "random" and rep.failures() == []  # 5e-4 from the boundary: counted


def test_a_graph_that_onnxruntime_cannot_run_on_a_case_is_left_to_the_runtimes(tmp_path):
    from tf_parity_export.verify.verifier import verify_model

    model = _branch_model()
    reshape = helper.make_node("Reshape", ["y0", "shape"], ["y"])  # fails when the batch is not 1
    model.graph.node[2].output[0] = "y0"
    model.graph.node.append(reshape)
    model.graph.initializer.append(helper.make_tensor("shape", TensorProto.INT64, [2], [1, 1]))
    import shutil

    from tf_parity_export.verify.test_data import write_set

    folder = _folder(tmp_path, [[3.0], [1.0], [0.5]], model)
    shutil.rmtree(folder / "test_data_set_1")  # case1 becomes a batch of 2, which the graph cannot run
    write_set(folder, 1, SPEC, {"x": np.array([[1.0], [1.0]], np.float32)}, {"y": np.zeros((2, 1), np.float32)})
    card = layout.read_json(folder / layout.CARD)
    card["files"] = layout.hash_tree(folder)
    layout.write_json(folder / layout.CARD, card)
    layout.write_json(tmp_path / layout.INDEX, {"models": {"toy": {
        "card_sha256": layout.sha256(folder / layout.CARD), "onnx_sha256": layout.sha256(folder / layout.ONNX)}}})
    rep = verify_model(SPEC, folder, ["ort_cpu"], with_tf=False)
    assert set(rep.graph_paths) == {"case0", "case2"}  # the next case is still measured
    assert [r.status for r in rep.results] == ["passed", "error", "passed"]
    assert rep.failures()[0].startswith("toy/ort_cpu: case case1: ")


def _deep_model():
    """y = If(sum(x) > 2) then sum(x) else WhileLoop(halve s while s > 1, body: If(s > 1) on the halved value):
    a site three levels down, in an else branch (labels carry the whole path)."""
    f = TensorProto.FLOAT
    inner_then = helper.make_graph([helper.make_node("Identity", ["s_out"], ["t1"])], "it", [],
                                   [helper.make_tensor_value_info("t1", f, [])])
    inner_else = helper.make_graph([helper.make_node("Neg", ["s_out"], ["e1"])], "ie", [],
                                   [helper.make_tensor_value_info("e1", f, [])])
    body = helper.make_graph([
        helper.make_node("Div", ["s_in", "two"], ["s_out"]),
        helper.make_node("Greater", ["s_out", "one"], ["c_out"]),
        helper.make_node("If", ["c_out"], ["unused"], then_branch=inner_then, else_branch=inner_else, name="If_in"),
    ], "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("s_in", f, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("s_out", f, [])])
    top_then = helper.make_graph([helper.make_node("Identity", ["s"], ["a"])], "then", [],
                                 [helper.make_tensor_value_info("a", f, [])])
    top_else = helper.make_graph([helper.make_node("Greater", ["s", "one"], ["enter"]),
                                  helper.make_node("Loop", ["", "enter", "s"], ["b"], body=body, name="Loop_w")],
                                 "else", [], [helper.make_tensor_value_info("b", f, [])])
    graph = helper.make_graph([
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "four"], ["big"]),
        helper.make_node("If", ["big"], ["y"], then_branch=top_then, else_branch=top_else, name="If_top"),
    ], "g", [helper.make_tensor_value_info("x", f, ["batch", 1])], [helper.make_tensor_value_info("y", f, [])],
        initializer=[helper.make_tensor("two", f, [], [2.0]), helper.make_tensor("one", f, [], [1.0]),
                     helper.make_tensor("four", f, [], [4.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("x, top, trips, inner", [
    (5.0, {"then": 1, "else": 0}, [], {"then": 0, "else": 0}), (3.0, {"then": 0, "else": 1}, [2], {"then": 1, "else": 1}),
    (1.5, {"then": 0, "else": 1}, [1], {"then": 0, "else": 1}),
    (0.5, {"then": 0, "else": 1}, [0], {"then": 0, "else": 0}),
])
def test_a_site_three_levels_down_in_an_else_branch_is_labelled_by_its_whole_path(tmp_path, x, top, trips, inner):
    cov = GraphCoverage(_save(_deep_model(), tmp_path))
    assert [s.label for s in cov.sites] == ["If_top", "If_top.else/Loop_w", "If_top.else/Loop_w.body/If_in"]
    path = cov.trace({"x": np.array([[x]], np.float32)})
    assert path.branches == {"If_top": top, "If_top.else/Loop_w.body/If_in": inner}
    assert path.trips == {"If_top.else/Loop_w": trips}


def test_a_loop_counted_by_a_constant_node_or_a_subgraph_initializer_is_static(tmp_path):
    model = _while_model(static=True)
    model.graph.initializer.pop()  # "three" becomes a Constant node
    model.graph.node.insert(0, helper.make_node("Constant", [], ["three"],
                                                value=helper.make_tensor("c3", TensorProto.INT64, [], [3])))
    cov = GraphCoverage(_save(model, tmp_path))
    assert cov.sites == [Site("Loop_for", "Loop", "", static=True)]
    assert cov.trace({"x": np.array([[1.0]], np.float32)}).trips == {"Loop_for": [3]}
    # inside a branch, with the count an initializer of the branch itself
    model = _while_model(static=True)
    loop = model.graph.node.pop()
    then_g = helper.make_graph([loop], "then", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
                               initializer=[helper.make_tensor("three", TensorProto.INT64, [], [3])])
    else_g = helper.make_graph([helper.make_node("Identity", ["s"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [])])
    model.graph.initializer.pop()
    model.graph.initializer.append(helper.make_tensor("yes", TensorProto.BOOL, [], [True]))
    model.graph.node.append(helper.make_node("If", ["yes"], ["y"], then_branch=then_g, else_branch=else_g, name="If_c"))
    cov = GraphCoverage(_save(model, tmp_path))
    assert [(s.label, s.static) for s in cov.sites] == [("If_c", False), ("If_c.then/Loop_for", True)]


@pytest.mark.parametrize("x, margin", [(0.5, 1.0), (0.25, 1.0), (-0.5, 1.0)])
def test_the_margin_of_small_operands_is_relative_to_them_not_to_one(tmp_path, x, margin):
    model = _branch_model()
    model.graph.initializer[0].float_data[0] = 0.0  # sum(x) > 0: |x - 0| / max(|x|, 0) = 1
    cov = GraphCoverage(_save(model, tmp_path))
    assert cov.trace({"x": np.array([[x]], np.float32)}).margin == pytest.approx(margin)


def _scan_model(carried=True):
    """A while loop with a scan output (each iteration's value stacked): halve s while s > 1, or, with no
    loop-carried value, count down a 3-step scan of the constant while the entry test holds."""
    f = TensorProto.FLOAT
    if carried:
        body = helper.make_graph([
            helper.make_node("Div", ["s_in", "two"], ["s_out"]),
            helper.make_node("Greater", ["s_out", "one"], ["c_out"]),
            helper.make_node("Identity", ["s_out"], ["scan"]),
        ], "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                    helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                    helper.make_tensor_value_info("s_in", f, [])],
            [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("s_out", f, []),
             helper.make_tensor_value_info("scan", f, [])])
        loop = helper.make_node("Loop", ["", "enter", "s"], ["y", "ys"], body=body, name="Loop_s")
        outputs = [helper.make_tensor_value_info("y", f, []), helper.make_tensor_value_info("ys", f, ["n"])]
    else:
        body = helper.make_graph([
            helper.make_node("Cast", ["i"], ["fi"], to=f),
            helper.make_node("Less", ["fi", "two"], ["c_out"]),
            helper.make_node("Identity", ["fi"], ["scan"]),
        ], "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                    helper.make_tensor_value_info("c_in", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("scan", f, [])])
        loop = helper.make_node("Loop", ["", "enter"], ["ys"], body=body, name="Loop_s")
        outputs = [helper.make_tensor_value_info("ys", f, ["n"])]
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
                               helper.make_node("Greater", ["s", "one"], ["enter"]), loop],
                              "g", [helper.make_tensor_value_info("x", f, ["batch", 1])], outputs,
                              initializer=[helper.make_tensor("two", f, [], [2.0]), helper.make_tensor("one", f, [], [1.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("carried", [True, False])
@pytest.mark.parametrize("x, trips", [(0.5, 0), (3.0, None), (8.0, None)])
def test_a_loop_with_scan_outputs_keeps_them_and_logs_its_trips(tmp_path, carried, x, trips):
    model = _scan_model(carried)
    cov = GraphCoverage(_save(model, tmp_path))
    feed = {"x": np.array([[x]], np.float32)}
    names = [o.name for o in model.graph.output]
    want = ort.InferenceSession(model.SerializeToString()).run(names, feed)
    got = cov.session.run(names, feed)
    assert [v.tolist() for v in got] == [v.tolist() for v in want]
    path = cov.trace(feed)
    expected = trips if trips is not None else len(want[-1])
    assert path.trips == {"Loop_s": [expected]} and expected == len(want[-1])
    assert path.scores["Loop_s"]["enter_score"] == [pytest.approx((x - 1) / max(x, 1))]


def test_with_a_probe_the_path_recorded_at_export_is_the_cases_path_not_the_graphs(tmp_path):
    """A model with a probe and control flow: the probe's path (recorded at export) is shown and counted."""
    from dataclasses import replace

    from tf_parity_export.verify.verifier import verify_model

    spec = replace(SPEC, probe="none:never_resolved_without_tensorflow")
    recorded = {0: {"iterations": 1, "branch": "kept", "margin": 0.5},
                1: {"iterations": 0, "branch": "scaled", "margin": 0.5}}
    rep = verify_model(spec, _folder(tmp_path, [[3.0], [1.0]], paths=recorded), ["ort_cpu"], with_tf=False)
    assert [c["path"] for c in rep.cases] == [{**recorded[i], "source": "recorded at export"} for i in (0, 1)]
    assert rep.coverage["loop ran once"] == ["case0"] and rep.coverage["branch scaled"] == ["case1"]
    assert set(rep.graph_paths) == {"case0", "case1"}  # measured all the same, shown beside the probe's


def _capped_doubling(limit: int = 3) -> onnx.ModelProto:
    """h = x doubled while h < 10, at most `limit` times (a tf.while_loop with maximum_iterations)."""
    body = helper.make_graph([
        helper.make_node("Mul", ["h_in", "two"], ["h_out"]),
        helper.make_node("ReduceMax", ["h_out"], ["top"], keepdims=0),
        helper.make_node("Less", ["top", "ten"], ["c_out"]),
    ], "doubling", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                    helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                    helper.make_tensor_value_info("h_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, None)])
    graph = helper.make_graph([
        helper.make_node("ReduceMax", ["x"], ["top0"], keepdims=0),
        helper.make_node("Less", ["top0", "ten"], ["enter"]),
        helper.make_node("Loop", ["limit", "enter", "x"], ["y"], body=body, name="Loop_cap"),
    ], "capped", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[helper.make_tensor("limit", TensorProto.INT64, [], [limit]),
                     helper.make_tensor("ten", TensorProto.FLOAT, [], [10.0]),
                     helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("x,trips,capped", [
    (0.0, 3, True),     # 0 doubled stays below 10: only the limit stops it
    (0.5, 3, True),     # 1, 2, 4: still below 10 when the limit stops it
    (1.5, 3, False),    # 3, 6, 12: its own condition ends it on the last allowed iteration
    (3.0, 2, False),    # 6, 12
    (20.0, 0, False),   # never enters
])
def test_a_loop_that_runs_into_its_trip_count_limit_is_capped(tmp_path, x, trips, capped):
    cov = GraphCoverage(_save(_capped_doubling(), tmp_path))
    path = cov.trace({"x": np.array([[x]], np.float32)})
    assert path.trips == {"Loop_cap": [trips]}
    assert path.capped == (["Loop_cap"] if capped else [])
    site = cov.sites[0]
    # a capped run reaches no count class: it did not end on its own
    assert path.hits(site) == (set() if capped else {"0" if trips == 0 else "1" if trips == 1 else "many"})
    data = path.to_json()
    assert data.get("capped", False) is capped and data.get("capped_loops", []) == path.capped
    # the instrumented copy computes what the model computes
    assert float(cov.session.run(["y"], {"x": np.array([[x]], np.float32)})[0][0, 0]) == x * 2 ** trips
