"""ONNX export through tf2onnx's public API, then small canonicalising fixes."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from tf_parity_export.models import ModelSpec, UserError
from tf_parity_export.models.lazy_tf import import_tensorflow, quiet_stderr

from .memory import give_back
from .slim import slim

DEFAULT_OPSET = 17
BATCH = "batch"


def supported_opsets() -> list[int]:
    import_tensorflow()  # first: tf2onnx imports TensorFlow noisily otherwise
    from tf2onnx.constants import OPSET_TO_IR_VERSION

    return [v for v in sorted(OPSET_TO_IR_VERSION) if v >= 13]


def check_opset(opset: int) -> None:
    """Refuse an opset tf2onnx cannot convert to, naming the ones it can."""
    import_tensorflow()
    import tf2onnx

    if opset not in supported_opsets():
        raise UserError(f"opset {opset} is not supported; tf2onnx {tf2onnx.__version__} "
                        f"converts opsets {supported_opsets()[0]}..{supported_opsets()[-1]}")


def export_onnx(fn: Any, spec: ModelSpec, path: Path, opset: int = DEFAULT_OPSET) -> Any:
    """Convert the serving `tf.function` to ONNX and write it to `path`.

    Converting the same `tf.function` the SavedModel serves keeps both
    artifacts one function. The graph is frozen by
    `verify.tf_graph.freeze_serving_function` (captured constants stay
    constants, not inputs) and converted by tf2onnx's own conversion step,
    the one its `from_function` and its command line share. The input names
    come from the signature and the output names from the function's dict
    keys; tf2onnx names the dynamic batch dimension `unk__N`, which we
    rename to "batch". The graph is then made valid where tf2onnx is not
    (`Erfc`), slimmed (export/slim.py) and canonicalised for stable bytes.

    Returns:
        The `onnx.ModelProto` written.
    """
    import onnx

    from tf_parity_export.verify.tf_graph import freeze_serving_function

    check_opset(opset)  # imports TensorFlow first, quietly
    tf = import_tensorflow()
    # tf2onnx has no public call that converts a frozen graph without freezing and optimising it
    # again (`from_graph_def` does both a second time); `_convert_common` is the step its
    # `from_function` and its command line both end with (tf2onnx is pinned below 1.18).
    from tf2onnx.convert import _convert_common

    # tf2onnx logs an ERROR for each TF op it cannot convert (and for Erfc, replaced below) and carries
    # on; the checker then refuses the graph naming the op, which is the one line the export reports.
    logging.getLogger("tf2onnx").setLevel(logging.CRITICAL)
    frozen = freeze_serving_function(fn, spec)
    give_back()

    def convert(catch_errors: bool) -> Any:
        with quiet_stderr(), tf.device("/cpu:0"), _environ(TF2ONNX_CATCH_ERRORS=str(catch_errors).upper()):
            return _convert_common(frozen.graph_def, name=spec.name, continue_on_error=True, opset=opset,
                                   input_names=frozen.inputs, output_names=frozen.outputs,
                                   tensors_to_rename=frozen.renames)[0]

    # By default tf2onnx runs each of its optimizers on a deep copy of the whole graph, so that one
    # that fails can be skipped: on ResNet50 that took 15 s and 5.3 GiB of copies (weights included).
    # Without the copies: 7 s and 2.3 GiB; only if an optimizer then fails is it converted tf2onnx's way.
    try:
        model = convert(catch_errors=False)
    except Exception:
        give_back()
        model = convert(catch_errors=True)
    del frozen
    give_back()
    _order_outputs(model, spec)
    _name_batch_dims(model, spec)
    replace_erfc(model.graph)
    slim(model)
    canonicalize(model, spec.name)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the block (tf2onnx reads its switches from the environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def replace_erfc(graph: Any) -> int:
    """Write every `Erfc(x)` as `Sub(1, Erf(x))`, at any depth; returns how many.

    tf2onnx converts TensorFlow's `Erfc` (exact gelu: 0.5 x erfc(-x / sqrt 2))
    to an ONNX `Erfc` node, but no ONNX opset has one, so the file is invalid.
    `1 - erf(x)` is the same function; it loses erfc's relative accuracy only
    where erfc(x) is tiny (x > 3), where gelu multiplies it by x / 2 and the
    absolute error stays within float32's rounding of 1.
    """
    from onnx import TensorProto, helper

    count = 0
    nodes = []
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                count += replace_erfc(sub)
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        count += 1
        erf, one = f"{node.output[0]}__erf", f"{node.output[0]}__one"
        nodes += [
            helper.make_node("Erf", [node.input[0]], [erf], name=f"{node.name}__erf"),
            helper.make_node("Constant", [], [one], name=f"{node.name}__one",
                             value=helper.make_tensor(one, TensorProto.FLOAT, [], [1.0])),
            helper.make_node("Sub", [one, erf], [node.output[0]], name=node.name),
        ]
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def _order_outputs(model: Any, spec: ModelSpec) -> None:
    """List the graph's outputs in the spec's order: TensorFlow flattens the serving function's
    dict of outputs in key order, so ("value", "class_probs") came out the other way round."""
    order = {t.name: i for i, t in enumerate(spec.outputs)}
    outputs = sorted(model.graph.output, key=lambda v: order.get(v.name, len(order)))
    copies = [type(v).FromString(v.SerializeToString()) for v in outputs]
    del model.graph.output[:]
    model.graph.output.extend(copies)


def _name_batch_dims(model: Any, spec: ModelSpec) -> None:
    """Give every dynamic batch dimension the same readable name."""
    graph = model.graph
    renames = {}
    for values, sigs in ((graph.input, spec.inputs), (graph.output, spec.outputs)):
        for value, sig in zip(values, sigs, strict=True):
            for dim, want in zip(value.type.tensor_type.shape.dim, sig.shape):
                if want is None and dim.dim_param:
                    renames[dim.dim_param] = BATCH
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def canonicalize(model: Any, graph_name: str) -> None:
    """Make the bytes depend on the graph alone, not on process history.

    tf2onnx names nodes, tensors and unknown dimensions after per-process
    counters (`while_cond_1081`, `const_fold_opt__84`, `unk__229`) and may
    list initializers in a different order each run, so one model exported
    twice gives different files. Every node becomes `<OpType>_<i>`, every
    internal tensor `t<i>` and every unnamed dimension `d<i>`, numbered in
    graph order (subgraphs included); initializers are sorted by first use.
    The signature's input/output names and "batch" stay. Doc strings, which
    carry TensorFlow names, are dropped.
    """
    from onnx import AttributeProto

    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}
    dims: dict[str, str] = {BATCH: BATCH}
    count = iter(range(1 << 62))

    def tensor(name: str) -> str:
        if name and name not in keep and name not in names:
            names[name] = f"t{len(names)}"
        return names.get(name, name)

    def value(v: Any) -> None:
        v.name = tensor(v.name)
        for dim in v.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = dims.setdefault(dim.dim_param, f"d{len(dims) - 1}")

    def walk(g: Any, name: str) -> None:
        g.name, g.doc_string = name, ""
        for v in g.input:
            value(v)
        for node in g.node:
            node.name, node.doc_string = f"{node.op_type}_{next(count)}", ""
            node.input[:] = [tensor(i) for i in node.input]
            for attr in node.attribute:
                if attr.type == AttributeProto.GRAPH:
                    walk(attr.g, f"{node.name}_{attr.name}")
                for j, sub in enumerate(attr.graphs):
                    walk(sub, f"{node.name}_{attr.name}_{j}")
            node.output[:] = [tensor(o) for o in node.output]
        for v in [*g.output, *g.value_info]:
            value(v)
        for init in g.initializer:
            init.name = tensor(init.name)
        ordered = sorted((type(i).FromString(i.SerializeToString()) for i in g.initializer),
                         key=lambda i: int(i.name[1:]) if i.name.startswith("t") and i.name[1:].isdigit() else -1)
        del g.initializer[:]
        g.initializer.extend(ordered)

    _sort_nodes(graph, {v.name: f"input:{v.name}" for v in graph.input})
    walk(graph, graph_name)
    model.doc_string = ""


def _sort_nodes(graph: Any, outer: dict[str, str]) -> str:
    """Reorder nodes topologically, breaking ties by content, not by name.

    tf2onnx's order follows its counter-laden names. Each node gets a hash of
    its op, attributes and the hashes of what feeds it (initializers by
    content, graph inputs by position), and among the nodes ready to run
    the smallest hash goes first. Subgraphs are sorted the same way and
    hashed into their node. Returns the graph's own hash.
    """
    import hashlib
    import heapq

    from onnx import AttributeProto

    def digest(*parts: str) -> str:
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    known = dict(outer)
    for i, v in enumerate(graph.input):
        known[v.name] = f"arg:{i}"
    for init in graph.initializer:
        body = type(init)()
        body.CopyFrom(init)
        body.name = ""
        known[init.name] = digest("init", body.SerializeToString(deterministic=True).hex())

    def node_hash(node: Any) -> str:
        attrs = []
        for attr in sorted(node.attribute, key=lambda a: a.name):
            if attr.type == AttributeProto.GRAPH:
                attrs.append(f"{attr.name}={_sort_nodes(attr.g, known)}")
            else:
                attrs.append(f"{attr.name}={attr.SerializeToString(deterministic=True).hex()}")
        return digest(node.domain, node.op_type, *attrs, *(known.get(i, f"?{i}") for i in node.input))

    nodes = list(graph.node)
    produced = {o: k for k, n in enumerate(nodes) for o in n.output if o}
    deps = [{produced[i] for i in _reads(n) if i in produced} for n in nodes]
    waiting = [len(d) for d in deps]
    users: dict[int, list[int]] = {}
    for k, d in enumerate(deps):
        for p in d:
            users.setdefault(p, []).append(k)
    ready = [(node_hash(n), k) for k, n in enumerate(nodes) if not waiting[k]]
    heapq.heapify(ready)
    order = []
    while ready:
        h, k = heapq.heappop(ready)
        order.append(k)
        for j, out in enumerate(nodes[k].output):
            known[out] = digest(h, str(j))
        for u in users.get(k, []):
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready, (node_hash(nodes[u]), u))
    if len(order) != len(nodes):
        raise ValueError(f"graph {graph.name!r} has a cycle; cannot order its nodes")
    copies = [type(nodes[k]).FromString(nodes[k].SerializeToString()) for k in order]
    del graph.node[:]
    graph.node.extend(copies)
    return digest("graph", *(known.get(o.name, f"?{o.name}") for o in graph.output))


def _reads(node: Any) -> set[str]:
    """Every name a node reads: its inputs and what its subgraphs take from outside."""
    reads = {i for i in node.input if i}
    for attr in node.attribute:
        for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
            inner = {v.name for v in [*g.input, *g.initializer]} | {o for n in g.node for o in n.output}
            reads |= {i for n in g.node for i in _reads(n)} - inner
    return reads
