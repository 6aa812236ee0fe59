"""Hand-built ONNX graphs with the exported models' shapes and weights: the speed floor.

The exported graph should be as fast as what a person would write by hand.
Each floor is written directly with onnx.helper, with the weights read back
from the exported file, in two styles: dense layers as `Gemm`, or as `MatMul`
(+ `Add` for a bias). For FancyMLP's tail (`fancy_mlp`, `chimera`) the floor
writes the norm as one `ReduceL2`, the halving as a `Loop` and the scaling as
an `If`, the way a person would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MAX_ITERATIONS = 1000  # as models/fancy_mlp.py


def dense_layers(model: onnx.ModelProto) -> list[tuple[np.ndarray, np.ndarray | None, bool]]:
    """(kernel, bias or None, relu after) for each MatMul/Gemm of the main graph, in order."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    layers: list[list] = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            kernel = inits[node.input[1]]
            bias = inits[node.input[2]] if node.op_type == "Gemm" and len(node.input) > 2 else None
            layers.append([kernel, bias, False])
        elif node.op_type == "Add" and layers and node.input[1] in inits:
            layers[-1][1] = inits[node.input[1]]
        elif node.op_type == "Relu" and layers:
            layers[-1][2] = True
    return [tuple(layer) for layer in layers]


def _dense_chain(layers: list, op: str, nodes: list, inits: list) -> str:
    current = "x"
    for i, (kernel, bias, relu) in enumerate(layers):
        inits.append(numpy_helper.from_array(kernel.astype(np.float32), f"W{i}"))
        out = f"h{i}"
        if op == "Gemm":
            b = bias if bias is not None else np.zeros(kernel.shape[1], np.float32)
            inits.append(numpy_helper.from_array(np.asarray(b, np.float32), f"b{i}"))
            nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [out]))
        else:
            nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [out]))
            if bias is not None:
                inits.append(numpy_helper.from_array(np.asarray(bias, np.float32), f"b{i}"))
                nodes.append(helper.make_node("Add", [out, f"b{i}"], [out + "b"]))
                out += "b"
        if relu:
            nodes.append(helper.make_node("Relu", [out], [out + "r"]))
            out += "r"
        current = out
    return current


def _fancy_tail(h: str, nodes: list, inits: list) -> str:
    """while ||h|| > 1: h = h / 2;  if ||h|| < 0.8: h = h * 10;  return sum(h)."""
    scalar = lambda name, value, dtype=np.float32: inits.append(numpy_helper.from_array(np.array(value, dtype), name))  # noqa: E731
    scalar("one", 1.0), scalar("low", 0.8), scalar("half", 0.5), scalar("ten", 10.0)
    scalar("trips", MAX_ITERATIONS, np.int64)
    nodes += [helper.make_node("ReduceL2", [h], ["n0"], keepdims=0),
              helper.make_node("Greater", ["n0", "one"], ["go"])]
    body = helper.make_graph(
        [helper.make_node("Mul", ["y_in", "half"], ["y_out"]),
         helper.make_node("ReduceL2", ["y_out"], ["n"], keepdims=0),
         helper.make_node("Greater", ["n", "one"], ["go_out"])],
        "halve",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("go_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("go_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_out", TensorProto.FLOAT, None)])
    nodes.append(helper.make_node("Loop", ["trips", "go", h], ["halved"], body=body))
    scaled = helper.make_graph([helper.make_node("Mul", ["halved", "ten"], ["s"])], "scale", [],
                               [helper.make_tensor_value_info("s", TensorProto.FLOAT, None)])
    kept = helper.make_graph([helper.make_node("Identity", ["halved"], ["k"])], "keep", [],
                             [helper.make_tensor_value_info("k", TensorProto.FLOAT, None)])
    nodes += [helper.make_node("ReduceL2", ["halved"], ["n1"], keepdims=0),
              helper.make_node("Less", ["n1", "low"], ["small"]),
              helper.make_node("If", ["small"], ["branched"], then_branch=scaled, else_branch=kept),
              helper.make_node("ReduceSum", ["branched"], ["total_sum"], keepdims=0)]
    return "total_sum"


def floor_graph(model: onnx.ModelProto, op: str, opset: int = 17) -> onnx.ModelProto:
    """The exported model written by hand, dense layers as `op` ("Gemm" or "MatMul")."""
    nodes: list = []
    inits: list = []
    out = _dense_chain(dense_layers(model), op, nodes, inits)
    if any(n.op_type == "Loop" for n in model.graph.node):
        out = _fancy_tail(out, nodes, inits)
    name = model.graph.output[0].name
    nodes[-1].output[0] = name
    graph = helper.make_graph(nodes, f"floor_{op}", [model.graph.input[0]], [model.graph.output[0]], inits)
    floor = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(floor, full_check=True)
    return floor


def floors_for(onnx_path: Path) -> dict[str, onnx.ModelProto]:
    model = onnx.load(str(onnx_path))
    return {f"hand_{op.lower()}": floor_graph(model, op) for op in ("Gemm", "MatMul")}
