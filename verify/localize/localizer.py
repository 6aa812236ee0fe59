"""Where a runtime departs from TensorFlow: the error along the graph, the first divergence, a repro.

For one model and one runtime:

1. the cases: those the runtime got wrong (worst first, at most `MAX_CASES`),
   or, asked on demand for a runtime that agrees, every counted case;
2. the reference: TF's stored values when the stored case (`test_data_set_0`)
   is among them (fast, and what a machine without TensorFlow has), else the
   serving function frozen again here (`reference.py`);
3. the runtime's intermediates: `model.onnx` with every main-graph tensor
   added as an output, loaded by the runtime's own loader (`verify/runtimes`);
   LiteRT's preserved tensors (`litert.py`); the final outputs are checked
   against the same runtime without the extra outputs (exposing tensors can
   change what a runtime fuses), and a difference is said;
4. every tensor paired with TF's (`match.py`) and measured against the
   model's tolerance scaled to that tensor, one case at a time (each case's
   intermediates are dropped before the next);
5. the first divergence: in graph order, the first tensor beyond its
   tolerance; it is *born* there if its node, run alone in the same runtime
   on TF's own values of its inputs, is still beyond it, else *inherited*
   (then the later divergent nodes are tried, and the first that is off by
   itself is where the error is born);
6. for the node where it is born, a repro folder: the smallest ONNX model
   holding it and `test_data_set_0` (TF's inputs and expected output), which
   onnxruntime or OpenVINO reproduce without this project.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tf_parity_export.models import UserError

from .. import layout
from ..compare import summed_rtol
from ..inputs import Case
from ..runtimes import RUNTIMES, Subject, Unavailable
from ..runtimes.onnxruntime import LOADERS as ORT_LOADERS
from ..runtimes.openvino import LOADERS as OPENVINO_LOADERS
from . import graph as onnx_graph
from .artifact import Sources, read_sources, read_stored
from .match import Layout, TensorError, best_match, scale, scaled_atol, tensor_error
from .reference import LiveReference, StoredReference

# Runtimes that run model.onnx (their loaders read `subject.folder / model.onnx`), and the one that runs model.tflite.
ONNX_RUNTIMES = frozenset({*ORT_LOADERS, *OPENVINO_LOADERS, "onnx_reference", "ort_node", "ort_web"})
LITERT = "litert"
MAX_CASES = 3  # cases a localization runs (the worst ones): each costs a reference and a runtime run
MAX_ROWS = 256  # rows of a case localized live: a user's million-row batch is localized on its first 256
MAX_BORN_TESTS = 8  # nodes run alone when the first divergence is inherited
FLOAT = 1  # onnx.TensorProto.FLOAT: the float32 tensors are compared (Node and the browser carry float32)
OFF = ("failed", "measured", "error")  # case statuses of a runtime outside the tolerance


@dataclass
class Point:
    """One compared tensor on the error curve (its worst case)."""

    index: int  # the node's position in graph order (the curve's x)
    node: str
    op: str
    tensor: str
    tf: str
    ratio: float  # worst element's error / its scaled tolerance; > 1 is outside
    max_abs: float
    rel: float
    cosine: float
    atol: float
    case: str
    layout: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Localization:
    """What localizing one runtime found; `state`: "diverges", "agrees", "unsupported: ...",
    "unavailable: ..." or "error: ..."."""

    runtime: str
    state: str
    reference: str = ""
    cases: list[str] = field(default_factory=list)
    nodes: int = 0
    points: list[Point] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    first: dict[str, Any] | None = None
    born_at: dict[str, Any] | None = None
    repro: str | None = None
    outputs_moved: float | None = None  # how far the outputs moved when the intermediates were exposed (0: not at all)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """What was found, in one line (the text output prefixes the model and runtime)."""
        if self.state not in ("diverges", "agrees"):
            return f"localization {self.state}"
        compared = f"{len(self.points)} tensors compared, {len(self.unmatched)} unmatched"
        if self.first is None:
            text = f"no divergence ({compared}; cases {', '.join(self.cases)})"
        else:
            f = self.first
            text = f"first diverges at {f['node']} ({f['op']})"
            if f["born"] is True:
                text += ", born there"
            elif f["born"] is False:
                b = self.born_at
                text += ", inherited" + (f"; born at {b['node']} ({b['op']})" if b else
                                         "; no node is off by itself on TF's inputs (accumulated rounding)")
            else:
                text += f", {f.get('born_note') or 'born or inherited not tested'}"
            if self.repro:
                text += f"; repro: {self.repro}"
        if self.outputs_moved:
            text += f"; with the intermediates exposed its outputs moved by up to {self.outputs_moved:.2g}"
        return text

    def line(self, model: str) -> str:
        """`chimera/openvino_default: first diverges at Gemm_2 (Gemm), born there; repro: <path>`."""
        return f"{model}/{self.runtime}: {self.summary()}"

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "points"}
        data["points"] = [p.to_json() for p in self.points]
        data["summary"] = self.summary()
        return data


def runtimes_to_localize(runtimes: dict[str, str], results: list[Any], asked: list[str] | None) -> list[str]:
    """Every runtime that ran and was outside the tolerance on some case, and those `asked`
    (an empty list: every runtime that ran); in report order."""
    off = {r.runtime for r in results if r.status in OFF}
    chosen = [rt for rt, state in runtimes.items() if state == "ran" and rt in off]
    if asked is not None:
        chosen += [rt for rt, state in runtimes.items() if (rt in asked or (not asked and state == "ran"))
                   and rt not in chosen]
        chosen += [rt for rt in asked if rt not in runtimes]
    return chosen


def localize_model(report: Any, subject: Subject, cases: list[Case], expected: dict[str, dict[str, np.ndarray]],
                   asked: list[str] | None, repro_root: Path | None,
                   loaded: dict[str, Any] | None = None) -> dict[str, Localization]:
    """Localize every runtime `runtimes_to_localize` picks for one verified model.

    Args:
        report: the model's `ModelReport`, with its runtimes' results.
        subject: the spec, the checked folder, the reference Keras model (None without TensorFlow), the run's services.
        cases: the cases the verifier ran; `expected`: the reference outputs per case.
        asked: runtimes to localize even if they agree (None: only those outside the tolerance; []: all).
        repro_root: where repro folders go (`<root>/<model>/<runtime>/`); None: nowhere.
        loaded: the runtimes as the verifier loaded them (reloaded where missing).
    """
    chosen = runtimes_to_localize(report.runtimes, report.results, asked)
    if not chosen:
        return {}
    try:
        context = _Context(report, subject, cases, expected, repro_root, loaded or {})
    except UserError as e:  # a damaged tensor map or stored values: said per runtime; the verification stands
        return {rt: Localization(rt, f"error: {e}") for rt in chosen}
    try:
        return {rt: context.localize(rt) for rt in chosen}
    finally:
        context.close()


class _Context:
    """What the runtimes of one model share: the tensor map, the references, the ONNX graph."""

    def __init__(self, report: Any, subject: Subject, cases: list[Case], expected: dict[str, dict[str, np.ndarray]],
                 repro_root: Path | None, loaded: dict[str, Any]) -> None:
        self.report, self.subject, self.spec = report, subject, subject.spec
        self.cases, self.expected, self.repro_root, self.loaded = cases, expected, repro_root, loaded
        self._tmp: tempfile.TemporaryDirectory | None = None
        folder = subject.folder
        card = layout.read_card(folder, self.spec.name)  # checked by the verifier before anything ran
        self.sources: Sources | None = read_sources(folder, self.spec.name, card)
        stored = read_stored(folder, self.spec.name, self.sources, card) if self.sources else None
        self.stored = StoredReference(stored[0], stored[1], self.sources.stored["set"], self.sources.outputs) \
            if stored else None
        self._live: LiveReference | None = None
        self._onnx: Any = None

    def close(self) -> None:
        if self._live is not None:
            self._live.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def scratch(self, model: Any) -> Subject:
        """A subject whose folder holds `model` as model.onnx, for the runtimes' own loaders.

        Each model gets a folder of its own (Node and the browser keep a
        session per path); all are removed when this model is done."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tf-parity-localize-")
        folder = Path(self._tmp.name) / str(len(list(Path(self._tmp.name).iterdir())))
        folder.mkdir()
        _save(model, folder)
        return Subject(self.spec, folder, self.subject.model, self.subject.scope)

    def runtime(self, name: str) -> Any:
        """The runtime as the verifier loaded it (or loaded again)."""
        if name not in self.loaded:
            self.loaded[name] = RUNTIMES[name](self.subject)
        return self.loaded[name]

    # ------------------------------------------------------------------ choosing cases and reference

    def targets(self, runtime: str) -> list[Case]:
        """The runtime's cases outside the tolerance, worst first; all counted cases if none is."""
        apart = {c["name"] for c in self.report.cases if c["kind"] in ("boundary", "capped")}
        results = {r.case: r for r in self.report.results if r.runtime == runtime and r.case not in apart}
        by_name = {c.name: c for c in self.cases if c.name not in apart}

        def badness(name: str) -> float:
            r = results[name]
            return math.inf if r.status == "error" else max((_ratio(o) for o in r.outputs), default=0.0)

        off = sorted((n for n, r in results.items() if r.status in OFF and n in by_name), key=badness, reverse=True)
        return [by_name[n] for n in off] if off else [c for c in self.cases if c.name in by_name]

    def reference(self, targets: list[Case]) -> tuple[Any, list[Case], list[str]]:
        """The reference to compare against, the cases to run, and notes on the choice."""
        notes = []
        stored_case = next((c for c in targets if self.stored is not None and self.stored.covers(c)), None)
        if stored_case is not None:
            return self.stored, [stored_case], notes
        if self.subject.model is not None:
            if self._live is None:
                self._live = LiveReference(self.spec, self.subject.model)
            return self._live, [_rows(self.spec, c) for c in targets[:MAX_CASES]], notes
        if self.stored is not None:
            notes.append(f"the cases outside the tolerance ({', '.join(c.name for c in targets[:MAX_CASES])}) have "
                         f"no stored intermediates and TensorFlow is not installed: localized on "
                         f"{self.stored.case.name} (test_data_set_0) instead")
            return self.stored, [self.stored.case], notes
        return None, [], notes

    # ------------------------------------------------------------------ one runtime

    def localize(self, runtime: str) -> Localization:
        start = time.perf_counter()
        if runtime not in ONNX_RUNTIMES and runtime != LITERT:
            return Localization(runtime, "unsupported: a TensorFlow runtime runs no exported graph whose "
                                         "tensors could be exposed")
        if self.report.runtimes.get(runtime) != "ran":
            state = self.report.runtimes.get(runtime, "not asked for")
            return Localization(runtime, f"unavailable: the runtime did not run ({state})")
        if self.sources is None:
            return Localization(runtime, f"unavailable: {self.spec.name} was exported without {layout.TENSOR_SOURCES} "
                                         f"(re-export with `export-models {self.spec.name}`)")
        targets = self.targets(runtime)
        try:
            ref, cases, notes = self.reference(targets)
        except UserError as e:
            return Localization(runtime, f"error: {e}")
        if ref is None:
            return Localization(runtime, "unavailable: no stored intermediates and TensorFlow is not installed")
        result = Localization(runtime, "agrees", ref.source, [c.name for c in cases], notes=notes)
        try:
            if runtime == LITERT:
                from .litert import localize_litert

                localize_litert(self, result, ref, cases)
            else:
                self._localize_onnx(result, ref, cases)
        except (Unavailable, UserError) as e:
            result.state = f"error: {e}"
        result.seconds = round(time.perf_counter() - start, 3)
        return result

    @property
    def onnx(self) -> Any:
        if self._onnx is None:
            import onnx

            self._onnx = onnx.load(str(self.subject.folder / layout.ONNX))
            self.types = onnx_graph.elem_types(self._onnx)
            self.produced = onnx_graph.produced(self._onnx)
        return self._onnx

    def atol(self, runtime: str) -> float:
        """The atol the runtime was held to: the model's, or the one `--require RUNTIME:ATOL` gave it."""
        return (self.report.precision.get(runtime) or {}).get("atol") or self.spec.atol

    def tolerance(self, tensor: str, case: Case) -> float:
        """rtol for a tensor: the verifier's for an output that sums over the batch, else the spec's."""
        sig = next((t for t in self.spec.outputs if t.name == tensor), None)
        if sig is None or not sig.sums_per_row:
            return self.spec.rtol
        return summed_rtol(self.spec.rtol, int(next(iter(case.feed.values())).shape[0]) * sig.sums_per_row)

    def outputs_scale(self, case: Case, ref: Any, values: Mapping[str, np.ndarray]) -> float:
        """The scale of the reference's outputs on `case`: the verified outputs, or, for rows taken
        from a verified case (a case of their own), TensorFlow's outputs on those rows among `values`
        (never the verified case's: an output summed over a million rows is not these rows')."""
        if case.name in self.expected:
            return max((scale(np.asarray(v)) for v in self.expected[case.name].values()), default=0.0)
        names = [ref.outputs[t.name] for t in self.spec.outputs if ref.outputs.get(t.name) in values]
        return max((scale(np.asarray(values[n])) for n in names), default=0.0)

    def _localize_onnx(self, result: Localization, ref: Any, cases: list[Case]) -> None:
        model = self.onnx
        tensors = self.sources.tensors
        result.nodes = len(model.graph.node)
        candidates: dict[str, list[str]] = {}
        for p in self.produced:
            kind = self.types.get(p.tensor)
            found = [n for n in tensors.get(p.tensor, []) if n in ref.names]
            if kind != FLOAT:
                _unmatched(result, p, f"{_type_name(kind)} tensor: only float32 tensors are compared")
            elif p.tensor not in tensors:
                _unmatched(result, p, "made by tf2onnx: no TF tensor of its own")
            elif not found:
                _unmatched(result, p, f"TF tensor {tensors[p.tensor][0]!r} has no reference value (past the "
                                      "stored values' size cap)")
            else:
                candidates[p.tensor] = found
        exposed = onnx_graph.with_outputs(model, list(candidates), self.types)
        instrumented = RUNTIMES[result.runtime](self.scratch(exposed))
        pairs = self._compare_cases(result, ref, cases, instrumented, self.runtime(result.runtime), candidates)
        del instrumented, exposed  # one model's exposed copy in memory at a time
        self._finish(result, pairs, ref, cases)

    def _compare_cases(self, result: Localization, ref: Any, cases: list[Case], runtime: Any, plain: Any,
                       candidates: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
        """Run each case, compare every exposed tensor, keep each tensor's worst case; one case in memory at a time."""
        worst: dict[str, dict[str, Any]] = {}
        by_tensor = {p.tensor: p for p in self.produced}
        missing: set[str] = set()
        for case in cases:
            values, got, out_scale = self.run_case(result, ref, case, runtime, plain)
            for tensor, names in candidates.items():
                if tensor not in got:
                    missing.add(tensor)
                    continue
                found = best_match(np.asarray(got[tensor]), {n: values[n] for n in names if n in values},
                                   self.atol(result.runtime), self.tolerance(tensor, case), out_scale)
                if found is None:
                    continue
                tf_name, lay, err = found
                if tensor not in worst or err.ratio > worst[tensor]["err"].ratio:
                    worst[tensor] = {"tf": tf_name, "layout": lay, "err": err, "case": case.name}
                worst[tensor].setdefault("shapes", {})[case.name] = (tf_name, lay, tuple(np.shape(got[tensor])))
            del values, got
        for tensor in candidates:
            if tensor in missing:
                _unmatched(result, by_tensor[tensor], "the runtime did not return it as an output")
            elif tensor not in worst:
                _unmatched(result, by_tensor[tensor], f"no layout of its TF candidates {candidates[tensor]} "
                                                      "fits its shape")
        return worst

    def run_case(self, result: Localization, ref: Any, case: Case, runtime: Any,
                 plain: Any) -> tuple[dict[str, np.ndarray], dict[str, Any], float]:
        """One case on the runtime as verified (`plain`) and with its tensors exposed (`runtime`, run last:
        LiteRT's interpreter is read after it), the exposed run's outputs checked against the plain one's.
        Returns the reference's values, the exposed run's results and the outputs' scale on the case."""
        values = ref.values(case)
        try:
            own = plain.infer(case.feed)
            got = runtime.infer(case.feed)
        except Exception as e:  # a runtime failing on valid input is a finding
            raise UserError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        self._check_outputs(result, case, got, own)
        return values, got, self.outputs_scale(case, ref, values)

    def _check_outputs(self, result: Localization, case: Case, got: dict[str, Any], own: dict[str, Any]) -> None:
        """The model's outputs with the intermediates exposed must be the runtime's own, bit for bit."""
        changed = {t.name: _difference(got.get(t.name), own.get(t.name)) for t in self.spec.outputs}
        moved = max(changed.values(), default=0.0)
        result.outputs_moved = max(result.outputs_moved or 0.0, moved)
        if moved:
            by = ", ".join(f"{v:.3g} ({k})" for k, v in changed.items() if v)
            result.notes.append(f"case {case.name}: with the intermediates exposed, the outputs differ from the "
                                f"runtime's own by up to {by} "
                                "(it fused or ordered work differently); the curve is of the exposed run")

    def _finish(self, result: Localization, worst: dict[str, dict[str, Any]], ref: Any, cases: list[Case]) -> None:
        """One match per TF tensor (the closest), the curve in graph order, the first divergence, born or not."""
        by_tensor = {p.tensor: p for p in self.produced}
        keep: dict[str, str] = {}
        for tensor, w in sorted(worst.items(), key=lambda tw: (tw[1]["err"].ratio, by_tensor[tw[0]].index)):
            if w["tf"] in keep:
                _unmatched(result, by_tensor[tensor], f"TF tensor {w['tf']!r} is matched closer by {keep[w['tf']]}")
            else:
                keep[w["tf"]] = tensor
        chosen = {t: worst[t] for t in keep.values()}
        result.points = sorted((_point(by_tensor[t], w) for t, w in chosen.items()), key=lambda p: (p.index, p.tensor))
        result.unmatched.sort(key=lambda u: u["index"])
        divergent = [p for p in result.points if p.ratio > 1]
        if not divergent:
            return
        result.state = "diverges"
        first = divergent[0]
        result.first = {"index": first.index, "node": first.node, "op": first.op, "tensor": first.tensor,
                        "ratio": first.ratio, "born": None, "born_ratio": None}
        for k, point in enumerate(divergent[:MAX_BORN_TESTS]):
            born = self._born(result, ref, point, chosen, cases)
            if k == 0:
                result.first.update(born=born["born"], born_ratio=born["ratio"])
            if born["born"]:
                result.born_at = {"index": point.index, "node": point.node, "op": point.op, "tensor": point.tensor,
                                  "ratio": born["ratio"]}
                result.repro = self._write_repro(result, point, born)
                return

    def _born(self, result: Localization, ref: Any, point: Point, chosen: dict[str, dict[str, Any]],
              cases: list[Case]) -> dict[str, Any]:
        """Run the point's node alone (with any unmatched tensors it needs) in the runtime, on TF's values."""
        case = next(c for c in cases if c.name == point.case)
        values = ref.values(case)
        laid_out = {t: w["shapes"][case.name] for t, w in chosen.items()
                    if case.name in w["shapes"] and t != point.tensor}
        known = _Known(case.feed, laid_out, values)
        tf_name, lay, shape = chosen[point.tensor]["shapes"][case.name]
        want = lay.apply(values[tf_name], shape)
        small, feed = onnx_graph.minimal_model(self.onnx, point.index, point.tensor, known, self.types, shape)
        runtime = RUNTIMES[result.runtime](self.scratch(small))
        try:
            got = np.asarray(runtime.infer(feed)[point.tensor])
        except Exception as e:  # the node alone may be refused (a runtime's own limits): say so, do not guess
            raise UserError(f"{point.node} alone in {result.runtime}: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from None
        atol = scaled_atol(self.atol(result.runtime), values[tf_name], self.outputs_scale(case, ref, values))
        err = tensor_error(got, want, atol, self.tolerance(point.tensor, case)) if got.shape == want.shape else \
            TensorError(math.inf, math.inf, math.inf, 0.0, atol)
        return {"born": err.ratio > 1, "ratio": err.ratio, "model": small, "feed": feed, "want": want, "got": got,
                "err": err, "case": case.name, "rtol": self.tolerance(point.tensor, case)}

    def _write_repro(self, result: Localization, point: Point, born: dict[str, Any]) -> str | None:
        """`<repro_root>/<model>/<runtime>/`: model.onnx, test_data_set_0/, README.md; replaced whole."""
        if self.repro_root is None:
            return None
        dest = self.repro_root / self.spec.name / result.runtime
        if (self.repro_root / layout.CARD).exists():  # a model named like the repro folder: never write into it
            result.notes.append(f"not writing a repro into {self.repro_root}: it is a model folder")
            return None
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{result.runtime}.tmp-", dir=dest.parent))
            try:
                _save(born["model"], tmp)
                onnx_graph.write_test_set(tmp, born["feed"], {point.tensor: born["want"]})
                (tmp / "README.md").write_text(_readme(self.spec.name, result.runtime, point, born))
                if dest.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{result.runtime}.old-", dir=dest.parent))
                    dest.rename(old / "repro")
                    shutil.rmtree(old)
                tmp.rename(dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        except OSError as e:
            result.notes.append(f"the repro could not be written to {dest} ({e.strerror or e})")
            return None
        return str(dest)


class _Known(Mapping):
    """The values a node run alone may be fed: the case's inputs, and TF's value of every matched
    tensor in the runtime's layout, laid out only when the small model needs it."""

    def __init__(self, feed: dict[str, np.ndarray], laid_out: dict[str, tuple[str, Layout, tuple[int, ...]]],
                 values: dict[str, np.ndarray]) -> None:
        self.feed, self.laid_out, self.values = feed, laid_out, values

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.feed:
            return self.feed[name]
        tf_name, lay, shape = self.laid_out[name]
        return lay.apply(self.values[tf_name], shape).astype(np.float32)

    def __iter__(self) -> Iterator[str]:
        return iter({**self.feed, **self.laid_out})

    def __len__(self) -> int:
        return len({**self.feed, **self.laid_out})


def _rows(spec: Any, case: Case) -> Case:
    """The case itself, or its first MAX_ROWS rows (a localization compares every tensor of every row)."""
    batch = int(next(iter(case.feed.values())).shape[0])
    if batch <= MAX_ROWS:
        return case
    # a case of its own name: the verified case's outputs (an output summed over a million rows) are
    # not this one's, and must not set the scale its tensors are held to
    return Case(f"{case.name} (first {MAX_ROWS} rows)", case.kind, {k: v[:MAX_ROWS] for k, v in case.feed.items()})


def _point(p: Any, w: dict[str, Any]) -> Point:
    err: TensorError = w["err"]
    lay: Layout = w["layout"]
    return Point(p.index, p.node, p.op, p.tensor, w["tf"], err.ratio, err.max_abs, err.rel, err.cosine, err.atol,
                 w["case"], lay.to_json())


def _unmatched(result: Localization, p: Any, reason: str) -> None:
    result.unmatched.append({"index": p.index, "node": p.node, "op": p.op, "tensor": p.tensor, "reason": reason})


def _type_name(kind: int | None) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(kind).lower() if kind else "untyped"


def _difference(a: Any, b: Any) -> float:
    """0 when bit for bit the same (NaN where NaN), else the largest absolute difference (inf: not comparable)."""
    if a is None or b is None:
        return math.inf
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return math.inf
    same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b
    if bool(np.all(same)):
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))[~same]
    return float(np.nanmax(diff)) if np.isfinite(diff).any() else math.inf


def _ratio(output: Any) -> float:
    """An output's worst error over its tolerance, as the verifier compared it."""
    bounds = [x for x in (output.max_abs / output.atol if output.atol else math.inf,
                          output.max_rel / output.rtol if output.rtol else math.inf) if not math.isnan(x)]
    return min(bounds) if bounds else math.inf


def _save(model: Any, folder: Path) -> None:
    import onnx

    onnx.save(model, str(folder / layout.ONNX))


def _readme(model: str, runtime: str, point: Point, born: dict[str, Any]) -> str:
    err: TensorError = born["err"]
    inputs = ", ".join(f"{k} {list(np.shape(v))}" for k, v in born["feed"].items())
    return f"""# {model}: {point.node} ({point.op}) computed by {runtime} departs from TensorFlow

`model.onnx` is the smallest piece of {model}'s ONNX graph that computes `{point.tensor}`
(TF tensor `{point.tf}`), node `{point.node}`; `test_data_set_0/` holds TensorFlow's own values of
its inputs ({inputs}) and of `{point.tensor}` (case {born['case']}), in the ONNX test data layout.

Measured by tf-parity-export: {runtime} computes `{point.tensor}` with a max abs error of
{err.max_abs:.3g} (worst element {err.ratio:.3g}x its tolerance: |got - expected| <= max(atol, rtol * |expected|)
with atol = {err.atol:.3g}, the model's atol scaled to this tensor, and rtol = {born['rtol']:.3g}).

Reproduce with onnxruntime alone (or OpenVINO: `import openvino as ov`,
`got = ov.Core().compile_model("model.onnx", "CPU")(feed)[0]`, the same feed):

```python
import glob, numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
load = lambda p: numpy_helper.to_array(onnx.load_tensor(p))
feed = {{onnx.load_tensor(p).name: load(p) for p in sorted(glob.glob("test_data_set_0/input_*.pb"))}}
expected = load("test_data_set_0/output_0.pb")
got = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"]).run(None, feed)[0]
print("max abs error:", np.abs(got - expected).max())
```

The folder follows the ONNX test data layout, which onnxruntime's `onnx_test_runner` reads too.
"""
