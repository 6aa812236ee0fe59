"""The lean-graph pass, the hand-built floors, and `--bench` (correctness only: speed is
measured by benchmarks/run.py, not asserted in tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from tf_parity_export.export.slim import _is_noop, drop_noop_reshapes, fold_constant_conditions, matmuls_to_gemm, slim
from tf_parity_export.verify import layout
from tf_parity_export.verify.cli import main as verify_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from floors import floors_for  # noqa: E402


@pytest.mark.parametrize("dims,target,noop", [
    (["batch", 20], [-1, 20], True),
    (["batch", 20], [0, 20], True),
    ([4, 20], [4, 20], True),
    (["batch", 20], [-1, 4, 5], False),
    (["batch", 20], [-1, 10], False),
    (["batch", 4, 5], [-1, 20], False),
    (["batch", "n"], [-1, 20], False),
])
def test_reshape_is_dropped_only_when_provably_a_no_op(dims, target, noop):
    assert _is_noop(dims, target) is noop


def _reshape_model(target: list[int], out_dims: list) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"]), helper.make_node("Relu", ["y"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 20])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, out_dims)],
        [numpy_helper.from_array(np.array(target, np.int64), "shape")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_drop_noop_reshape_rewires_and_keeps_meaningful_ones():
    noop = _reshape_model([-1, 20], ["batch", 20])
    assert slim(noop)["noop_reshape"] == 1
    assert [n.op_type for n in noop.graph.node] == ["Relu"] and list(noop.graph.node[0].input) == ["x"]
    assert not noop.graph.initializer
    kept = _reshape_model([-1, 4, 5], ["batch", 4, 5])
    assert drop_noop_reshapes(kept) == 0 and [n.op_type for n in kept.graph.node] == ["Reshape", "Relu"]


def test_matmul_and_bias_become_one_gemm_with_the_same_result():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(20, 7)).astype(np.float32), rng.normal(size=7).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 7])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.random((3, 20), dtype=np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert matmuls_to_gemm(model) == 1
    assert [(n.op_type, list(n.input)) for n in model.graph.node] == [("Gemm", ["x", "w", "b"])]
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0], before,
                               rtol=1e-6, atol=1e-6)


FANCY_TAIL = ["ReduceL2", "Greater", "Loop", "ReduceL2", "Less", "If", "ReduceSum"]


@pytest.mark.parametrize("name,ops", [
    ("mlp", ["Gemm", "Relu", "Gemm"]),
    ("sequential_mlp", ["Gemm", "Relu", "Gemm"]),
    ("nest_mlp", ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Relu"]),
    ("fancy_mlp", ["Gemm", "Relu", "Gemm", "Relu", *FANCY_TAIL]),
    ("chimera", ["Gemm", "Relu"] * 3 + ["Gemm"] + ["Gemm", "Relu", "Gemm", "Relu"] + FANCY_TAIL),
])
def test_exported_graphs_are_what_a_person_would_write(artifacts, name, ops):
    graph = onnx.load(str(artifacts / name / layout.ONNX)).graph
    assert [n.op_type for n in graph.node] == ops
    for loop in [n for n in graph.node if n.op_type == "Loop"]:
        assert [n.op_type for n in loop.attribute[0].g.node] == ["Mul", "ReduceL2", "Greater"]


@pytest.mark.parametrize("name", ["mlp", "nest_mlp", "fancy_mlp", "chimera"])
def test_hand_built_floors_compute_the_same_function(artifacts, name):
    path = artifacts / name / layout.ONNX
    x = {"x": np.random.default_rng(1).random((5, 20), dtype=np.float32)}
    want = ort.InferenceSession(str(path)).run(None, x)[0]
    floors = floors_for(path)
    assert sorted(floors) == ["hand_gemm", "hand_matmul"]
    for model in floors.values():
        np.testing.assert_allclose(ort.InferenceSession(model.SerializeToString()).run(None, x)[0], want,
                                   rtol=1e-5, atol=1e-5)


def _loop_model(trips: int, bound: float, opset: int = 17) -> onnx.ModelProto:
    """while (i < bound and ||y|| > 1) y = y / 2, at most `trips` times: tf2onnx's shape of a while loop."""
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         helper.make_node("Less", ["fi", "bound"], ["in_range"]),
         helper.make_node("Mul", ["y_in", "half"], ["y_out"]),
         helper.make_node("Mul", ["y_out", "y_out"], ["sq"]),
         helper.make_node("ReduceSum", ["sq", "axes"], ["ss"], keepdims=1),
         helper.make_node("Sqrt", ["ss"], ["norm2"]),
         helper.make_node("Squeeze", ["norm2"], ["norm"]),
         helper.make_node("Greater", ["norm", "one"], ["big"]),
         helper.make_node("And", ["in_range", "big"], ["go_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("go_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_in", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("go_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_out", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(np.array(bound, np.float32), "bound")])
    graph = helper.make_graph(
        [helper.make_node("Less", ["zero", "bound_outer"], ["ok"]),
         helper.make_node("And", ["ok", "start"], ["go"]),
         helper.make_node("Loop", ["trips", "go", "y"], ["out"], body=body)],
        "g",
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("start", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(np.array(trips, np.int64), "trips"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
         numpy_helper.from_array(np.array(float(trips), np.float32), "bound_outer"),
         numpy_helper.from_array(np.array(0.5, np.float32), "half"),
         numpy_helper.from_array(np.array(1.0, np.float32), "one"),
         numpy_helper.from_array(np.array([0, 1], np.int64), "axes")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, y: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"y": y, "start": np.array(True)})[0]


@pytest.mark.parametrize("opset", [17, 18])
def test_loop_rewrites_keep_the_function(opset):
    model = _loop_model(trips=1000, bound=1000.0, opset=opset)
    inputs = [np.full((2, 3), v, np.float32) for v in (0.1, 3.0, 1e6)]
    before = [_run(model, y) for y in inputs]
    counts = slim(model)
    assert counts["constant_condition"] == 2  # Less(0, 1000) folded, then And(True, start)
    assert counts["trip_count_test"] == 1 and counts["l2_norm"] == 1
    onnx.checker.check_model(model, full_check=True)
    body = model.graph.node[0].attribute[0].g
    assert [n.op_type for n in model.graph.node] == ["Loop"]
    assert [n.op_type for n in body.node] == ["Mul", "ReduceL2", "Greater"]
    for y, want in zip(inputs, before):
        np.testing.assert_array_equal(_run(model, y), want)


def test_a_trip_test_tighter_than_the_trip_count_is_kept():
    model = _loop_model(trips=1000, bound=3.0)  # the body stops after 3 halvings: not redundant
    before = _run(model, np.full((2, 3), 1e6, np.float32))
    assert slim(model)["trip_count_test"] == 0
    np.testing.assert_array_equal(_run(model, np.full((2, 3), 1e6, np.float32)), before)


def test_constant_folding_leaves_run_time_conditions():
    model = _loop_model(trips=10, bound=10.0)
    graph = model.graph
    assert fold_constant_conditions(graph) == 2
    assert [n.op_type for n in graph.node] == ["Loop"] and graph.node[0].input[1] == "start"


def test_bench_reports_latency_and_speedup(artifacts, tmp_path):
    result = CliRunner().invoke(verify_main, ["mlp", "fancy_mlp", "--bench", "--artifacts", str(artifacts),
                                              "--providers", "ort_cpu,ort_cuda", "--json", str(tmp_path / "b.json")])
    lines = result.output.splitlines()
    assert lines[0].split() == ["model", "runtime", "b1", "ms", "b64", "ms", "b1", "vs", "eager", "b64", "vs", "eager"]
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["batches"] == [1, 64] and "CPUs" in data["machine"]
    for model in ("mlp", "fancy_mlp"):
        rows = data["models"][model]
        assert list(rows) == ["tf_eager", "ort_cpu", "ort_cuda"]
        assert rows["tf_eager"]["speedup_1"] == 1.0
        assert rows["ort_cpu"]["batch_64_ms"] > 0 and rows["ort_cpu"]["speedup_1"] > 0
        assert "unavailable" in rows["ort_cuda"] or rows["ort_cuda"]["batch_1_ms"] > 0
    # ort_cuda was named: where it is unavailable the run says FAILED and exits 1 (the --providers contract)
    missing = "unavailable" in data["models"]["mlp"]["ort_cuda"]
    assert result.exit_code == (1 if missing else 0), result.output
    assert ("FAILED: mlp/ort_cuda: unavailable" in result.output) == missing
