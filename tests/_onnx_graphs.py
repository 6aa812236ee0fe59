"""Small ONNX graphs written by hand, for tests of the runtimes themselves (not of the exporter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def halving_loop(path: Path) -> Path:
    """y = x halved while max|x| > 1, with no trip-count cap: it never ends on an infinite x."""
    body = helper.make_graph(
        [helper.make_node("Div", ["h", "two"], ["h2"]),
         helper.make_node("Abs", ["h2"], ["a"]),
         helper.make_node("ReduceMax", ["a"], ["m"], keepdims=0),
         helper.make_node("Greater", ["m", "one"], ["c_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h2", TensorProto.FLOAT, None)],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    graph = helper.make_graph(
        [helper.make_node("Abs", ["x"], ["ax"]),
         helper.make_node("ReduceMax", ["ax"], ["mx"], keepdims=0),
         helper.make_node("Greater", ["mx", "one"], ["go"]),
         helper.make_node("Loop", ["", "go", "x"], ["y"], body=body)],
        "halving", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    return _save(graph, path)


# input name -> (ONNX type, numpy dtype, an example batch); each output is computed in its input's type
TYPED = {
    "i32": (TensorProto.INT32, np.int32, np.array([[1, -2, 2**30]], np.int32)),
    "i64": (TensorProto.INT64, np.int64, np.array([[3, -(2**40), 2**62]], np.int64)),
    "b": (TensorProto.BOOL, np.bool_, np.array([[True, False, True]])),
    "f16": (TensorProto.FLOAT16, np.float16, np.array([[0.5, -65504, 1e-4]], np.float16)),
    "f64": (TensorProto.DOUBLE, np.float64, np.array([[1 / 3, -1e300, 2.0**-1074]], np.float64)),
    "f32": (TensorProto.FLOAT, np.float32, np.array([[1 / 3, -7.75, 1e9]], np.float32)),  # cast exactly to int32
}


def typed(path: Path) -> Path:
    """One input and one output of each type in TYPED: int32/int64 doubled (Add), bool negated (Not),
    float16 kept (Identity), float64 halved, and float32 also cast to int32 (`f32_as_i32`)."""
    nodes, outputs = [], []
    for name, (kind, _, _) in TYPED.items():
        if kind == TensorProto.BOOL:
            nodes.append(helper.make_node("Not", [name], [f"{name}_out"]))
        elif kind == TensorProto.FLOAT16:
            nodes.append(helper.make_node("Identity", [name], [f"{name}_out"]))
        elif kind == TensorProto.DOUBLE:
            nodes.append(helper.make_node("Mul", [name, "half"], [f"{name}_out"]))
        else:
            nodes.append(helper.make_node("Add", [name, name], [f"{name}_out"]))
        outputs.append(helper.make_tensor_value_info(f"{name}_out", kind, ["batch", 3]))
    nodes.append(helper.make_node("Cast", ["f32"], ["f32_as_i32"], to=TensorProto.INT32))
    outputs.append(helper.make_tensor_value_info("f32_as_i32", TensorProto.INT32, ["batch", 3]))
    graph = helper.make_graph(
        nodes, "typed", [helper.make_tensor_value_info(n, k, ["batch", 3]) for n, (k, _, _) in TYPED.items()],
        outputs, [helper.make_tensor("half", TensorProto.DOUBLE, [], [0.5])])
    return _save(graph, path)


def typed_feed() -> dict[str, np.ndarray]:
    return {name: example for name, (_, _, example) in TYPED.items()}
