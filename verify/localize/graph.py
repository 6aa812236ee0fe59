"""ONNX graph surgery for localization: intermediates as outputs, one node as its own model, a repro folder.

Only the main graph's tensors are exposed: a `Loop` or `If` is compared as a
whole (its outputs), since a body's tensors exist once per iteration or only
on the branch taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Produced:
    """A tensor of the main graph, and the node (by position in graph order) that computes it."""

    index: int
    node: str
    op: str
    tensor: str


def produced(model: Any) -> list[Produced]:
    """Every tensor the main graph's nodes compute, in graph order."""
    return [Produced(i, node.name or f"{node.op_type}_{i}", node.op_type, out)
            for i, node in enumerate(model.graph.node) for out in node.output if out]


def elem_types(model: Any) -> dict[str, int]:
    """ONNX element type of every main-graph tensor shape inference can type."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    return {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}


def with_outputs(model: Any, names: list[str], types: dict[str, int]) -> Any:
    """A copy of `model` that also returns the named tensors (after its own outputs, which keep their order)."""
    from onnx import helper

    copy = type(model)()
    copy.CopyFrom(model)
    have = {o.name for o in copy.graph.output}
    copy.graph.output.extend(helper.make_tensor_value_info(n, types[n], None) for n in names if n not in have)
    return copy


def _subgraphs(node: Any) -> list[Any]:
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else list(a.graphs))]


def _reads(node: Any) -> list[str]:
    """Every name a node reads: its inputs and what its subgraphs take from outside them, in order."""
    reads = [i for i in node.input if i]
    for g in _subgraphs(node):
        inner = {v.name for v in [*g.input, *g.initializer]} | {o for n in g.node for o in n.output}
        reads += [name for n in g.node for name in _reads(n) if name not in inner]
    return list(dict.fromkeys(reads))


def minimal_model(model: Any, index: int, output: str, known: Mapping[str, np.ndarray], types: dict[str, int],
                  shape: tuple[int, ...] | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """The smallest model that computes `output` (of `shape`, when given) of node `index` from values we have.

    Walks back from the node: a tensor in `known` (a graph input, or an
    intermediate matched to TensorFlow, with the reference's value) becomes an
    input of the small model; an initializer comes along; any other tensor
    (one tf2onnx made, with no TF counterpart, e.g. a layout Transpose or a
    shape computation) brings the node that computes it, and so on.

    Returns:
        The model (same opsets), and its feed: input name -> value.
    """
    from onnx import helper

    graph = model.graph
    producer = {out: i for i, n in enumerate(graph.node) for out in n.output if out}
    inits = {t.name: t for t in graph.initializer}
    take, feed, used_inits, todo = {index}, {}, {}, [index]
    while todo:
        for name in _reads(graph.node[todo.pop()]):
            if name in known:
                feed[name] = known[name]
            elif name in inits:
                used_inits[name] = inits[name]
            elif name in producer and producer[name] not in take:
                take.add(producer[name])
                todo.append(producer[name])
    nodes = [graph.node[i] for i in sorted(take)]
    made = {o for n in nodes for o in n.output}
    feed = {k: v for k, v in feed.items() if k not in made}
    inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), list(np.shape(v)))
              for k, v in feed.items()]
    target = graph.node[index]
    small = helper.make_graph(nodes, f"{graph.name}_{target.name}", inputs,
                              [helper.make_tensor_value_info(output, types[output], shape)],
                              initializer=[type(t).FromString(t.SerializeToString()) for t in used_inits.values()])
    out = helper.make_model(small, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                            producer_name="tf-parity-export localize")
    return out, {k: np.asarray(v) for k, v in feed.items()}


def write_test_set(folder: Path, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    """`folder/test_data_set_0/input_i.pb`, `output_i.pb`: the ONNX test data convention."""
    from onnx import numpy_helper

    target = folder / "test_data_set_0"
    target.mkdir(parents=True)
    for kind, values in (("input", inputs), ("output", outputs)):
        for i, (name, value) in enumerate(values.items()):
            tensor = numpy_helper.from_array(np.asarray(value), name)
            (target / f"{kind}_{i}.pb").write_bytes(tensor.SerializeToString())
