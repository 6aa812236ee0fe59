"""export/slim.py on synthetic ONNX graphs: each rewrite keeps the function, and
stays away from the graphs where it would change it (the edges of each rule).

Every graph is built with onnx.helper and run in onnxruntime before and after
the rewrite; no model is exported.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tf_parity_export.export import slim

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _run(model, feed):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def _ops(graph):
    return [n.op_type for n in graph.node]


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _same_function(before, after, feed):
    want, got = _run(before, feed), _run(after, feed)
    assert [w.shape for w in want] == [g.shape for g in got]
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)
    return got


# --- the Loop's own trip-count test ------------------------------------------------------------

def _doubling_loop(trips: int, bound, cast: bool = False, source: str = "i", opset: int = 17):
    """y = x doubled once per iteration; the body continues while `source < bound` (and cond)."""
    body_nodes = [helper.make_node("Mul", ["x_in", "two"], ["x_out"])]
    if cast:
        body_nodes.append(helper.make_node("Cast", [source], ["i_f"], to=F))
        counter, c = "i_f", np.float32(bound)
    else:
        counter, c = source, np.int64(bound)
    body_nodes += [
        helper.make_node("Less", [counter, "c"], ["lt"]),
        helper.make_node("And", ["lt", "cond_in"], ["cond_out"]),
    ]
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
         helper.make_tensor_value_info("x_in", F, [1])],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("x_out", F, [1])],
        initializer=[_const("c", c), _const("two", np.array([2.0], np.float32))],
    )
    loop = helper.make_node("Loop", ["M", "keep_going", "x"], ["y"], body=body)
    return _model([loop], [helper.make_tensor_value_info("x", F, [1])], [helper.make_tensor_value_info("y", F, [1])],
                  [_const("M", np.int64(trips)), _const("keep_going", np.bool_(True))], opset)


@pytest.mark.parametrize("cast", [False, True], ids=["int", "cast"])
def test_trip_count_test_dropped_where_the_trip_count_enforces_it(cast):
    for bound in (4, 5, 9):  # c >= M - 1 with M = 5: i < c holds on every iteration followed by another
        before = _doubling_loop(5, bound, cast)
        after = onnx.ModelProto.FromString(before.SerializeToString())
        assert slim.drop_trip_count_tests(after.graph) == 1, bound
        body = after.graph.node[0].attribute[0].g
        assert body.output[0].name == "cond_in"  # the test is gone: cond_out is the other input
        [y] = _same_function(before, after, {"x": np.array([1.0], np.float32)})
        assert y[0] == 32.0  # five trips


@pytest.mark.parametrize("cast", [False, True], ids=["int", "cast"])
def test_trip_count_test_kept_when_it_stops_the_loop_earlier(cast):
    """A 5-trip loop with bound 3 stops after 4 iterations; dropping the test would run 5."""
    before = _doubling_loop(5, 3, cast)
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert slim.drop_trip_count_tests(after.graph) == 0
    assert after == before
    assert _run(before, {"x": np.array([62500.0 / 16], np.float32)})[0][0] == 62500.0


def test_trip_count_test_on_another_counter_is_kept():
    before = _doubling_loop(5, 9, source="cond_in")  # Less(cond_in, 9): not the iteration number
    before.graph.node[0].attribute[0].g.node[1].input[0] = "x_in"  # Less(x_in, 9)
    before.graph.node[0].attribute[0].g.initializer[0].CopyFrom(_const("c", np.float32(9)))
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert slim.drop_trip_count_tests(after.graph) == 0
    _same_function(before, after, {"x": np.array([1.0], np.float32)})


def test_trip_count_test_needs_a_constant_trip_count_and_bound():
    model = _doubling_loop(5, 9)
    dynamic = onnx.ModelProto.FromString(model.SerializeToString())
    dynamic.graph.node[0].input[0] = "x_m"  # the trip count is not a constant
    assert slim.drop_trip_count_tests(dynamic.graph) == 0
    body_bound = onnx.ModelProto.FromString(model.SerializeToString())
    body = body_bound.graph.node[0].attribute[0].g
    body.node[1].input[1] = "x_in"  # Less(i, <not a constant>)
    assert slim.drop_trip_count_tests(body_bound.graph) == 0
    not_and = onnx.ModelProto.FromString(model.SerializeToString())
    not_and.graph.node[0].attribute[0].g.node[2].op_type = "Or"
    assert slim.drop_trip_count_tests(not_and.graph) == 0
    not_less = onnx.ModelProto.FromString(model.SerializeToString())
    not_less.graph.node[0].attribute[0].g.node[1].op_type = "Greater"
    assert slim.drop_trip_count_tests(not_less.graph) == 0


def test_trip_count_test_found_on_either_side_of_the_and():
    before = _doubling_loop(5, 4)
    and_node = before.graph.node[0].attribute[0].g.node[2]
    and_node.input[:] = ["cond_in", "lt"]
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert slim.drop_trip_count_tests(after.graph) == 1
    assert after.graph.node[0].attribute[0].g.output[0].name == "cond_in"
    _same_function(before, after, {"x": np.array([1.0], np.float32)})


def test_trip_count_test_inside_a_subgraph_sees_outer_constants():
    """A Loop nested in an If branch, its trip count an initializer of the main graph."""
    inner = _doubling_loop(5, 4)
    loop = inner.graph.node[0]
    then = helper.make_graph([loop], "then", [], [helper.make_tensor_value_info("y", F, [1])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "else", [],
                              [helper.make_tensor_value_info("z", F, [1])])
    before = _model([helper.make_node("If", ["flag"], ["out"], then_branch=then, else_branch=other)],
                    [helper.make_tensor_value_info("x", F, [1]), helper.make_tensor_value_info("flag", B, [])],
                    [helper.make_tensor_value_info("out", F, [1])], list(inner.graph.initializer))
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert slim.drop_trip_count_tests(after.graph) == 1
    for flag in (True, False):
        _same_function(before, after, {"x": np.array([1.5], np.float32), "flag": np.array(flag)})


# --- ReduceL2 -------------------------------------------------------------------------------------

def _norm_model(shape, axes, keepdims=1, squeeze=False, opset=17, as_attr=False):
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"])]
    inits = []
    if axes is None:
        nodes.append(helper.make_node("ReduceSum", ["sq"], ["sum"], keepdims=keepdims))
    else:
        inits.append(_const("axes", np.array(axes, np.int64)))
        nodes.append(helper.make_node("ReduceSum", ["sq", "axes"], ["sum"], keepdims=keepdims))
    nodes.append(helper.make_node("Sqrt", ["sum"], ["norm"]))
    out = "norm"
    if squeeze:
        nodes.append(helper.make_node("Squeeze", ["norm"], ["y"]))
        out = "y"
    return _model(nodes, [helper.make_tensor_value_info("x", F, list(shape))],
                  [helper.make_tensor_value_info(out, F, None)], inits, opset)


def _slimmed(model):
    after = onnx.ModelProto.FromString(model.SerializeToString())
    counts = slim.slim(after)
    return after, counts


FEED = np.arange(1, 7, dtype=np.float32).reshape(2, 1, 3) / 7


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_l2_norm_over_some_axes(opset, keepdims):
    before = _norm_model([2, 1, 3], [2], keepdims, opset=opset)
    after, counts = _slimmed(before)
    assert counts["l2_norm"] == 1 and _ops(after.graph) == ["ReduceL2"]
    l2 = after.graph.node[0]
    assert helper.get_attribute_value(next(a for a in l2.attribute if a.name == "keepdims")) == keepdims
    if opset >= 18:
        assert list(l2.input) == ["x", "axes"]
    else:
        assert [list(a.ints) for a in l2.attribute if a.name == "axes"] == [[2]]
    np.testing.assert_allclose(_run(after, {"x": FEED})[0], _run(before, {"x": FEED})[0], rtol=1e-6)
    assert _run(after, {"x": FEED})[0].shape == ((2, 1, 1) if keepdims else (2, 1))


def test_squeeze_after_a_partial_reduction_is_not_folded():
    """Reducing axis 2 of [2, 1, 3] then Squeeze gives [2]; keepdims=0 would give [2, 1]."""
    before = _norm_model([2, 1, 3], [2], squeeze=True)
    after, counts = _slimmed(before)
    assert counts["l2_norm"] == 1 and _ops(after.graph) == ["ReduceL2", "Squeeze"]
    got = _run(after, {"x": FEED})[0]
    assert got.shape == (2,)
    np.testing.assert_allclose(got, _run(before, {"x": FEED})[0], rtol=1e-6)


@pytest.mark.parametrize("axes", [None, [0, 1, 2], [-1, 0, 1]], ids=["no-axes", "all", "negative"])
def test_squeeze_after_a_full_reduction_becomes_keepdims_0(axes):
    before = _norm_model([2, 1, 3], axes, squeeze=True)
    after, counts = _slimmed(before)
    assert counts["l2_norm"] == 1 and _ops(after.graph) == ["ReduceL2"]
    l2 = after.graph.node[0]
    assert helper.get_attribute_value(next(a for a in l2.attribute if a.name == "keepdims")) == 0
    assert l2.output[0] == "y"
    got = _run(after, {"x": FEED})[0]
    assert got.shape == ()
    np.testing.assert_allclose(got, _run(before, {"x": FEED})[0], rtol=1e-6)


def test_full_reduction_without_squeeze_keeps_its_dims():
    before = _norm_model([2, 1, 3], None)
    after, _ = _slimmed(before)
    assert _run(after, {"x": FEED})[0].shape == (1, 1, 1)
    np.testing.assert_allclose(_run(after, {"x": FEED})[0], _run(before, {"x": FEED})[0], rtol=1e-6)


def test_squeeze_with_axes_is_not_folded():
    before = _norm_model([2, 1, 3], None)
    before.graph.initializer.append(_const("sq_axes", np.array([0], np.int64)))
    before.graph.node.append(helper.make_node("Squeeze", ["norm", "sq_axes"], ["y"]))
    before.graph.output[0].name = "y"
    after, _ = _slimmed(before)
    assert _ops(after.graph) == ["ReduceL2", "Squeeze"]
    assert _run(after, {"x": FEED})[0].shape == (1, 1)


def test_norm_read_twice_keeps_the_squeeze():
    before = _norm_model([2, 1, 3], None, squeeze=True)
    before.graph.output.append(helper.make_tensor_value_info("norm", F, None))
    after, _ = _slimmed(before)
    assert _ops(after.graph) == ["ReduceL2", "Squeeze"]
    _same_shapes = [o.shape for o in _run(after, {"x": FEED})]
    assert _same_shapes == [o.shape for o in _run(before, {"x": FEED})]


def test_l2_norm_left_alone_where_it_is_not_one():
    cases = []
    differing = _norm_model([2, 1, 3], [2])
    differing.graph.node[0].input[1] = "x2"  # Mul(x, x2): not a square
    differing.graph.input.append(helper.make_tensor_value_info("x2", F, [2, 1, 3]))
    cases.append(differing)
    runtime_axes = _norm_model([2, 1, 3], [2])
    runtime_axes.graph.ClearField("initializer")
    runtime_axes.graph.input.append(helper.make_tensor_value_info("axes", I64, [1]))
    cases.append(runtime_axes)
    empty = _norm_model([2, 1, 3], None)
    empty.graph.node[1].attribute.append(helper.make_attribute("noop_with_empty_axes", 1))
    cases.append(empty)
    sum_read_twice = _norm_model([2, 1, 3], [2])
    sum_read_twice.graph.output.append(helper.make_tensor_value_info("sum", F, None))
    cases.append(sum_read_twice)
    square_read_twice = _norm_model([2, 1, 3], [2])
    square_read_twice.graph.output.append(helper.make_tensor_value_info("sq", F, None))
    cases.append(square_read_twice)
    not_a_sum = _norm_model([2, 1, 3], [2])
    not_a_sum.graph.node[1].op_type = "ReduceMax"
    cases.append(not_a_sum)
    not_a_mul = _norm_model([2, 1, 3], [2])
    not_a_mul.graph.node[0].op_type = "Add"
    cases.append(not_a_mul)
    no_producer = _model([helper.make_node("Sqrt", ["x"], ["y"])], [helper.make_tensor_value_info("x", F, [2])],
                         [helper.make_tensor_value_info("y", F, [2])])
    cases.append(no_producer)
    sum_of_input = _model([helper.make_node("ReduceSum", ["x"], ["s"]), helper.make_node("Sqrt", ["s"], ["y"])],
                          [helper.make_tensor_value_info("x", F, [2])], [helper.make_tensor_value_info("y", F, None)])
    cases.append(sum_of_input)
    for model in cases:
        after = onnx.ModelProto.FromString(model.SerializeToString())
        assert slim.fuse_l2_norms(after.graph, 17, slim._ranks(after)) == 0
        assert "ReduceL2" not in _ops(after.graph)


def test_l2_norm_inside_a_loop_body_with_unknown_rank_keeps_the_squeeze():
    """In a subgraph the rank of `a` may be unknown: no every-axis claim, no fold."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["x_in", "x_in"], ["sq"]), helper.make_node("ReduceSum", ["sq"], ["s"]),
         helper.make_node("Sqrt", ["s"], ["n"]), helper.make_node("Squeeze", ["n"], ["n_sq"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["x_in"], ["x_out"])],
        "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
         helper.make_tensor_value_info("x_in", F, None)],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("x_out", F, None),
         helper.make_tensor_value_info("n_sq", F, None)],
    )
    before = _model([helper.make_node("Loop", ["M", "", "x"], ["y", "norms"], body=body)],
                    [helper.make_tensor_value_info("x", F, [2, 3])],
                    [helper.make_tensor_value_info("y", F, None), helper.make_tensor_value_info("norms", F, None)],
                    [_const("M", np.int64(2))])
    after, counts = _slimmed(before)
    assert counts["l2_norm"] == 1
    assert _ops(after.graph.node[0].attribute[0].g).count("ReduceL2") == 1
    _same_shapes = _run(after, {"x": FEED.reshape(2, 3)})
    want = _run(before, {"x": FEED.reshape(2, 3)})
    assert [s.shape for s in _same_shapes] == [w.shape for w in want]
    np.testing.assert_allclose(_same_shapes[1], want[1], rtol=1e-6)


