"""Hand-built ONNX graphs with the exported models' shapes and weights: the speed floor.

The exported graph should be as fast as what a person would write by hand.
Floors are built for the feed-forward models (a chain of dense layers):
Gemm-Relu-Gemm and MatMul-Add-Relu-MatMul-Add style, with the same weights
read back from the exported ONNX file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def dense_layers(model: onnx.ModelProto) -> list[tuple[np.ndarray, np.ndarray | None, bool]]:
    """(kernel, bias or None, relu after) for each MatMul/Gemm in order, from an exported chain."""
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


def floor_graph(layers: list, op: str, in_dim: int, out_name: str, opset: int = 17) -> onnx.ModelProto:
    """A dense chain written by hand with `op` = "Gemm" or "MatMul" (MatMul adds an Add only for a bias)."""
    nodes, inits, current = [], [], "x"
    for i, (kernel, bias, relu) in enumerate(layers):
        inits.append(numpy_helper.from_array(kernel.astype(np.float32), f"W{i}"))
        out = f"h{i}"
        if op == "Gemm":
            b = bias if bias is not None else np.zeros(kernel.shape[1], np.float32)
            inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{i}"))
            nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [out]))
        else:
            nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [out]))
            if bias is not None:
                inits.append(numpy_helper.from_array(bias.astype(np.float32), f"b{i}"))
                nodes.append(helper.make_node("Add", [out, f"b{i}"], [out + "b"]))
                out += "b"
        if relu:
            nodes.append(helper.make_node("Relu", [out], [out + "r"]))
            out += "r"
        current = out
    nodes[-1].output[0] = out_name
    width = layers[-1][0].shape[1]
    graph = helper.make_graph(
        nodes, f"floor_{op}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_dim])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


def floors_for(onnx_path: Path) -> dict[str, onnx.ModelProto]:
    model = onnx.load(str(onnx_path))
    layers = dense_layers(model)
    in_dim = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    out_name = model.graph.output[0].name
    return {f"hand_{op.lower()}": floor_graph(layers, op, in_dim, out_name) for op in ("Gemm", "MatMul")}
