"""onnx's own reference evaluator (`onnx.reference`): a second, independent ONNX implementation."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

from tf_parity_export.models import ArtifactError

from ..layout import ONNX
from .base import FnRuntime, Subject, to_numpy


def _names_used(node: Any) -> Iterator[str]:
    """Every tensor name a node reads: its inputs and, for Loop/If, whatever its subgraphs read."""
    yield from node.input
    for attr in node.attribute:
        for graph in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for sub in graph.node:
                yield from _names_used(sub)


def lean_run(evaluator: Any, feed: dict[str, Any]) -> list[Any]:
    """`evaluator.run(None, feed)` for the main graph, dropping each intermediate
    after its last reader.

    The evaluator keeps every intermediate of a run until it ends: a million
    rows through chimera's 64-wide layers would hold about 2 GB at once.
    Nodes run exactly as `ReferenceEvaluator.run` runs them (subgraphs get
    the live results as their context); only the bookkeeping differs.
    """
    outputs = list(evaluator.output_names)
    nodes = evaluator.rt_nodes_
    last: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in _names_used(node.onnx_node):
            last[name] = i
    free_after: dict[int, list[str]] = {}
    for name, i in last.items():
        if name not in outputs and name not in evaluator.rt_inits_:
            free_after.setdefault(i, []).append(name)
    results: dict[str, Any] = {"": None, **evaluator.rt_inits_, **feed}
    with np.errstate(all="ignore"):  # overflow to inf is a finding for the comparison, not a warning
        for i, node in enumerate(nodes):
            _run_node(node, results, free_after.get(i, ()))
    return [results[name] for name in outputs]


def _run_node(node: Any, results: dict[str, Any], free: Iterable[str]) -> None:
    inputs = [results[name] for name in node.input]
    if node.need_context():
        produced = node.run(*inputs, context=results, bindings=None)
    else:
        produced = node.run(*inputs)
    del inputs
    results.update(zip(node.output, produced, strict=False))
    for name in free:
        results.pop(name, None)


def _stacking_loop() -> type:
    """onnx's reference `Loop`, with its scan outputs stacked along a new first axis.

    onnx 1.23's Loop joins the per-iteration values of a scan output with
    `np.vstack`, which stacks 1-D values but concatenates 2-D and larger ones
    along their own first axis: a Keras GRU unrolled by tf2onnx into a Loop
    emits a [batch, units] value per time step, and the evaluator returned
    [steps * batch, units] where ONNX Runtime, OpenVINO and the spec's
    pseudocode give [steps, batch, units]. Each value gets its new axis before
    `np.vstack` sees it (and a scalar's extra axis is dropped after).
    """
    from onnx.reference.ops.op_loop import Loop as ReferenceLoop

    class Loop(ReferenceLoop):  # the class name is the op type it replaces
        op_domain = ""

        def __init__(self, onnx_node: Any, run_params: dict[str, Any]) -> None:
            super().__init__(onnx_node, run_params)
            run_body, self._scalar_scans = self._run_body, set()

            def stacked(*args: Any, **kwargs: Any) -> list[Any]:
                outputs = list(run_body(*args, **kwargs))
                for k in range(len(outputs) - self.K, len(outputs)) if self.K else ():
                    if np.ndim(outputs[k]) == 0:
                        self._scalar_scans.add(k - (len(outputs) - self.K))
                    outputs[k] = np.expand_dims(outputs[k], 0)
                return outputs

            self._run_body = stacked

        def _run(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
            results = list(super()._run(*args, **kwargs))
            for k in self._scalar_scans:  # vstack made [steps, 1] of the [1]-shaped scalars
                results[self.N + k] = results[self.N + k].reshape(-1)
            return tuple(results)

    return Loop


def load(subject: Subject) -> FnRuntime:
    import onnx
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(onnx.load(str(subject.folder / ONNX)), new_ops=[_stacking_loop()])
    except Exception as e:  # onnx raises DecodeError and others for bad files
        raise ArtifactError(f"{subject.spec.name}: {ONNX} cannot be parsed ({type(e).__name__})") from None
    outputs = list(evaluator.output_names)
    return FnRuntime("onnx_reference", lambda feed: to_numpy(dict(zip(outputs, lean_run(evaluator, feed), strict=True))))