# --- Reshape, Gemm, constant conditions, pruning -------------------------------------------------

@pytest.mark.parametrize("dims, target, noop", [
    (["batch", 20], [-1, 20], True),
    (["batch", 20], [0, 20], True),
    (["batch", 20], [0, -1], False),  # a no-op, but -1 not where the unknown dim is: not proven, kept
    ([4, 20], [4, 20], True),
    ([4, 20], [-1, 20], True),
    ([4, 20], [4, -1], True),
    (["batch", 20], [-1, 10], False),
    (["batch", 20], [20, -1], False),
    (["batch", 20], [-1, -1], False),
    (["batch", 20], [-1, 20, 1], False),
    (["batch", "w"], [-1, 20], False),
    (["batch", "w"], [0, 0], False),  # two unknown dims: not proven, kept
    ([None, 20], [-1, 20], True),
    (["batch", 20], [2, 20], False),
    ([4, 20], [4, 0], True),
    ([4, 20], [-1, 0], True),
])
def test_reshape_is_noop_only_when_it_returns_the_input_shape(dims, target, noop):
    assert slim._is_noop(dims, target) is noop


def test_noop_reshape_dropped_and_others_kept():
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["r"]), helper.make_node("Relu", ["r"], ["y"]),
             helper.make_node("Reshape", ["x", "half"], ["z"])]
    before = _model(nodes, [helper.make_tensor_value_info("x", F, ["batch", 4])],
                    [helper.make_tensor_value_info("y", F, None), helper.make_tensor_value_info("z", F, None)],
                    [_const("flat", np.array([-1, 4], np.int64)), _const("half", np.array([-1, 2], np.int64))])
    after, counts = _slimmed(before)
    assert counts["noop_reshape"] == 1 and _ops(after.graph) == ["Relu", "Reshape"]
    assert [i.name for i in after.graph.initializer] == ["half"]  # the unread shape constant is pruned
    _same_function(before, after, {"x": np.arange(12, dtype=np.float32).reshape(3, 4) - 5})


