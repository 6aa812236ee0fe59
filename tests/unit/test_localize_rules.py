"""verify/localize: pairing tensors by name and layout, the scaled tolerance, and the smallest
model around a node, on synthetic arrays and graphs (no TensorFlow, no export)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tf_parity_export.verify.localize.graph import minimal_model, produced, with_outputs
from tf_parity_export.verify.localize.match import (Layout, best_match, layouts, litert_candidates, onnx_candidates,
                                                    scale, scaled_atol, tensor_error)

pytestmark = pytest.mark.filterwarnings("error")  # inf - inf or x / 0 must not warn on a user's terminal

TF = ["ln/Rsqrt:0", "ln/SquaredDifference:0", "gelu/Erfc:0", "dense/MatMul:0", "dense/Relu:0",
      "loop/while:0", "loop/while:2", "loop/while:3", "cond:0", "a/MatMul:0", "fused/op:1"]


@pytest.mark.parametrize("source, want", [
    ("dense/MatMul:0", ["dense/MatMul:0"]),           # tf2onnx kept TF's name
    ("ln/Rsqrt__13:0", ["ln/Rsqrt:0"]),               # a node tf2onnx added after the op it converts
    ("gelu/Erfc:0__erf", ["gelu/Erfc:0"]),            # the exporter's own rewrite (Erfc as 1 - Erf)
    ("loop/while_loop:0", ["loop/while:0", "loop/while:2", "loop/while:3"]),  # a Loop: every While output
    ("Transpose__96:0", []),                          # made up by tf2onnx: no TF tensor
    ("ln/Rsqrt__13:1", []),                           # the port must exist too
    ("sequential_while_cond_1135_seq/while/Greater:0", []),
])
def test_onnx_names_give_their_tf_candidates(source, want):
    assert onnx_candidates(source, TF) == want


@pytest.mark.parametrize("name, want", [
    ("dense/MatMul;dense/Relu", ["dense/MatMul:0", "dense/Relu:0"]),  # a fused op: each part
    ("a/MatMul1", ["a/MatMul:0"]),                                     # a repeated name, numbered
    ("fused/op1", ["fused/op:1"]),                                     # an op's second output
    ("loop/while2", ["loop/while:2", "loop/while:0"]),
    ("StatefulPartitionedCall:0", []),
    (" dense/Relu ;nothing", ["dense/Relu:0"]),
])
def test_litert_names_give_their_tf_candidates(name, want):
    assert litert_candidates(name, set(TF)) == want


def test_layouts_try_identity_first_then_every_permutation_that_fits():
    assert layouts((2, 3), (2, 3)) == [Layout((0, 1))]
    nchw = layouts((1, 4, 5, 6), (1, 5, 6, 4))
    assert nchw == [Layout((0, 3, 1, 2))]
    square = layouts((1, 4, 5, 5), (1, 5, 5, 4))  # two spatial dims alike: both fit, values decide
    assert square == [Layout((0, 3, 1, 2)), Layout((0, 3, 2, 1))]
    assert layouts((2, 3, 3), (2, 3, 3))[0] == Layout((0, 1, 2))
    assert layouts((2, 3), (3, 3)) == []  # sizes differ: nothing fits


def test_layouts_squeeze_size_one_dims_only_when_nothing_fits_as_is():
    pooled = layouts((2, 16, 1, 1), (2, 16))
    assert pooled == [Layout((0, 1), squeeze=True)]
    ref = np.arange(32, dtype=np.float32).reshape(2, 16)
    assert np.array_equal(pooled[0].apply(ref, (2, 16, 1, 1)), ref.reshape(2, 16, 1, 1))
    assert layouts((1, 6), (1, 6)) == [Layout((0, 1))]
    assert Layout((0, 1)).to_json() is None and Layout((1, 0)).to_json() == {"perm": [1, 0], "squeeze": False}


def test_a_layout_moves_values_where_the_runtime_has_them():
    nhwc = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    (lay,) = layouts((1, 4, 2, 3), nhwc.shape)
    assert np.array_equal(lay.apply(nhwc, (1, 4, 2, 3)), nhwc.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("got, ref, atol, rtol, ratio", [
    ([1.0, 2.0], [1.0, 2.0], 1e-5, 1e-5, 0.0),
    ([0.0, 100.001], [0.0, 100.0], 1e-5, 1e-5, 1.0),        # 1e-3 over max(atol, 1e-5 * 100): at the bound
    ([2e-5, 1.0], [0.0, 1.0], 1e-5, 1e-5, 2.0),             # a zero reference is held to atol
    ([3.0], [0.0], 0.0, 1e-5, math.inf),                    # no atol, zero reference: any error is infinite
    ([np.nan], [1.0], 1e-5, 1e-5, math.inf),                # NaN against a number
    ([np.nan, 1.0], [np.nan, 1.0], 1e-5, 1e-5, 0.0),        # NaN where NaN
    ([np.inf], [np.inf], 1e-5, 1e-5, 0.0),                  # equal infinities
    ([-np.inf], [np.inf], 1e-5, 1e-5, math.inf),
    ([1.0], [np.inf], 1e-5, 1e-5, math.inf),
])
def test_tensor_error_ratio_is_the_worst_element_over_its_tolerance(got, ref, atol, rtol, ratio):
    err = tensor_error(np.array(got, np.float32), np.array(ref, np.float32), atol, rtol)
    assert err.ratio == pytest.approx(ratio, rel=1e-3) if math.isfinite(ratio) else err.ratio == ratio


def test_tensor_error_reports_max_abs_scale_relative_error_and_cosine():
    ref = np.array([3.0, -4.0, 0.0], np.float32)
    err = tensor_error(ref * 2, ref, 1e-5, 1e-5)
    assert (err.max_abs, err.rel, err.atol) == (4.0, 1.0, 1e-5)
    assert err.cosine == pytest.approx(1.0)
    assert tensor_error(-ref, ref, 1e-5, 1e-5).cosine == pytest.approx(-1.0)
    empty = tensor_error(np.zeros(0, np.float32), np.zeros(0, np.float32), 1e-5, 1e-5)
    assert (empty.ratio, empty.max_abs) == (0.0, 0.0)


def test_scaled_tolerance_is_the_models_atol_at_the_outputs_scale():
    assert scale(np.array([1.0, -8.0, np.inf], np.float32)) == 8.0
    assert scale(np.array([np.nan], np.float32)) == 0.0
    big = np.array([0.0, 1000.0], np.float32)
    assert scaled_atol(1e-5, big, outputs_scale=10.0) == pytest.approx(1e-3)  # 100x the outputs: 100x the atol
    assert scaled_atol(1e-5, big, outputs_scale=0.0) == 1e-5                 # all-zero outputs: the atol as is
    # an error of 5e-4 near zero in a tensor 100x the outputs' scale is rounding there, not a divergence
    got = big + np.array([5e-4, 0.0], np.float32)
    assert tensor_error(got, big, scaled_atol(1e-5, big, 10.0), 1e-5).ratio < 1
    assert tensor_error(got, big, 1e-5, 1e-5).ratio > 1


def test_best_match_takes_the_closest_candidate_and_layout():
    sqrt_like = np.array([[2.0, 3.0]], np.float32)
    candidates = {"a:0": np.array([[4.0, 9.0]], np.float32), "b:0": np.array([[2.0, 3.0]], np.float32)}
    name, lay, err = best_match(sqrt_like, candidates, 1e-5, 1e-5, 1.0)
    assert (name, lay, err.ratio) == ("b:0", Layout((0, 1)), 0.0)
    nhwc = np.random.default_rng(0).random((1, 3, 3, 2), dtype=np.float32)
    name, lay, err = best_match(nhwc.transpose(0, 3, 2, 1).copy(), {"t:0": nhwc}, 1e-5, 1e-5, 1.0)
    assert lay == Layout((0, 3, 2, 1)) and err.ratio == 0.0
    assert best_match(np.zeros((2, 2), np.float32), {"t:0": np.zeros(3, np.float32)}, 1e-5, 1e-5, 1.0) is None
    far = best_match(np.full((1, 2), 9.0, np.float32), candidates, 1e-5, 1e-5, 1.0)
    assert far[0] == "a:0" and far[2].ratio > 1  # nothing within tolerance: still the closest, still diverging


def _graph() -> onnx.ModelProto:
    """x -> Transpose (made up) -> Mul(w) -> t2 -> Relu -> y; and x -> Shape (int) -> unused."""
    w = numpy_helper.from_array(np.full((2, 1), 3.0, np.float32), "w")
    nodes = [helper.make_node("Transpose", ["x"], ["t1"], name="Transpose_0", perm=[1, 0]),
             helper.make_node("Mul", ["t1", "w"], ["t2"], name="Mul_1"),
             helper.make_node("Relu", ["t2"], ["y"], name="Relu_2"),
             helper.make_node("Shape", ["x"], ["s"], name="Shape_3")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1])], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_minimal_model_walks_back_through_tensors_without_a_reference_value():
    import onnxruntime as ort

    model = _graph()
    types = {"t1": TensorProto.FLOAT, "t2": TensorProto.FLOAT, "y": TensorProto.FLOAT}
    x = np.array([[1.0, -2.0]], np.float32)
    # t1 has no reference value (tf2onnx made it): the Transpose comes along, fed from x
    small, feed = minimal_model(model, 1, "t2", {"x": x}, types, (2, 1))
    assert [n.op_type for n in small.graph.node] == ["Transpose", "Mul"]
    assert list(feed) == ["x"] and [i.name for i in small.graph.initializer] == ["w"]
    onnx.checker.check_model(small, full_check=True)
    (got,) = ort.InferenceSession(small.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    assert np.array_equal(got, x.T * 3)
    # with a reference value for t2, the Relu alone
    t2 = np.array([[5.0], [-1.0]], np.float32)
    alone, feed = minimal_model(model, 2, "y", {"x": x, "t2": t2}, types, (2, 1))
    onnx.checker.check_model(alone, full_check=True)
    assert [n.op_type for n in alone.graph.node] == ["Relu"] and list(feed) == ["t2"]
    assert [d.dim_value for d in alone.graph.input[0].type.tensor_type.shape.dim] == [2, 1]


def test_every_produced_tensor_in_graph_order_and_added_as_an_output():
    model = _graph()
    assert [(p.index, p.node, p.op, p.tensor) for p in produced(model)] == [
        (0, "Transpose_0", "Transpose", "t1"), (1, "Mul_1", "Mul", "t2"), (2, "Relu_2", "Relu", "y"),
        (3, "Shape_3", "Shape", "s")]
    exposed = with_outputs(model, ["t1", "y"], {"t1": TensorProto.FLOAT, "y": TensorProto.FLOAT})
    assert [o.name for o in exposed.graph.output] == ["y", "t1"]  # the model's own first, no duplicate
    assert [o.name for o in model.graph.output] == ["y"]           # the original is untouched


def test_outputs_moved_by_exposing_intermediates_are_said():
    """The model's outputs from the run with extra outputs against the runtime's own, bit for bit."""
    from types import SimpleNamespace

    from tf_parity_export.models import ModelSpec, TensorSig
    from tf_parity_export.verify.inputs import Case
    from tf_parity_export.verify.localize.localizer import Localization, _Context

    spec = ModelSpec("m", "x:y", "", inputs=(TensorSig("x", (None, 2)),), outputs=(TensorSig("y", (None, 2)),))
    ctx = SimpleNamespace(spec=spec)
    case = Case("c", "random", {"x": np.zeros((1, 2), np.float32)})
    same = Localization("r", "agrees")
    y = np.array([[1.0, np.nan]], np.float32)
    _Context._check_outputs(ctx, same, case, {"y": y}, {"y": y.copy()})
    assert same.outputs_moved == 0.0 and same.notes == [] and "moved" not in same.summary()
    moved = Localization("r", "agrees")
    _Context._check_outputs(ctx, moved, case, {"y": y + np.float32(2 ** -20)}, {"y": y})  # 9.5e-07, exactly
    assert moved.outputs_moved == 2 ** -20
    assert moved.notes and "differ from the runtime's own by up to 9.54e-07 (y)" in moved.notes[0]
    assert "with the intermediates exposed its outputs moved by up to 9.5e-07" in moved.summary()
    missing = Localization("r", "agrees")
    _Context._check_outputs(ctx, missing, case, {}, {"y": y})
    assert missing.outputs_moved == math.inf


def test_rows_taken_from_a_large_case_are_a_case_of_their_own():
    """Localizing a user's million-row case runs its first MAX_ROWS rows; under the case's own name the
    verified case's outputs (a sum over a million rows) set the scale its tensors were held to, and a
    float32 rounding at one Gemm read as a divergence."""
    from tf_parity_export.verify.inputs import Case
    from tf_parity_export.verify.localize.localizer import MAX_ROWS, _rows

    big = Case("user:x.npz", "user", {"x": np.zeros((MAX_ROWS + 1, 3), np.float32)})
    small = Case("random_b7", "random", {"x": np.zeros((7, 3), np.float32)})
    taken = _rows(None, big)
    assert taken.name == f"user:x.npz (first {MAX_ROWS} rows)" and taken.feed["x"].shape == (MAX_ROWS, 3)
    assert _rows(None, small) is small
