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

from export.slim import _is_noop, drop_noop_reshapes, matmuls_to_gemm
from verify import layout
from verify.cli import main as verify_main

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
    assert drop_noop_reshapes(noop) == 1
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


@pytest.mark.parametrize("name,ops", [
    ("mlp", ["Gemm", "Relu", "Gemm"]),
    ("sequential_mlp", ["Gemm", "Relu", "Gemm"]),
    ("nest_mlp", ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Relu"]),
])
def test_exported_feed_forward_graphs_are_what_a_person_would_write(artifacts, name, ops):
    assert [n.op_type for n in onnx.load(str(artifacts / name / layout.ONNX)).graph.node] == ops


@pytest.mark.parametrize("name", ["mlp", "nest_mlp"])
def test_hand_built_floors_compute_the_same_function(artifacts, name):
    path = artifacts / name / layout.ONNX
    x = {"x": np.random.default_rng(1).random((5, 20), dtype=np.float32)}
    want = ort.InferenceSession(str(path)).run(None, x)[0]
    floors = floors_for(path)
    assert sorted(floors) == ["hand_gemm", "hand_matmul"]
    for model in floors.values():
        np.testing.assert_allclose(ort.InferenceSession(model.SerializeToString()).run(None, x)[0], want,
                                   rtol=1e-5, atol=1e-5)


def test_bench_reports_latency_and_speedup(artifacts, tmp_path):
    result = CliRunner().invoke(verify_main, ["mlp", "fancy_mlp", "--bench", "--artifacts", str(artifacts),
                                              "--providers", "ort_cpu,ort_cuda", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
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