def test_reshape_that_is_a_graph_output_or_has_a_runtime_shape_is_kept():
    out = _model([helper.make_node("Reshape", ["x", "flat"], ["y"])], [helper.make_tensor_value_info("x", F, ["b", 4])],
                 [helper.make_tensor_value_info("y", F, None)], [_const("flat", np.array([-1, 4], np.int64))])
    assert slim.drop_noop_reshapes(out) == 0
    dyn = _model([helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
                 [helper.make_tensor_value_info("x", F, ["b", 4]), helper.make_tensor_value_info("s", I64, [2])],
                 [helper.make_tensor_value_info("y", F, None)])
    assert slim.drop_noop_reshapes(dyn) == 0
    unknown = _model([helper.make_node("Reshape", ["h", "flat"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
                     [helper.make_tensor_value_info("h", F, None)], [helper.make_tensor_value_info("y", F, None)],
                     [_const("flat", np.array([-1, 4], np.int64))])
    assert slim.drop_noop_reshapes(unknown) == 0


W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


@pytest.mark.parametrize("bias_shape", [(), (1,), (3,), (1, 3)])
def test_matmul_and_bias_become_one_gemm(bias_shape):
    bias = np.full(bias_shape, 0.5, np.float32)
    before = _model([helper.make_node("MatMul", ["x", "W"], ["mm"], name="dense"),
                     helper.make_node("Add", ["mm", "b"], ["y"])],
                    [helper.make_tensor_value_info("x", F, ["batch", 4])], [helper.make_tensor_value_info("y", F, None)],
                    [_const("W", W), _const("b", bias)])
    after, counts = _slimmed(before)
    assert counts["matmul_to_gemm"] == 1 and _ops(after.graph) == ["Gemm"]
    assert list(after.graph.node[0].input) == ["x", "W", "b"] and after.graph.node[0].name == "dense"
    feed = {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}
    np.testing.assert_allclose(_run(after, feed)[0], _run(before, feed)[0], rtol=1e-6)


def test_bias_that_does_not_broadcast_like_gemm_stays_an_add():
    before = _model([helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])],
                    [helper.make_tensor_value_info("x", F, [2, 4])], [helper.make_tensor_value_info("y", F, None)],
                    [_const("W", W), _const("b", np.ones((2, 3), np.float32))])
    after, _ = _slimmed(before)
    assert _ops(after.graph) == ["Gemm", "Add"]
    assert list(after.graph.node[0].input) == ["x", "W"]
    _same_function(before, after, {"x": np.ones((2, 4), np.float32)})


def test_matmul_output_read_twice_keeps_its_add():
    before = _model([helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])],
                    [helper.make_tensor_value_info("x", F, [2, 4])],
                    [helper.make_tensor_value_info("y", F, None), helper.make_tensor_value_info("mm", F, None)],
                    [_const("W", W), _const("b", np.ones(3, np.float32))])
    after, _ = _slimmed(before)
    assert _ops(after.graph) == ["Gemm", "Add"]
    _same_function(before, after, {"x": np.ones((2, 4), np.float32)})


