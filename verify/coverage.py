"""Control-flow coverage measured on the exported ONNX graph, for any model.

Random inputs usually take one path through a data-dependent loop or
branch, so which path each case took is *measured*, in onnxruntime, on an
instrumented copy of `model.onnx`:

- every `If` node (at any depth) logs its condition each time it runs:
  1 = then branch, 0 = else branch;
- every `Loop` node logs how many times its body ran, each time it runs
  (a loop-carried counter added to its body);
- where a condition is a comparison (`Greater`, `Less`, ...), the relative
  distance of its two operands is logged too: an input whose operands are
  within `BOUNDARY_MARGIN` of each other may go the other way in another
  runtime, and is reported as a boundary case rather than counted; and the
  signed distance (a score, > 0 where the test held), which steers the search.

Facts inside a subgraph are carried out to the main graph: a `Loop` body
appends its nested logs to loop-carried accumulators (one entry per
iteration), an `If` branch outputs the logs of its own nodes and an empty
log for those of the other branch. Every log becomes an extra graph output.
The instrumented copy computes the same outputs as the original; only the
extra outputs are new.

`find_covering_inputs` searches, without any model-specific probe, for
inputs that take every branch and loop count: inputs along fixed directions
at magnitudes from 1e-6 to 1e6, both signs, with finer steps between two
magnitudes whose paths differ; then gradient steps on the scores of the
comparisons deciding a missing path (the gradient estimated from pairs of
runs); then finer steps between found inputs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from tf_parity_export.models import ArtifactError, ModelSpec

from .deadline import DeadlineExceeded, ort_run
from .inputs import BOUNDARY_MARGIN  # relative operand distance below which a case is a boundary case
# Loop iteration-count classes every data-dependent loop must show.
LOOP_CLASSES = ("0", "1", "many")
_COMPARISONS = {"Greater", "Less", "GreaterOrEqual", "LessOrEqual"}  # Equal has no "near"
_PREFIX = "__cov"


@dataclass(frozen=True)
class Site:
    """One control-flow node of the graph.

    `path` is where it sits: "" for the main graph, else the enclosing nodes
    and branches, e.g. "Loop_6.body/If_9.then".
    """

    node: str
    op: str  # "If" or "Loop"
    path: str
    static: bool = False  # a Loop whose trip count does not depend on the input

    @property
    def label(self) -> str:
        return f"{self.path}/{self.node}" if self.path else self.node

    def targets(self) -> list[str]:
        """The outcomes coverage requires of this node."""
        if self.op == "If":
            return ["then", "else"]
        return [] if self.static else list(LOOP_CLASSES)

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "path": self.path, "static": self.static}


@dataclass
class GraphPath:
    """What one case did at every control-flow node: the If outcomes
    (then/else counts) and the Loop trip counts, per execution of the node."""

    branches: dict[str, dict[str, int]] = field(default_factory=dict)  # If label -> {"then": n, "else": n}
    trips: dict[str, list[int]] = field(default_factory=dict)  # Loop label -> trip count per execution
    margin: float = float("inf")  # smallest relative operand distance over every comparison tested
    # label -> {"enter_score": [...], "score": [...]}: each test's relative signed distance, > 0 where it held
    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # Loop label -> per execution, True where the loop stopped at its trip-count limit M with its
    # condition still true: the loop did not end on its own (a loop-cap case, never a pass)
    capped_runs: dict[str, list[bool]] = field(default_factory=dict)

    @property
    def capped(self) -> list[str]:
        """The loops that ran into their trip-count limit."""
        return [label for label, runs in self.capped_runs.items() if any(runs)]

    def hits(self, site: Site) -> set[str]:
        """The targets of `site` this case reached (a loop stopped by its cap reached none)."""
        if site.op == "If":
            return {k for k, n in self.branches.get(site.label, {}).items() if n}
        capped = self.capped_runs.get(site.label, [])
        return {_loop_class(n) for i, n in enumerate(self.trips.get(site.label, []))
                if not (i < len(capped) and capped[i])}

    def to_json(self) -> dict[str, Any]:
        data = {"branches": self.branches, "trips": self.trips,
                "margin": None if np.isinf(self.margin) else float(self.margin), "source": "onnx graph"}
        return {**data, "capped": True, "capped_loops": self.capped} if self.capped else data


def _loop_class(trips: int) -> str:
    return "0" if trips == 0 else "1" if trips == 1 else "many"


# ---------------------------------------------------------------- instrumentation


@dataclass
class _Log:
    key: tuple[int, str, int]  # (site index, "events" | "margin", unique id)
    value: str  # the tensor holding it, in the current graph
    dtype: int  # onnx.TensorProto element type


class _Instrumenter:
    def __init__(self) -> None:
        self.sites: list[Site] = []
        self.counter = itertools.count()

    def fresh(self, what: str) -> str:
        return f"{_PREFIX}_{next(self.counter)}_{what}"

    def log(self, site: int, kind: str, value: str, dtype: int) -> _Log:
        return _Log((site, kind, next(self.counter)), value, dtype)

    def graph(self, graph: Any, path: str, outer_fixed: set[str]) -> list[_Log]:
        """Instrument `graph` in place; returns the logs of every site in or below it.

        `outer_fixed`: the names visible from the enclosing graphs whose values no input can change.
        """
        from onnx import TensorProto, helper

        consts = _fixed(graph, outer_fixed)
        producers = {o: n for n in graph.node for o in n.output}
        logs: list[_Log] = []
        new_nodes: list[Any] = []
        for node in list(graph.node):
            before: list[Any] = []
            after: list[Any] = []
            name = node.name or f"{node.op_type}_{len(new_nodes)}"
            here = f"{path}/{name}" if path else name
            if node.op_type == "If":
                index = len(self.sites)
                self.sites.append(Site(name, "If", path))
                then_g = _attr_graph(node, "then_branch")
                else_g = _attr_graph(node, "else_branch")
                then_logs = self.graph(then_g, f"{here}.then", consts)
                else_logs = self.graph(else_g, f"{here}.else", consts)
                for log in self._merge_branches(then_g, then_logs, else_g, else_logs):
                    out = self.fresh("if_out")
                    node.output.append(out)
                    logs.append(_Log(log.key, out, log.dtype))
                events = self.fresh("cond")
                after.append(helper.make_node("Cast", [node.input[0]], [events + "_c"], to=TensorProto.INT64))
                after.append(self._reshape1(events + "_c", events, after))
                logs.append(self.log(index, "events", events, TensorProto.INT64))
                logs += self._comparison(index, "", node.input[0], producers, after, consts)
            elif node.op_type == "Loop":
                index = len(self.sites)
                body = _attr_graph(node, "body")
                inner = _body_fixed(node, body, consts)
                static = _is_static_loop(node, body, consts)
                self.sites.append(Site(name, "Loop", path, static))
                # the iteration number is the same in every case only where the loop always runs alike
                body_logs = self.graph(body, f"{here}.body", inner if static else consts)
                body_nodes: list[Any] = []
                # the test after each iteration, and the one before the first
                body_logs += self._comparison(index, "", body.output[0].name,
                                              {o: n for n in body.node for o in n.output}, body_nodes, inner)
                body.node.extend(body_nodes)
                if len(node.input) > 1 and node.input[1]:
                    logs += self._comparison(index, "enter_", node.input[1], producers, before, consts)
                carried = len(node.input) - 2
                # the trip counter: a loop-carried int64 scalar, + 1 per iteration
                zero, one, count_in, count_out, count = (self.fresh(s) for s in ("zero", "one", "n_in", "n_out", "n"))
                before.append(helper.make_node("Constant", [], [zero],
                                               value=helper.make_tensor(zero, TensorProto.INT64, [], [0])))
                body.node.extend([
                    helper.make_node("Constant", [], [one], value=helper.make_tensor(one, TensorProto.INT64, [], [1])),
                    helper.make_node("Add", [count_in, one], [count_out]),
                ])
                new_in = [helper.make_tensor_value_info(count_in, TensorProto.INT64, [])]
                new_out = [helper.make_tensor_value_info(count_out, TensorProto.INT64, [])]
                inits, finals = [zero], [count]
                # the condition as the loop ended (carried out of the body; the entry condition if it
                # never ran) and the trip-count limit M: a loop that ran M times with its condition
                # still true was stopped by its cap, not by its condition
                cond_in, cond_out, last_cond, entry = (self.fresh(s) for s in ("c_in", "c_out", "c_last", "c_entry"))
                if len(node.input) > 1 and node.input[1]:
                    before.append(helper.make_node("Identity", [node.input[1]], [entry]))
                else:
                    before.append(helper.make_node("Constant", [], [entry],
                                                   value=helper.make_tensor(entry, TensorProto.BOOL, [], [True])))
                body.node.append(helper.make_node("Identity", [body.output[0].name], [cond_out]))
                new_in.append(helper.make_tensor_value_info(cond_in, TensorProto.BOOL, []))
                new_out.append(helper.make_tensor_value_info(cond_out, TensorProto.BOOL, []))
                inits.append(entry)
                finals.append(last_cond)
                final_log = self.fresh("final")
                after.append(helper.make_node("Cast", [last_cond], [final_log + "_c"], to=TensorProto.INT64))
                after.append(self._reshape1(final_log + "_c", final_log, after))
                logs.append(self.log(index, "final", final_log, TensorProto.INT64))
                if node.input[0]:
                    limit = self.fresh("limit")
                    before.append(helper.make_node("Cast", [node.input[0]], [limit + "_c"], to=TensorProto.INT64))
                    before.append(self._reshape1(limit + "_c", limit, before))
                    logs.append(self.log(index, "limit", limit, TensorProto.INT64))
                # nested logs: accumulators that start empty and append each iteration's log
                for log in body_logs:
                    empty, acc_in, acc_out, final = (self.fresh(s) for s in ("empty", "acc_in", "acc_out", "acc"))
                    before.append(_empty(empty, log.dtype))
                    body.node.append(helper.make_node("Concat", [acc_in, log.value], [acc_out], axis=0))
                    new_in.append(helper.make_tensor_value_info(acc_in, log.dtype, None))
                    new_out.append(helper.make_tensor_value_info(acc_out, log.dtype, None))
                    inits.append(empty)
                    finals.append(final)
                    logs.append(_Log(log.key, final, log.dtype))
                body.input.extend(new_in)
                outputs = list(body.output)
                body.ClearField("output")
                body.output.extend(outputs[: 1 + carried] + new_out + outputs[1 + carried:])
                node.input.extend(inits)
                outs = list(node.output)
                node.ClearField("output")
                node.output.extend(outs[:carried] + finals + outs[carried:])
                events = self.fresh("trips")
                after.append(self._reshape1(count, events, after))
                logs.append(self.log(index, "events", events, TensorProto.INT64))
            new_nodes += [*before, node, *after]
        graph.ClearField("node")
        graph.node.extend(new_nodes)
        return logs

    def _merge_branches(self, then_g: Any, then_logs: list[_Log], else_g: Any, else_logs: list[_Log]) -> list[_Log]:
        """Both branches output every log of either; the one without a node outputs an empty log."""
        from onnx import helper

        merged = []
        for log in then_logs + else_logs:
            for g, own in ((then_g, then_logs), (else_g, else_logs)):
                mine = next((lg for lg in own if lg.key == log.key), None)
                value = mine.value if mine else self.fresh("none")
                if mine is None:
                    g.node.append(_empty(value, log.dtype))
                out = self.fresh("br")
                g.node.append(helper.make_node("Identity", [value], [out]))
                g.output.append(helper.make_tensor_value_info(out, log.dtype, None))
            merged.append(log)
        return merged

    def _reshape1(self, value: str, out: str, nodes: list[Any]) -> Any:
        from onnx import TensorProto, helper

        shape = self.fresh("shape1")
        nodes.append(helper.make_node("Constant", [], [shape], value=helper.make_tensor(shape, TensorProto.INT64, [1], [1])))
        return helper.make_node("Reshape", [value, shape], [out])

    def _comparison(self, index: int, prefix: str, cond: str, producers: dict[str, Any], nodes: list[Any],
                    fixed: set[str] = frozenset()) -> list[_Log]:
        """For a condition `a <op> b`: its margin, min |a - b| / max(|a|, |b|), and its
        score, positive exactly when the condition holds (a - b for Greater, b - a
        for Less), as [1] double logs. The score steers the search for inputs.

        A test of values no input can change (`fixed`: a step counter against a
        sequence length) is left alone: it reaching its bound is no decision boundary.
        """
        from onnx import TensorProto, helper

        node = producers.get(cond)
        if node is None or node.op_type not in _COMPARISONS or all(i in fixed for i in node.input):
            return []
        a, b, diff, absd, aa, ab, tiny, scale, rel, low, margin, signed, lowest, score = (self.fresh(s) for s in (
            "a", "b", "d", "ad", "aa", "ab", "tiny", "s", "r", "m", "margin", "sd", "sm", "score"))
        greater = node.op_type.startswith("Greater")
        nodes.extend([
            helper.make_node("Cast", [node.input[0]], [a], to=TensorProto.DOUBLE),
            helper.make_node("Cast", [node.input[1]], [b], to=TensorProto.DOUBLE),
            helper.make_node("Sub", [a, b] if greater else [b, a], [diff]),
            helper.make_node("Abs", [diff], [absd]),
            helper.make_node("Abs", [a], [aa]),
            helper.make_node("Abs", [b], [ab]),
            helper.make_node("Constant", [], [tiny], value=helper.make_tensor(tiny, TensorProto.DOUBLE, [], [1e-30])),
            helper.make_node("Max", [aa, ab, tiny], [scale]),
            helper.make_node("Div", [absd, scale], [rel]),
            helper.make_node("ReduceMin", [rel], [low], keepdims=0),
            helper.make_node("Div", [diff, scale], [signed]),
            helper.make_node("ReduceMin", [signed], [lowest], keepdims=0),
        ])
        nodes.append(self._reshape1(low, margin, nodes))
        nodes.append(self._reshape1(lowest, score, nodes))
        return [self.log(index, "margin", margin, TensorProto.DOUBLE),
                self.log(index, prefix + "score", score, TensorProto.DOUBLE)]


def _attr_graph(node: Any, name: str) -> Any:
    return next(a.g for a in node.attribute if a.name == name)


def _empty(name: str, dtype: int) -> Any:
    from onnx import helper

    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dtype, [0], []))


def _fixed(graph: Any, outer: set[str]) -> set[str]:
    """The names in `graph` whose values no input value can change: `outer` (fixed names of the
    enclosing graphs), initializers, constants, the shape of a main-graph input (the signature
    fixes every dimension but the batch) and whatever is computed from those alone."""
    fixed = set(outer) | {i.name for i in graph.initializer}
    inputs = {v.name for v in graph.input}
    for node in graph.node:  # graphs list their nodes in topological order
        shape_of_input = node.op_type in ("Shape", "Size") and node.input[0] in inputs and not outer
        if node.op_type == "Constant" or shape_of_input or (
                all(i in fixed for i in node.input if i) and _outer_reads(node) <= fixed):
            fixed |= {o for o in node.output if o}
    return fixed


def _outer_reads(node: Any) -> set[str]:
    """The names a Loop's or If's subgraphs read from the graphs around them."""
    reads: set[str] = set()
    for attr in node.attribute:
        for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
            local = {v.name for v in [*g.input, *g.initializer]} | {o for n in g.node for o in n.output}
            reads |= ({i for n in g.node for i in n.input if i} | {r for n in g.node for r in _outer_reads(n)}) - local
    return reads


def _body_fixed(node: Any, body: Any, outer: set[str]) -> set[str]:
    """The names in a Loop body whose values no input can change: the iteration number, and each
    loop-carried value (the condition included) that starts fixed and stays fixed from one
    iteration to the next (a step counter), found as a fixed point."""
    carried = [(b.name, init, out.name) for b, init, out in zip(body.input[2:], node.input[2:], body.output[1:])]
    assumed = {b for b, init, _ in carried if init in outer}
    cond = not (len(node.input) > 1 and node.input[1]) or node.input[1] in outer
    while True:
        known = set(outer) | {body.input[0].name} | assumed | ({body.input[1].name} if cond else set())
        fixed = _fixed(body, known)
        kept = {b for b, _, out in carried if b in assumed and out in fixed}
        kept_cond = cond and body.output[0].name in fixed
        if kept == assumed and kept_cond == cond:
            return fixed
        assumed, cond = kept, kept_cond


def _is_static_loop(node: Any, body: Any, outer: set[str]) -> bool:
    """A Loop whose trip count no input can change: its limit M, its entry condition and its
    body's condition are all fixed (`outer`: the fixed names around it), as in a `for` loop over
    a fixed range or an RNN over a sequence of fixed length (a step counter against the length)."""
    trip_fixed = not node.input[0] or node.input[0] in outer
    entry_fixed = not (len(node.input) > 1 and node.input[1]) or node.input[1] in outer
    return trip_fixed and entry_fixed and body.output[0].name in _body_fixed(node, body, outer)


def instrument(model: Any) -> tuple[Any, list[Site], list[tuple[int, str, str]]]:
    """An instrumented copy of `model` (an onnx.ModelProto).

    Returns:
        The copy, its control-flow sites, and the extra outputs as
        (site index, "events" | "margin", output name).
    """
    from onnx import helper

    copy = type(model)()
    copy.CopyFrom(model)
    inst = _Instrumenter()
    logs = inst.graph(copy.graph, "", set())
    extra = []
    for log in logs:
        copy.graph.output.append(helper.make_tensor_value_info(log.value, log.dtype, None))
        extra.append((log.key[0], log.key[1], log.value))
    return copy, inst.sites, extra


# ---------------------------------------------------------------- measurement


class GraphCoverage:
    """Runs cases through the instrumented graph in onnxruntime (CPU)."""

    def __init__(self, onnx_path: Path, name: str = "") -> None:
        import onnx
        import onnxruntime as ort

        try:
            model = onnx.load(str(onnx_path))
        except Exception as e:  # DecodeError and friends
            raise ArtifactError(f"{name}: {Path(onnx_path).name} cannot be parsed ({type(e).__name__})") from None
        copy, self.sites, self.extra = instrument(model)
        self.outputs = [o.name for o in model.graph.output]
        from .runtimes.onnxruntime import session_options

        self.session = ort.InferenceSession(copy.SerializeToString(), session_options(),
                                            providers=["CPUExecutionProvider"])
        self.fetch = [name for _, _, name in self.extra]

    def trace(self, feed: dict[str, np.ndarray]) -> GraphPath:
        """The path one case (one batch) takes through every control-flow node."""
        values = ort_run(self.session, self.fetch, feed, "its control-flow trace in onnxruntime") if self.fetch else []
        path = GraphPath()
        ends: dict[tuple[str, str], list[int]] = {}  # (Loop label, "limit" | "final") -> one value per execution
        for (index, kind, _), value in zip(self.extra, values, strict=True):
            site = self.sites[index]
            value = np.asarray(value).reshape(-1)
            if kind == "margin":
                if value.size:
                    path.margin = min(path.margin, float(value.min()))
            elif kind.endswith("score"):
                path.scores.setdefault(site.label, {}).setdefault(kind, []).extend(float(v) for v in value)
            elif kind in ("limit", "final"):
                ends.setdefault((site.label, kind), []).extend(int(v) for v in value)
            elif site.op == "If":
                counts = path.branches.setdefault(site.label, {"then": 0, "else": 0})
                counts["then"] += int((value != 0).sum())
                counts["else"] += int((value == 0).sum())
            else:
                path.trips.setdefault(site.label, []).extend(int(v) for v in value)
        for site in self.sites:  # a node that never ran (inside an untaken branch) still shows
            if site.op == "If":
                path.branches.setdefault(site.label, {"then": 0, "else": 0})
                continue
            trips = path.trips.setdefault(site.label, [])
            limits, finals = ends.get((site.label, "limit")), ends.get((site.label, "final"), [])
            if limits is not None and trips:
                path.capped_runs[site.label] = [n >= m and bool(f) for n, m, f in zip(trips, limits, finals)]
        return path


def has_control_flow(onnx_path: Path) -> bool:
    """True when the graph has an If or a Loop (at any depth)."""
    import onnx

    def walk(graph: Any) -> bool:
        return any(n.op_type in ("If", "Loop") or any(walk(a.g) for a in n.attribute if a.HasField("g"))
                   for n in graph.node)

    return walk(onnx.load(str(onnx_path), load_external_data=False).graph)


def requirements(sites: Iterable[Site]) -> list[tuple[Site, str]]:
    """Every (site, target) the coverage must show."""
    return [(s, t) for s in sites for t in s.targets()]


def requirement_name(site: Site, target: str) -> str:
    """How a coverage requirement is named in reports: node, path and outcome."""
    what = {"then": "took then", "else": "took else", "0": "ran 0 times", "1": "ran once",
            "many": "ran 2+ times"}[target]
    return f"{site.op} {site.label} {what}"


def coverage_of(sites: list[Site], paths: dict[str, GraphPath]) -> dict[str, list[str]]:
    """Requirement name -> the (non-boundary) cases that reach it."""
    return {requirement_name(s, t): [case for case, p in paths.items() if t in p.hits(s)]
            for s, t in requirements(sites)}


def table(sites: list[Site], cases: list[tuple[str, GraphPath, bool]]) -> list[str]:
    """Cases x control-flow nodes: 'then'/'else' (with counts where a node ran
    more than once) and loop trip counts; boundary cases are marked."""

    def cell(site: Site, path: GraphPath) -> str:
        if site.op == "If":
            c = path.branches.get(site.label, {})
            parts = [f"{k}" if c.get(k) == 1 else f"{k}x{c.get(k)}" for k in ("then", "else") if c.get(k)]
            return "+".join(parts) or "-"
        trips = path.trips.get(site.label, [])
        return ",".join(map(str, trips[:4])) + (",..." if len(trips) > 4 else "") if trips else "-"

    header = ["case", *(f"{s.op} {s.label}" for s in sites)]
    rows = [[name + (" (boundary)" if boundary else ""), *(cell(s, p) for s in sites)] for name, p, boundary in cases]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def report_lines(m: Any) -> list[str]:
    """The generic coverage of one verified model (a verifier.ModelReport), for the printed report."""
    if not m.graph_sites:
        return []
    boundary = {c["name"] for c in m.cases if c["kind"] == "boundary"}
    rows = [(name, path, name in boundary) for name, path in m.graph_paths.items()]
    lines = [f"{m.model} control flow, measured in onnxruntime on model.onnx (If: branch taken; Loop: iterations):",
             *("  " + line for line in table(m.graph_sites, rows))]
    counted = {name: path for name, path, b in rows if not b}
    generic = coverage_of(m.graph_sites, counted)
    if set(generic) != set(m.coverage):  # a model with a probe: show the generic verdict beside the probe's
        lines.append(f"{m.model} graph coverage: " + ", ".join(
            f"{need} ({len(hits)})" if hits else f"{need} (MISSING)" for need, hits in generic.items()))
    return lines


# ---------------------------------------------------------------- search


def _directions(spec: ModelSpec, rng: np.random.Generator, count: int) -> list[dict[str, np.ndarray]]:
    """Unit-scale float inputs to be scaled: random normal, uniform [0, 1) and constant, both signs;
    integer inputs (ids) a random draw from their range, which scaling leaves alone."""
    from .inputs import random_values

    dirs = []
    for i in range(count):
        feed = {}
        for t in spec.inputs:
            shape = (1, *(1 if d is None else d for d in t.shape[1:]))
            if t.integer:
                feed[t.name] = random_values(rng, t, shape)
                continue
            kind = i % 4
            x = (rng.normal(size=shape) if kind < 2 else rng.random(shape) if kind == 2 else np.ones(shape))
            feed[t.name] = x * (-1 if i % 2 else 1)
        dirs.append(feed)
    return dirs


def _scaled(direction: dict[str, np.ndarray], t: float, floats: set[str]) -> dict[str, np.ndarray]:
    """`direction` with its float inputs multiplied by `t` (integer inputs are ids: kept)."""
    return {k: v * t if k in floats else v for k, v in direction.items()}


def _objective(path: GraphPath, site: Site, target: str) -> float:
    """How far `path` is from reaching `target` at `site`: lower is closer, and <= 0
    roughly where it is reached. Built from the logged comparison scores (> 0
    where a test held); inf where the node did not run or has no comparison."""
    scores = path.scores.get(site.label, {})
    tests = scores.get("score", [])
    if site.op == "If":
        return (-max(tests) if target == "then" else min(tests)) if tests else np.inf
    enter = scores.get("enter_score", [])
    if not enter:
        return np.inf
    if target == "0":
        return enter[0]
    if target == "1":
        return max(-enter[0], tests[0]) if tests else -enter[0]
    return -min(enter[0], tests[0]) if tests else -enter[0]


class _Search:
    """The bookkeeping of one search: every run updates, per target, the best
    covering input (farthest from a decision boundary) and the closest miss."""

    def __init__(self, spec: ModelSpec, cov: GraphCoverage, needs: list[tuple[Site, str]], budget: int) -> None:
        self.spec, self.cov, self.needs, self.budget = spec, cov, needs, budget
        self.dtypes = {t.name: np.dtype(t.dtype) for t in spec.inputs}
        self.floats = {t.name for t in spec.inputs if not t.integer}
        # integer inputs stay within their declared range (an id beyond an Embedding's table is no input)
        self.bounds = {t.name: t.range for t in spec.inputs if t.integer and t.range is not None}
        self.best: dict[tuple[str, str], tuple[float, dict[str, np.ndarray]]] = {}
        self.closest: dict[tuple[str, str], tuple[float, dict[str, np.ndarray]]] = {}
        self.done: set[tuple[str, str]] = set()  # reached by cases the verifier runs anyway
        self.runs = 0
        self.stopped = ""  # why the search stopped early

    def missing(self) -> list[tuple[Site, str]]:
        return [(s, t) for s, t in self.needs if (s.label, t) not in self.best and (s.label, t) not in self.done]

    def over(self) -> bool:
        return self.runs >= self.budget or not self.missing()

    def run(self, feed: dict[str, np.ndarray]) -> GraphPath | None:
        feed = {k: self._cast(k, v) for k, v in feed.items()}
        if not all(np.isfinite(v).all() for v in feed.values()):
            return None
        self.runs += 1
        try:
            path = self.cov.trace(feed)
        except DeadlineExceeded as e:  # a loop that never ends on this input: stop searching, or each costs a deadline
            self.stopped, self.budget = str(e), self.runs
            return None
        except Exception:  # an input the graph cannot run is no candidate
            return None
        for site, target in self.needs:
            key = (site.label, target)
            # a case that drives a loop into its cap is reported apart by the verifier: it covers nothing
            if target in path.hits(site) and path.margin >= BOUNDARY_MARGIN and not path.capped:
                score = min(path.margin, 1.0)
                if key not in self.best or score > self.best[key][0] + 1e-12:
                    self.best[key] = (score, feed)
            objective = _objective(path, site, target)
            if np.isfinite(objective) and (key not in self.closest or objective < self.closest[key][0]):
                self.closest[key] = (objective, feed)
        return path

    def _cast(self, name: str, value: Any) -> np.ndarray:
        value = np.asarray(value)
        if name in self.bounds:
            low, high = self.bounds[name]
            value = np.clip(np.rint(value), low, high - 1)
        return value.astype(self.dtypes[name])

    def signature(self, path: GraphPath | None) -> Any:
        return None if path is None else tuple((s.label, tuple(sorted(path.hits(s)))) for s in self.cov.sites)

    def refine(self, point: Any, intervals: list[tuple[tuple[float, Any], tuple[float, Any]]], levels: int = 4) -> None:
        """Between neighbouring parameters whose paths differ at a node with a
        target still missing, try a finer grid, `levels` deep."""
        for _ in range(levels):
            if self.over():
                return
            wanted = {s.label for s, _ in self.missing()}
            finer = []
            for (a, pa), (b, pb) in intervals:
                if pa is not None and pb is not None and not any(
                        x != y for (label, x), (_, y) in zip(pa, pb) if label in wanted):
                    continue
                grid = np.geomspace(a, b, 10) if a > 0 and b > 0 else np.linspace(a, b, 10)
                sub = [(t, self.signature(self.run(point(t)))) for t in grid[1:-1]]
                points = [(a, pa), *sub, (b, pb)]
                finer += [(x, y) for x, y in zip(points, points[1:]) if x[1] != y[1]]
            intervals = finer

    def descend(self, site: Site, target: str, rng: np.random.Generator, steps: int = 800) -> None:
        """Gradient steps on the target's comparison scores, the gradient estimated
        from two runs per step (simultaneous perturbation: no gradients of the graph needed)."""
        key = (site.label, target)
        if key not in self.closest:
            return
        fixed = {k: v for k, v in self.closest[key][1].items() if k not in self.floats}  # ids are not descended
        x = {k: v.astype(np.float64) for k, v in self.closest[key][1].items() if k in self.floats}
        if not x:
            return
        scale = {k: float(np.sqrt(np.mean(v * v))) or 1.0 for k, v in x.items()}
        m = {k: np.zeros_like(v) for k, v in x.items()}
        v2 = {k: np.zeros_like(v) for k, v in x.items()}
        for step in range(1, steps + 1):
            if self.runs >= self.budget or (key in self.best and self.best[key][0] >= 0.01):
                return  # reached, and not just barely (a margin of 1% from the boundary)
            delta = {k: rng.choice([-1.0, 1.0], size=v.shape) for k, v in x.items()}
            c = {k: 0.01 * scale[k] for k in x}
            ends = []
            for sign in (1, -1):
                path = self.run({**fixed, **{k: x[k] + sign * c[k] * delta[k] for k in x}})
                ends.append(_objective(path, site, target) if path is not None else np.inf)
            if not np.all(np.isfinite(ends)):
                return
            for k in x:
                g = (ends[0] - ends[1]) / (2 * c[k]) * delta[k]
                m[k] = 0.9 * m[k] + 0.1 * g
                v2[k] = 0.999 * v2[k] + 0.001 * g * g
                mh, vh = m[k] / (1 - 0.9**step), v2[k] / (1 - 0.999**step)
                x[k] = x[k] - 0.1 * scale[k] * mh / (np.sqrt(vh) + 1e-12)
            self.run({**fixed, **x})


def find_covering_inputs(spec: ModelSpec, onnx_path: Path, covered: Iterable[dict[str, np.ndarray]] = (),
                         seed: int = 1234, budget: int = 6000) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Search inputs that take every branch and loop count, measured in the graph (no probe needed).

    1. Magnitudes: along fixed directions (random normal, uniform, constant;
       both signs) the input is scaled from 1e-6 to 1e6; where neighbouring
       magnitudes take different paths, a finer grid between them follows.
    2. Descent: for a path still missing, gradient steps from the closest
       miss on the scores of the comparisons that decide it (how far the
       compared values are from flipping the test), the gradient estimated
       from pairs of runs.
    3. Segments: between inputs found so far that take different paths, a
       finer grid again (a loop count between two others lies between them).

    For each target the input farthest from any decision boundary is kept.

    Args:
        covered: inputs the verifier runs anyway (the random cases): targets
            they reach need no case of their own.

    Returns:
        {case name: feed} (one batch-1 input per target reached), and the
        requirement names (node, path, outcome) no input reached.
    """
    cov = GraphCoverage(onnx_path, spec.name)
    needs = requirements(cov.sites)
    if not needs:
        return {}, []
    search = _Search(spec, cov, needs, budget)
    for feed in covered:
        try:
            path = cov.trace(feed)
        except DeadlineExceeded:  # the verifier reports this case apart
            continue
        if path.margin >= BOUNDARY_MARGIN and not path.capped:
            search.done |= {(s.label, t) for s, t in needs if t in path.hits(s)}
    rng = np.random.default_rng(seed)

    if not search.floats:  # integer inputs only: nothing to scale or descend, draw from their ranges
        for direction in _directions(spec, rng, 256):
            if search.over():
                break
            search.run(direction)
    for direction in _directions(spec, rng, 16) if search.floats else []:  # 1. magnitudes
        if search.over() or search.runs > budget // 2:  # leave the rest to the descent
            break
        point = lambda t, d=direction: _scaled(d, t, search.floats)  # noqa: E731
        row = [(t, search.signature(search.run(point(t)))) for t in 10.0 ** np.arange(-6, 6.25, 0.25)]
        search.refine(point, [(a, b) for a, b in zip(row, row[1:]) if a[1] != b[1]])
    for site, target in search.missing():  # 2. descent
        search.descend(site, target, rng)
    found = [f for _, f in search.best.values()]
    for i, j in itertools.combinations(range(len(found)), 2):  # 3. segments
        if search.over():
            break
        a, b = found[i], found[j]
        point = lambda t, a=a, b=b: {k: a[k] + t * (b[k] - a[k]) if k in search.floats else a[k]  # noqa: E731
                                     for k in a}
        search.refine(point, [((0.0, search.signature(search.run(a))), (1.0, search.signature(search.run(b))))])

    cases: dict[str, dict[str, np.ndarray]] = {}
    for site, target in needs:  # one case per distinct input, named after the first target it covers
        feed = search.best.get((site.label, target), (0, None))[1]
        if feed is not None and (site.label, target) not in search.done and not any(f is feed for f in cases.values()):
            cases[f"cover_{site.node}_{target}"] = feed
    why = f" (search stopped: {search.stopped})" if search.stopped else ""
    return cases, [requirement_name(s, t) + why for s, t in search.missing()]