def test_add_of_a_runtime_value_is_not_folded_into_gemm():
    before = _model([helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["mm", "mm"], ["y"])],
                    [helper.make_tensor_value_info("x", F, [2, 4])], [helper.make_tensor_value_info("y", F, None)],
                    [_const("W", W)])
    after, _ = _slimmed(before)
    assert _ops(after.graph) == ["Gemm", "Add"]
    _same_function(before, after, {"x": np.ones((2, 4), np.float32)})


def test_matmul_that_is_not_2d_by_a_constant_stays():
    three_d = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [helper.make_tensor_value_info("x", F, [2, 2, 4])],
                     [helper.make_tensor_value_info("y", F, None)], [_const("W", W)])
    runtime_w = _model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                       [helper.make_tensor_value_info("x", F, [2, 4]), helper.make_tensor_value_info("w", F, [4, 3])],
                       [helper.make_tensor_value_info("y", F, None)])
    vector_w = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [helper.make_tensor_value_info("x", F, [2, 4])],
                      [helper.make_tensor_value_info("y", F, None)], [_const("W", np.ones(4, np.float32))])
    unknown = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [helper.make_tensor_value_info("x", F, None)],
                     [helper.make_tensor_value_info("y", F, None)], [_const("W", W)])
    for model in (three_d, runtime_w, vector_w, unknown):
        assert slim.matmuls_to_gemm(model) == 0 and _ops(model.graph) == ["MatMul"]


def test_constant_comparisons_fold_and_and_true_disappears():
    nodes = [helper.make_node("Less", ["zero", "limit"], ["ok"]),      # 0 < 1000: True
             helper.make_node("And", ["ok", "flag"], ["go"]),
             helper.make_node("Not", ["go"], ["y"])]
    before = _model(nodes, [helper.make_tensor_value_info("flag", B, [])], [helper.make_tensor_value_info("y", B, [])],
                    [_const("zero", np.int64(0)), _const("limit", np.int64(1000))])
    after, counts = _slimmed(before)
    assert counts["constant_condition"] == 2 and _ops(after.graph) == ["Not"]
    assert list(after.graph.node[0].input) == ["flag"] and not after.graph.initializer
    for flag in (True, False):
        _same_function(before, after, {"flag": np.array(flag)})


@pytest.mark.parametrize("op, a, b, want", [
    ("Less", 2, 1, False), ("Greater", 2, 1, True), ("LessOrEqual", 1, 1, True), ("GreaterOrEqual", 0, 1, False),
    ("Equal", 1, 1, True), ("Or", False, True, True), ("And", True, False, False),
])
def test_each_foldable_comparison_folds_to_its_value(op, a, b, want):
    dtype = np.bool_ if isinstance(a, bool) else np.int64
    before = _model([helper.make_node(op, ["a", "b"], ["c"]), helper.make_node("Xor", ["c", "flag"], ["y"])],
                    [helper.make_tensor_value_info("flag", B, [])], [helper.make_tensor_value_info("y", B, [])],
                    [_const("a", dtype(a)), _const("b", dtype(b))])
    after, counts = _slimmed(before)
    assert counts["constant_condition"] >= 1 and "Xor" in _ops(after.graph) and op not in _ops(after.graph)
    assert bool(numpy_helper.to_array(next(i for i in after.graph.initializer if i.name == "c"))) is want
    for flag in (True, False):
        _same_function(before, after, {"flag": np.array(flag)})


def test_and_with_false_or_a_graph_output_is_kept():
    false = _model([helper.make_node("And", ["f", "flag"], ["go"]), helper.make_node("Not", ["go"], ["y"])],
                   [helper.make_tensor_value_info("flag", B, [])], [helper.make_tensor_value_info("y", B, [])],
                   [_const("f", np.bool_(False))])
    assert slim.fold_constant_conditions(false.graph) == 0
    out = _model([helper.make_node("And", ["flag", "t"], ["y"])], [helper.make_tensor_value_info("flag", B, [])],
                 [helper.make_tensor_value_info("y", B, [])], [_const("t", np.bool_(True))])
    assert slim.fold_constant_conditions(out.graph) == 0
    vector = _model([helper.make_node("And", ["flag", "t"], ["go"]), helper.make_node("Not", ["go"], ["y"])],
                    [helper.make_tensor_value_info("flag", B, [2])], [helper.make_tensor_value_info("y", B, [2])],
                    [_const("t", np.array([True, True]))])
    assert slim.fold_constant_conditions(vector.graph) == 0  # only a scalar True is an identity here


def test_and_true_on_the_second_input_keeps_the_first():
    before = _model([helper.make_node("And", ["flag", "t"], ["go"]), helper.make_node("Not", ["go"], ["y"])],
                    [helper.make_tensor_value_info("flag", B, [])], [helper.make_tensor_value_info("y", B, [])],
                    [_const("t", np.bool_(True))])
    after, _ = _slimmed(before)
    assert _ops(after.graph) == ["Not"] and list(after.graph.node[0].input) == ["flag"]
    for flag in (True, False):
        _same_function(before, after, {"flag": np.array(flag)})


def test_conditions_fold_inside_subgraphs_with_outer_constants():
    then = helper.make_graph([helper.make_node("Less", ["zero", "limit"], ["t_out"])], "then", [],
                             [helper.make_tensor_value_info("t_out", B, [])])
    other = helper.make_graph([helper.make_node("Not", ["flag"], ["e_out"])], "else", [],
                              [helper.make_tensor_value_info("e_out", B, [])])
    before = _model([helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other)],
                    [helper.make_tensor_value_info("flag", B, [])], [helper.make_tensor_value_info("y", B, [])],
                    [_const("zero", np.int64(0)), _const("limit", np.int64(3))])
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert slim.fold_constant_conditions(after.graph) == 1
    for flag in (True, False):
        _same_function(before, after, {"flag": np.array(flag)})


def test_prune_removes_dead_nodes_in_chains_and_subgraphs_but_keeps_what_is_read():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["x_in", "one"], ["x_out"]),
         helper.make_node("Neg", ["x_in"], ["dead_inner"])],
        "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
         helper.make_tensor_value_info("x_in", F, [1])],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("x_out", F, [1])],
        initializer=[_const("unused_inner", np.float32(1))],
    )
    nodes = [helper.make_node("Neg", ["x"], ["d1"]), helper.make_node("Abs", ["d1"], ["d2"]),  # a dead chain
             helper.make_node("Loop", ["M", "", "x"], ["y"], body=body)]
    before = _model(nodes, [helper.make_tensor_value_info("x", F, [1])], [helper.make_tensor_value_info("y", F, [1])],
                    [_const("M", np.int64(3)), _const("one", np.array([1.0], np.float32)),
                     _const("unused", np.float32(2))])
    after = onnx.ModelProto.FromString(before.SerializeToString())
    slim._prune(after.graph)
    assert _ops(after.graph) == ["Loop"]
    assert sorted(i.name for i in after.graph.initializer) == ["M", "one"]  # "one" is read inside the body
    inner = after.graph.node[0].attribute[0].g
    assert _ops(inner) == ["Identity", "Add"] and not inner.initializer
    _same_function(before, after, {"x": np.array([1.0], np.float32)})


def test_slim_counts_every_rewrite():
    before = _doubling_loop(5, 4)
    after, counts = _slimmed(before)
    assert counts == {"noop_reshape": 0, "matmul_to_gemm": 0, "constant_condition": 0, "trip_count_test": 1,
                      "loop_invariant": 0, "l2_norm": 0}
    _same_function(before, after, {"x": np.array([3.0], np.float32)})


# --- the helpers the rewrites stand on, and counts when a rule applies more than once ---------------

def test_dims_reads_values_names_and_unknowns():
    value = helper.make_tensor_value_info("x", F, ["batch", 20, None])
    assert slim._dims(value) == ["batch", 20, None]


def test_two_minus_ones_are_never_a_noop():
    assert slim._is_noop([4, 20], [-1, -1]) is False


def test_opset_of_the_default_domain_under_either_name():
    model = _doubling_loop(5, 4)
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("ai.onnx.ml", 3), helper.make_opsetid("ai.onnx", 18)])
    assert slim._opset(model) == 18


def test_ranks_of_loop_outputs_come_from_the_body():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["x_in"], ["x_out"])],
        "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
         helper.make_tensor_value_info("x_in", F, None)],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("x_out", F, ["a", "b"])],
    )
    model = _model([helper.make_node("Loop", ["M", "", "x"], ["y"], body=body)],
                   [helper.make_tensor_value_info("x", F, None)], [helper.make_tensor_value_info("y", F, None)],
                   [_const("M", np.int64(2))])
    assert slim._ranks(model)["y"] == 2


def test_users_counts_every_read_subgraphs_and_outputs_included():
    then = helper.make_graph([helper.make_node("Add", ["a", "b"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", F, [1])])
    other = helper.make_graph([helper.make_node("Identity", ["a"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", F, [1])])
    model = _model([helper.make_node("Add", ["a", "a"], ["b"]),
                    helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other)],
                   [helper.make_tensor_value_info("a", F, [1]), helper.make_tensor_value_info("flag", B, [])],
                   [helper.make_tensor_value_info("y", F, [1]), helper.make_tensor_value_info("b", F, [1])])
    assert slim._users(model.graph) == {"a": 4, "b": 2, "flag": 1, "y": 1, "t": 1, "e": 1}


def test_users_sees_graphs_in_a_list_attribute():
    inner = helper.make_graph([helper.make_node("Identity", ["outer"], ["o"])], "g", [],
                              [helper.make_tensor_value_info("o", F, [1])])
    node = helper.make_node("Branches", [], ["y"], domain="example", branches=[inner, inner])
    graph = helper.make_graph([node], "main", [], [helper.make_tensor_value_info("y", F, [1])])
    assert slim._subgraphs(node) == [inner, inner]
    assert slim._users(graph)["outer"] == 2


def test_rewrites_rename_the_reads_inside_subgraphs():
    """And(flag, True) and a no-op Reshape both vanish; an If branch reading their outputs must follow."""
    then = helper.make_graph([helper.make_node("Not", ["go"], ["t"]), helper.make_node("Relu", ["r"], ["t2"])], "then",
                             [], [helper.make_tensor_value_info("t", B, []), helper.make_tensor_value_info("t2", F, None)])
    other = helper.make_graph([helper.make_node("Identity", ["go"], ["e"]), helper.make_node("Neg", ["r"], ["e2"])],
                              "else", [], [helper.make_tensor_value_info("e", B, []),
                                           helper.make_tensor_value_info("e2", F, None)])
    nodes = [helper.make_node("And", ["flag", "t_const"], ["go"]),
             helper.make_node("Reshape", ["x", "flat"], ["r"]),
             helper.make_node("If", ["flag"], ["y", "y2"], then_branch=then, else_branch=other)]
    before = _model(nodes, [helper.make_tensor_value_info("flag", B, []), helper.make_tensor_value_info("x", F, ["b", 2])],
                    [helper.make_tensor_value_info("y", B, []), helper.make_tensor_value_info("y2", F, None)],
                    [_const("t_const", np.bool_(True)), _const("flat", np.array([-1, 2], np.int64))])
    after, counts = _slimmed(before)
    assert counts["constant_condition"] == 1 and counts["noop_reshape"] == 1 and _ops(after.graph) == ["If"]
    for flag in (True, False):
        _same_function(before, after, {"flag": np.array(flag), "x": np.array([[1.0, -2.0]], np.float32)})


def test_noop_reshapes_counted_past_nodes_that_do_not_qualify():
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("Reshape", ["h", "half"], ["z"]), helper.make_node("Neg", ["z"], ["z2"]),  # not a no-op
             helper.make_node("Reshape", ["h", "flat"], ["r"]), helper.make_node("Relu", ["r"], ["y"]),
             helper.make_node("Reshape", ["r", "flat"], ["r2"]), helper.make_node("Neg", ["r2"], ["y2"])]
    before = _model(nodes, [helper.make_tensor_value_info("x", F, ["batch", 4])],
                    [helper.make_tensor_value_info(n, F, None) for n in ("z2", "y", "y2")],
                    [_const("flat", np.array([-1, 4], np.int64)), _const("half", np.array([-1, 2], np.int64))])
    after, counts = _slimmed(before)
    assert counts["noop_reshape"] == 2 and _ops(after.graph) == ["Relu", "Reshape", "Neg", "Relu", "Neg"]
    _same_function(before, after, {"x": np.arange(8, dtype=np.float32).reshape(2, 4) - 3})


def test_trip_count_bound_may_be_an_outer_constant_and_two_loops_count_two():
    before = _doubling_loop(5, 4)
    body = before.graph.node[0].attribute[0].g
    bound = body.initializer[0]
    before.graph.initializer.append(bound)  # the bound lives in the main graph, read by the body
    del body.initializer[0]
    second = onnx.NodeProto.FromString(before.graph.node[0].SerializeToString())
    second.input[2], second.output[0] = "y", "y2"
    before.graph.node.append(second)
    before.graph.output[0].name = "y2"
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert slim.drop_trip_count_tests(after.graph) == 2
    [y] = _same_function(before, after, {"x": np.array([1.0], np.float32)})
    assert y[0] == 1024.0


def test_every_fold_is_counted_main_graph_and_subgraphs():
    then = helper.make_graph([helper.make_node("Less", ["zero", "limit"], ["t_out"])], "then", [],
                             [helper.make_tensor_value_info("t_out", B, [])])
    other = helper.make_graph([helper.make_node("Not", ["c1"], ["e_out"])], "else", [],
                              [helper.make_tensor_value_info("e_out", B, [])])
    nodes = [helper.make_node("Less", ["zero", "limit"], ["c1"]), helper.make_node("Greater", ["zero", "limit"], ["c2"]),
             helper.make_node("Xor", ["c1", "c2"], ["c3"]), helper.make_node("Xor", ["c3", "flag"], ["flag2"]),
             helper.make_node("If", ["flag2"], ["y"], then_branch=then, else_branch=other)]
    before = _model(nodes, [helper.make_tensor_value_info("flag", B, [])], [helper.make_tensor_value_info("y", B, [])],
                    [_const("zero", np.int64(0)), _const("limit", np.int64(3))])
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert slim.fold_constant_conditions(after.graph) == 4  # Less, Greater; Less and Not(c1) in the branches
    for flag in (True, False):
        _same_function(before, after, {"flag": np.array(flag)})


def test_l2_norms_counted_past_sqrts_that_do_not_qualify():
    x3 = [helper.make_tensor_value_info("x", F, [2, 1, 3])]
    nodes = [
        helper.make_node("Sqrt", ["x"], ["n0"]),                                             # no ReduceSum
        helper.make_node("Add", ["x", "x"], ["s1"]), helper.make_node("ReduceSum", ["s1"], ["r1"]),
        helper.make_node("Sqrt", ["r1"], ["n1"]),                                             # not a square
        helper.make_node("Mul", ["x", "x"], ["s2"]), helper.make_node("ReduceSum", ["s2"], ["r2"]),
        helper.make_node("Sqrt", ["r2"], ["n2"]),                                             # square read twice
        helper.make_node("Mul", ["x", "x"], ["s3"]),
        helper.make_node("ReduceSum", ["s3"], ["r3"], noop_with_empty_axes=1), helper.make_node("Sqrt", ["r3"], ["n3"]),
        helper.make_node("Mul", ["x", "x"], ["s4"]), helper.make_node("ReduceSum", ["s4", "axes"], ["r4"]),
        helper.make_node("Sqrt", ["r4"], ["n4"]),                                             # this one
        helper.make_node("Mul", ["x", "x"], ["s5"]), helper.make_node("ReduceSum", ["s5"], ["r5"]),
        helper.make_node("Sqrt", ["r5"], ["n5"]),                                             # and this one
    ]
    outs = [helper.make_tensor_value_info(n, F, None) for n in ("n0", "n1", "n2", "s2", "n3", "n4", "n5")]
    before = _model(nodes, x3, outs, [_const("axes", np.array([2], np.int64))])
    after, counts = _slimmed(before)
    assert counts["l2_norm"] == 2 and _ops(after.graph).count("ReduceL2") == 2
    for w, g in zip(_run(before, {"x": FEED}), _run(after, {"x": FEED})):
        assert w.shape == g.shape
        np.testing.assert_allclose(g, w, rtol=1e-6)


@pytest.mark.parametrize("opset", [17, 18])
def test_l2_norm_in_a_subgraph_with_outer_axes_is_counted_with_the_main_graph(opset):
    body = helper.make_graph(
        [helper.make_node("Mul", ["x_in", "x_in"], ["sq"]), helper.make_node("ReduceSum", ["sq", "axes"], ["s"]),
         helper.make_node("Sqrt", ["s"], ["n"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["x_in"], ["x_out"])],
        "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
         helper.make_tensor_value_info("x_in", F, [2, 1, 3])],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("x_out", F, [2, 1, 3]),
         helper.make_tensor_value_info("n", F, None)],
    )
    nodes = [helper.make_node("Loop", ["M", "", "x"], ["y", "norms"], body=body),
             helper.make_node("Mul", ["x", "x"], ["sq0"]), helper.make_node("ReduceSum", ["sq0", "axes"], ["s0"]),
             helper.make_node("Sqrt", ["s0"], ["n0"])]
    before = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 1, 3])],
                    [helper.make_tensor_value_info(n, F, None) for n in ("y", "norms", "n0")],
                    [_const("M", np.int64(2)), _const("axes", np.array([2], np.int64))], opset)
    after, counts = _slimmed(before)
    assert counts["l2_norm"] == 2
    assert _ops(after.graph.node[0].attribute[0].g).count("ReduceL2") == 1
    for w, g in zip(_run(before, {"x": FEED}), _run(after, {"x": FEED})):
        assert w.shape == g.shape
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_reduce_sum_without_keepdims_keeps_dims_then_folds_the_squeeze():
    """keepdims defaults to 1: the fused node keeps dims, and a Squeeze of a full reduction folds."""
    plain = _model([helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("ReduceSum", ["sq"], ["s"]),
                    helper.make_node("Sqrt", ["s"], ["n"])], [helper.make_tensor_value_info("x", F, [2, 1, 3])],
                   [helper.make_tensor_value_info("n", F, None)])
    after, _ = _slimmed(plain)
    [keep] = [helper.get_attribute_value(a) for a in after.graph.node[0].attribute if a.name == "keepdims"]
    assert keep == 1 and _run(after, {"x": FEED})[0].shape == (1, 1, 1)
    squeezed = onnx.ModelProto.FromString(plain.SerializeToString())
    squeezed.graph.node.append(helper.make_node("Squeeze", ["n"], ["y"]))
    squeezed.graph.output[0].name = "y"
    after, _ = _slimmed(squeezed)
    assert _ops(after.graph) == ["ReduceL2"] and _run(after, {"x": FEED})[0].shape == ()


def test_gemm_rewrites_counted_past_matmuls_that_do_not_qualify():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m0"]),            # runtime weight
             helper.make_node("MatMul", ["x3", "W"], ["m1"]),           # 3-D input
             helper.make_node("MatMul", ["x", "W"], ["m2"]), helper.make_node("Add", ["m2", "b"], ["y2"]),
             helper.make_node("MatMul", ["x", "W"], ["m3"]), helper.make_node("Mul", ["m3", "b"], ["y3"])]
    before = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 4]), helper.make_tensor_value_info("w", F, [4, 3]),
                            helper.make_tensor_value_info("x3", F, [2, 2, 4])],
                    [helper.make_tensor_value_info(n, F, None) for n in ("m0", "m1", "y2", "y3")],
                    [_const("W", W), _const("b", np.full(3, 0.5, np.float32))])
    after, counts = _slimmed(before)
    assert counts["matmul_to_gemm"] == 2 and _ops(after.graph) == ["MatMul", "MatMul", "Gemm", "Gemm", "Mul"]
    feed = {"x": np.arange(8, dtype=np.float32).reshape(2, 4), "w": np.ones((4, 3), np.float32),
            "x3": np.ones((2, 2, 4), np.float32)}
    for w, g in zip(_run(before, feed), _run(after, feed)):
        np.testing.assert_allclose(g, w, rtol=1e-6)


# --- values a Loop carries through unchanged -----------------------------------------------------

def _carrying_loop(weight_out: str = "w_in", graph_output_w: bool = False, scan_w: bool = False):
    """h = h @ w, three times, with w carried through the loop (as tf2onnx passes a while_loop's
    captured weights): the body returns `weight_out` for it (its own input: unchanged)."""
    body_nodes = [helper.make_node("MatMul", ["h_in", "w_in"], ["h_out"]),
                  helper.make_node("Identity", ["c_in"], ["c_out"]),
                  helper.make_node("Mul", ["w_in", "half"], ["w_half"])]
    outputs = [helper.make_tensor_value_info("c_out", B, []), helper.make_tensor_value_info("h_out", F, None),
               helper.make_tensor_value_info(weight_out, F, None)]
    if scan_w:
        outputs.append(helper.make_tensor_value_info("w_in", F, None))
    body = helper.make_graph(body_nodes, "body", [helper.make_tensor_value_info("i", I64, []),
                                                  helper.make_tensor_value_info("c_in", B, []),
                                                  helper.make_tensor_value_info("h_in", F, None),
                                                  helper.make_tensor_value_info("w_in", F, None)], outputs)
    loop_outs = ["h", "w_last"] + (["w_scan"] if scan_w else [])
    nodes = [helper.make_node("Loop", ["three", "", "x", "w"], loop_outs, body=body, name="Loop_0"),
             helper.make_node("Add", ["w_last", "one"], ["w_plus"]),
             helper.make_node("MatMul", ["h", "w_plus"], ["y"])]
    outs = [helper.make_tensor_value_info("y", F, [1, 2])]
    if graph_output_w:
        outs.append(helper.make_tensor_value_info("w_last", F, [2, 2]))
    if scan_w:
        outs.append(helper.make_tensor_value_info("w_scan", F, [3, 2, 2]))
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 2])], outs,
                  [_const("three", np.int64(3)), _const("w", np.array([[0.5, 1.0], [-1.0, 2.0]], np.float32)),
                   _const("one", np.float32(1.0)), _const("half", np.float32(0.5))])


def test_a_value_carried_unchanged_is_read_from_outside_the_loop():
    before = _carrying_loop()
    after = type(before)()
    after.CopyFrom(before)
    assert slim.read_loop_invariants(after.graph) == 1
    loop = after.graph.node[0]
    body = loop.attribute[0].g
    assert list(loop.input) == ["three", "", "x"] and list(loop.output) == ["h"]
    assert [v.name for v in body.input] == ["i", "c_in", "h_in"] and [v.name for v in body.output] == ["c_out", "h_out"]
    assert list(body.node[0].input) == ["h_in", "w"] and list(body.node[2].input) == ["w", "half"]  # reads renamed
    assert list(after.graph.node[1].input) == ["w", "one"]  # the Loop's final copy of w, read after it
    onnx.checker.check_model(after, full_check=True)
    _same_function(before, after, {"x": np.array([[1.0, -2.0]], np.float32)})


@pytest.mark.parametrize("case", ["changed", "graph_output", "scan_output"])
def test_a_carried_value_is_kept_where_it_changes_or_is_seen_outside(case):
    model = _carrying_loop(weight_out="w_half" if case == "changed" else "w_in",
                           graph_output_w=case == "graph_output", scan_w=case == "scan_output")
    before = type(model)()
    before.CopyFrom(model)
    assert slim.read_loop_invariants(model.graph) == 0
    assert model == before


def test_loop_invariants_are_read_from_outside_at_any_depth():
    inner = _carrying_loop()
    outer_body = helper.make_graph(
        [*inner.graph.node, helper.make_node("Identity", ["c_in0"], ["c_out0"])], "outer_body",
        [helper.make_tensor_value_info("j", I64, []), helper.make_tensor_value_info("c_in0", B, []),
         helper.make_tensor_value_info("x", F, [1, 2])],
        [helper.make_tensor_value_info("c_out0", B, []), helper.make_tensor_value_info("y", F, [1, 2])],
        initializer=list(inner.graph.initializer))
    model = _model([helper.make_node("Loop", ["two", "", "x0"], ["y0"], body=outer_body)],
                   [helper.make_tensor_value_info("x0", F, [1, 2])], [helper.make_tensor_value_info("y0", F, [1, 2])],
                   [_const("two", np.int64(2))])
    before = type(model)()
    before.CopyFrom(model)
    assert slim.slim(model)["loop_invariant"] == 1
    _same_function(before, model, {"x0": np.array([[0.25, 1.0]], np.float32)})
