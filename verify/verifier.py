"""Run every case through every runtime and collect the results as data.

Nothing here raises on a mismatch: `verify_models` returns a `Report`, and
the caller decides (the CLIs raise one ParityError listing every failure).
"""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tf_parity_export.models import ArtifactError, InputError, ModelSpec, UserError
from tf_parity_export.models.errors import first_reason
from tf_parity_export.models.plugins import make_probe_checked, path_problem, trace_path

from . import deadline, layout
from .compare import OutputComparison, compare_output
from .deadline import DeadlineExceeded, Stuck
from .inputs import BOUNDARY_MARGIN, Case, load_npz, random_cases, read_npz, validate_feed
from .runtimes import EXACT, REFERENCE, RUNTIMES, RunScope, Subject, Unavailable, Unsupported, mode, warm_up
from .structure import Check, onnx_checks
from .test_data import read_sets

REPORT_SCHEMA = "tf-parity-report/1"
# Cases that run on every runtime but are reported apart, never counted as passes:
# on a decision boundary (float rounding may take either side), or driving a
# loop to its iteration cap (the seed's loop would never end on that input).
APART = {"boundary": "boundary", "capped": "loop_cap"}
# A case whose control-flow trace in onnxruntime ran past the deadline (a loop that
# never ends on it): reported with the reason, run on no runtime (each would hang too).
UNFINISHED = "deadline"
UNSUPPORTED = "unsupported"  # a case the runtime cannot take (its reason says why); the runtime's state says so too
# A row-wise model (every output keeps the batch dimension) runs a large batch
# in chunks of this many rows, so memory does not grow with the batch.
CHUNK_ROWS = 1 << 16
STORED = "stored test data (TF eager outputs recorded at export)"
REQUIRED_PATHS = {
    "loop ran 0 times": lambda p: p["iterations"] == 0,
    "loop ran once": lambda p: p["iterations"] == 1,
    "loop ran 10+ times": lambda p: p["iterations"] >= 10,
    "branch scaled": lambda p: p["branch"] == "scaled",
    "branch kept": lambda p: p["branch"] == "kept",
}


@dataclass
class CaseResult:
    """One case through one runtime. `status`: passed, failed, error; measured (a
    reduced-precision runtime outside the tolerance, not required: reported, not
    failed); or one of the statuses of cases run but not counted (`APART`)."""

    runtime: str
    case: str
    status: str
    outputs: list[OutputComparison] = field(default_factory=list)
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "case": self.case, "status": self.status,
                "reason": self.reason, "outputs": [o.to_json() for o in self.outputs]}


@dataclass
class ModelReport:
    model: str
    reference: str = ""
    # name -> "ran" | "unavailable: ..." | "unsupported: ..." | "error: ..."
    runtimes: dict[str, str] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    results: list[CaseResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    coverage: dict[str, list[str]] = field(default_factory=dict)
    precision: dict[str, dict[str, Any]] = field(default_factory=dict)  # runtime -> mode and worst error
    error: str = ""
    # generic control-flow coverage measured on model.onnx (verify/coverage.py): its
    # nodes, and the path each case took; `allow_uncovered` reports missing paths without failing
    graph_sites: list[Any] = field(default_factory=list)
    graph_paths: dict[str, Any] = field(default_factory=dict)
    allow_uncovered: bool = False
    # outputs that never move over the counted cases (compare.insensitivity): parity on them proves
    # nothing; `allow_insensitive` reports them without failing
    insensitive: dict[str, dict[str, Any]] = field(default_factory=dict)
    allow_insensitive: bool = False
    localization: dict[str, Any] = field(default_factory=dict)  # runtime -> verify.localize.Localization

    def failures(self, required: set[str] = frozenset()) -> list[str]:
        """One line per problem; empty when this model passed."""
        if self.error:
            return [self.error]
        lines = [f"{self.model}: structure check {c.name} failed: {c.detail}" for c in self.checks if not c.passed]
        if not self.allow_insensitive:  # first: it explains any mismatches on that output below
            lines += [insensitive_line(self.model, name, info) + " (--allow-insensitive to accept)"
                      for name, info in self.insensitive.items()]
        lines += [f"{self.model}/{rt}: {state}" for rt, state in self.runtimes.items()
                  if state.startswith("error") or (rt in required and state != "ran")]
        for r in self.results:
            if r.status == "error":
                lines.append(f"{self.model}/{r.runtime}: case {r.case}: {r.reason}")
            for o in r.outputs if r.status == "failed" else []:
                if not o:
                    lines.append(f"{self.model}/{r.runtime}: case {r.case}: output {o.output!r} "
                                 f"max abs error {o.max_abs:.3g}, max rel {o.max_rel:.3g} at {o.worst_index} "
                                 f"exceeds atol={o.atol:g} and rtol={o.rtol:g}" + (f" ({o.note})" if o.note else ""))
        if not self.allow_uncovered:
            lines += [f"{self.model}: no input covers '{need}' (coverage; --allow-uncovered to accept)"
                      for need, hits in self.coverage.items() if not hits]
        uncounted = {**APART, UNFINISHED: UNFINISHED}
        counted = [c for c in self.cases if c["kind"] not in uncounted]
        if self.cases and not counted and (self.results or any(c["kind"] == UNFINISHED for c in self.cases)):
            kinds = sorted({uncounted[c["kind"]] for c in self.cases})
            advice = ("give inputs on which the model finishes" if kinds == [UNFINISHED]
                      else "give inputs away from the thresholds")
            lines.append(f"{self.model}: no case was compared: all {len(self.cases)} are {' or '.join(kinds)} "
                         f"cases, reported but not counted; {advice}")
        return lines

    def to_json(self, required: set[str] = frozenset()) -> dict[str, Any]:
        return {"model": self.model, "passed": not self.failures(required), "error": self.error,
                "reference": self.reference,
                "runtimes": self.runtimes, "precision": self.precision, "cases": self.cases, "coverage": self.coverage,
                "allow_uncovered": self.allow_uncovered,
                "insensitive": self.insensitive, "allow_insensitive": self.allow_insensitive,
                "graph_coverage": {"nodes": [s.to_json() for s in self.graph_sites],
                                   "cases": {k: p.to_json() for k, p in self.graph_paths.items()}},
                "checks": [c.to_json() for c in self.checks], "results": [r.to_json() for r in self.results],
                "localization": {rt: loc.to_json() for rt, loc in self.localization.items()}}


@dataclass
class Report:
    """Everything one verification found. Truthy when every model passed."""

    models: list[ModelReport]
    required: set[str]
    seconds: float
    environment: dict[str, Any]

    def failures(self) -> list[str]:
        return [line for m in self.models for line in m.failures(self.required)]

    def __bool__(self) -> bool:
        return not self.failures()

    def to_json(self) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, "passed": bool(self), "seconds": round(self.seconds, 3),
                "environment": self.environment, "failures": self.failures(),
                "models": [m.to_json(self.required) for m in self.models]}


def insensitive_line(model: str, output: str, info: dict[str, Any]) -> str:
    """The one line that says an output never moved (its spread against its tolerance) or vanished."""
    if info.get("kind") == "vanishing":
        return (f"{model}: output {output!r} has vanished: over {info['rows']} rows its largest magnitude is "
                f"{info['largest']:.3g}, below float32's resolution at the inputs' scale ({info['floor']:.3g}), so "
                "comparing it measures rounding; parity on it proves nothing")
    return (f"{model}: output {output!r} does not move: over {info['rows']} rows every element stays within "
            f"atol={info['atol']:g} / rtol={info['rtol']:g} of one value (largest spread {info['spread']:.3g}), so "
            "any runtime returning that constant would pass; parity on it proves nothing")


def environment() -> dict[str, Any]:
    """Tool versions and onnxruntime providers, for the report and the cards."""
    import importlib

    import onnxruntime

    from tf_parity_export.models.lazy_tf import tensorflow_available

    with_tf = tensorflow_available()  # first: keras and tf2onnx import TensorFlow noisily otherwise
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for module in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"):
        needs_tf = module in ("tensorflow", "keras", "tf2onnx")
        try:
            env[module] = importlib.import_module(module).__version__ if with_tf or not needs_tf else "not installed"
        except ImportError:
            env[module] = "not installed"
    env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return env


def tool_versions(env: dict[str, Any]) -> dict[str, str]:
    """The versions that determine the artifacts' bytes (for card.json and manifest.json).

    Machine details (platform, providers) stay in the report: the committed
    artifacts must not change with the machine that checks them.
    """
    keep = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")
    return {"python": ".".join(env["python"].split(".")[:2]), **{k: env[k] for k in keep}}


def with_card_ranges(spec: ModelSpec, card: dict[str, Any]) -> ModelSpec:
    """`spec` with each input's range as exported: where the spec declares none, the exporter
    took it from the model (an Embedding's size) and recorded it in card.json's signature."""
    import dataclasses

    recorded = {t.get("name"): t.get("range") for t in card.get("signature", {}).get("inputs", [])
                if isinstance(t, dict)}
    inputs = []
    for sig in spec.inputs:
        found = recorded.get(sig.name)
        if sig.range is None and isinstance(found, list) and len(found) == 2 and \
                all(isinstance(v, (int, float)) for v in found) and found[0] < found[1]:
            sig = dataclasses.replace(sig, range=(found[0], found[1]))
        inputs.append(sig)
    return dataclasses.replace(spec, inputs=tuple(inputs))


def stored_cases(folder: Path, name: str = "") -> list[Case]:
    """The control-flow coverage inputs the exporter found and stored (keys "<case>/<input name>")."""
    path = folder / layout.CASES
    if not path.exists():
        return []
    data = read_npz(path, error=ArtifactError, label=f"{name}: {layout.CASES}")
    if not all(key.count("/") == 1 and all(key.split("/")) for key in data):
        raise ArtifactError(f"{name}: {layout.CASES} has keys {sorted(data)[:5]}, not '<case>/<input>'; "
                            f"re-export with `export-models {name}`")
    feeds: dict[str, dict[str, np.ndarray]] = {}
    for key in sorted(data):
        case, _, input_name = key.partition("/")
        feeds.setdefault(case, {})[input_name] = data[key]
    return [Case(case, "coverage", feed) for case, feed in feeds.items()]


def verify_model(spec: ModelSpec, folder: Path, runtimes: list[str], user_case: Case | None = None,
                 with_tf: bool = True, prebuilt: Any = None, required: dict[str, float | None] | None = None,
                 scope: RunScope | None = None, localize: list[str] | None = None,
                 repro_root: Path | None = None) -> ModelReport:
    """Verify one model folder on the named runtimes; problems become data in the report.

    Nothing in the folder is parsed or loaded before every integrity check
    passed (`layout.check_folder`: paths, hashes, unlisted files, the manifest).
    Exact (fp32) runtimes are held to the model's tolerance. A reduced-precision
    runtime is measured: outside the tolerance its cases are "measured", not
    "failed", unless it is in `required` (name -> an atol to hold it to instead
    of the model's, or None for the model's own).

    With TensorFlow, the reference is TF eager on the model rebuilt from the
    folder's weights, and the stored test data must match it. Without
    TensorFlow, the stored test data sets are replayed: their outputs, TF
    eager's at export time, are the reference. Services the runtimes share
    (the browser) come from `scope`; without one they are stopped on return.

    Every runtime outside the tolerance on some case, and those in `localize`
    (an empty list: all that ran), are then localized (verify/localize): where
    in the graph they depart from TensorFlow; repros go under `repro_root`.
    """
    check_require(required or {})
    if scope is None:
        with RunScope() as own:
            return verify_model(spec, folder, runtimes, user_case, with_tf, prebuilt, required, own, localize,
                                repro_root)
    report = ModelReport(spec.name, reference=REFERENCE if with_tf else STORED)
    try:
        card = layout.check_folder(folder.parent, folder.name)
        spec = with_card_ranges(spec, card)
        stored = read_sets(folder, spec, card)
        if not with_tf and user_case:
            raise InputError(f"{spec.name}: --inputs needs TensorFlow to compute reference outputs; "
                             "without it only the stored test data sets can be replayed")
        # The folder is sound: start the browser and Node now, in the background, while the reference
        # model is built (once per run; a run whose folders are all refused never starts them).
        warm_up(scope, runtimes)
        model = _reference_model(spec, folder, card, prebuilt) if with_tf else None
        if model is None:
            cases = [s.case for s in stored]
        else:
            cases = [user_case] if user_case else random_cases(spec) + stored_cases(folder, spec.name)
        for case in [*cases, *(s.case for s in stored)]:
            validate_feed(spec, case.feed, f"{spec.name}: case {case.name}")
        report.checks += onnx_checks(spec, folder)
    except UserError as e:
        report.error = str(e)
        return report

    try:
        unfinished = _measure_graph_coverage(report, folder, cases)
        report.cases = [{"name": case.name, "kind": UNFINISHED, "reason": unfinished[case.name],
                         "batch": int(next(iter(case.feed.values())).shape[0])} for case in cases
                        if case.name in unfinished]
        cases = [c for c in cases if c.name not in unfinished]
        report.cases += _case_paths(spec, model, cases, stored, report)
    except UserError as e:  # a plugin's probe that fails or returns a malformed path, too
        report.error = str(e)
        return report
    apart = {c["name"]: APART[c["kind"]] for c in report.cases if c["kind"] in APART}
    if spec.probe and user_case is None:
        counted = [c for c in report.cases if c["kind"] not in APART and c.get("path")]
        report.coverage = {need: [c["name"] for c in counted if hit(c["path"])] for need, hit in REQUIRED_PATHS.items()}
    elif report.graph_sites and user_case is None:
        report.coverage = _generic_coverage(report, set(apart))

    subject = Subject(spec, folder, model, scope, card)
    if model is not None:
        reference = RUNTIMES[REFERENCE](subject)
        try:
            expected = {case.name: infer(spec, reference, case.feed) for case in cases}
            report.checks.append(_stored_outputs_check(spec, stored, reference, expected, cases))
        except (DeadlineExceeded, Stuck) as e:
            report.error = f"{spec.name}: the reference: {e}"
            return report
    else:
        expected = {s.case.name: s.expected for s in stored}
    extra = [s for s in stored if s.case.name not in {c.name for c in cases}]
    report.insensitive = _insensitive(spec, [expected[c.name] for c in cases if c.name not in apart],
                                      [s.expected for s in extra],
                                      [c.feed for c in cases if c.name not in apart] + [s.case.feed for s in extra])
    required = required or {}
    from .localize.localizer import runtimes_to_localize

    loaded = {}  # kept for localization, which reruns a runtime as it was verified
    for name in runtimes:
        try:
            runtime = loaded[name] = RUNTIMES[name](subject)
        except Unavailable as e:
            report.runtimes[name] = f"unavailable: {e}"
            continue
        except Unsupported as e:
            report.runtimes[name] = f"unsupported: {e}"
            continue
        except (UserError, DeadlineExceeded) as e:
            report.runtimes[name] = f"error: {e}"
            continue
        except Exception as e:  # a runtime that fails to load is that runtime's finding, never the run's end
            report.runtimes[name] = f"error: {type(e).__name__}: {first_reason(e)}"
            continue
        report.runtimes[name] = "ran"
        report.checks += getattr(runtime, "checks", [])
        atol = required.get(name) or spec.atol  # an exact runtime has no ATOL of its own (check_require)
        measured_only = mode(name) != EXACT and name not in required
        results = [_run_case(spec, runtime, case, expected[case.name], apart.get(case.name), atol) for case in cases]
        for r in results:
            if measured_only and r.status == "failed":
                r.status = "measured"
            if r.status == UNSUPPORTED and report.runtimes[name] == "ran":  # the first case it could not take
                report.runtimes[name] = f"unsupported: {r.reason}"
        report.results += results
        report.precision[name] = precision_summary(name, getattr(runtime, "precision", ""), results, atol, spec.rtol)
        if name not in runtimes_to_localize({name: report.runtimes[name]}, results, localize):
            # not to be localized: its in-process session goes now, with the memory a large case made
            # it hold (a million rows through every runtime, each kept, peaked at 3 GB)
            del loaded[name]
            runtime = None
    from .localize import localize_model

    report.localization = localize_model(report, subject, cases, expected, localize, repro_root, loaded)
    return report


def _case_paths(spec: ModelSpec, model: Any, cases: list[Case], stored: list[Any],
                report: ModelReport) -> list[dict[str, Any]]:
    """Each case's name, kind and batch, with the control-flow path it took: measured by the
    model's probe (with TensorFlow), recorded at export, or measured on the graph."""
    probe = make_probe_checked(spec, model) if model is not None else None
    recorded = {s.case.name: s.path for s in stored}
    infos = []
    for case in cases:
        info: dict[str, Any] = {"name": case.name, "kind": case.kind,
                                "batch": int(next(iter(case.feed.values())).shape[0])}
        if probe is not None:
            info["path"] = trace_path(spec, probe, next(iter(case.feed.values())))
        elif recorded.get(case.name) and spec.probe:  # the probe's path, recorded at export (no TensorFlow here)
            if path_problem(recorded[case.name]):
                raise ArtifactError(f"{spec.name}: card.json records a malformed path for case {case.name!r} "
                                    f"({path_problem(recorded[case.name])}); re-export with `export-models {spec.name}`")
            info["path"] = {**recorded[case.name], "source": "recorded at export"}
        elif case.name in report.graph_paths:
            info["path"] = report.graph_paths[case.name].to_json()
        elif recorded.get(case.name):
            info["path"] = {**recorded[case.name], "source": "recorded at export"}
        if "path" in info and info["path"].get("capped"):
            info["kind"] = "capped"
        elif "path" in info and info["path"].get("margin") is not None and info["path"]["margin"] < BOUNDARY_MARGIN:
            info["kind"] = "boundary"
        infos.append(info)
    return infos


def precision_summary(name: str, computes_in: str, results: list[CaseResult], atol: float,
                      rtol: float) -> dict[str, Any]:
    """A runtime's numeric mode, its worst error over the counted cases (where it occurred),
    and the tightest tolerance it would pass.

    The rule fails an element only if it exceeds both atol and rtol * |ref|, so
    the largest absolute error is the tightest atol that passes whatever the
    rtol, and the largest relative error the tightest rtol whatever the atol
    (as Polygraphy reports "required atol/rtol"). An infinite rtol means no
    rtol alone passes (a zero reference became non-zero); None where an output
    could not be compared at all (an error, a wrong shape or a NaN).
    """
    numeric_mode = mode(name)
    counted = [(r.case, o) for r in results if r.status not in (*APART.values(), "error", UNSUPPORTED) for o in r.outputs]
    comparable = counted and all(r.status != "error" for r in results) and all(np.isfinite(o.max_abs) for _, o in counted)
    worst_case, worst = max(counted, key=lambda co: co[1].max_abs) if comparable else (None, None)
    max_rel = max(o.max_rel for _, o in counted) if comparable else None
    return {
        "mode": numeric_mode,
        "exact": numeric_mode == EXACT,
        "computes_in": computes_in or (numeric_mode if numeric_mode != "auto" else "unknown"),
        "atol": atol,
        "rtol": rtol,
        "within_tolerance": all(r.status in ("passed", *APART.values(), UNSUPPORTED) for r in results),
        "max_abs": worst.max_abs if worst is not None else None,
        "max_rel": max_rel,
        "worst_case": worst_case,
        "worst_output": worst.output if worst is not None else None,
        "worst_index": worst.worst_index if worst is not None else None,
        "tightest_atol": worst.max_abs if worst is not None else None,
        "tightest_rtol": max_rel,
        # against the outputs' scale (Polygraphy's and onnx2tf's measures); the verdict stays on atol/rtol
        "worst_scale_error": max(o.scale_error for _, o in counted) if comparable else None,
        "min_cosine": min(o.cosine for _, o in counted) if comparable else None,
        "min_snr_db": min(o.snr_db for _, o in counted) if comparable else None,
    }


def _measure_graph_coverage(report: ModelReport, folder: Path, cases: list[Case]) -> dict[str, str]:
    """Generic control-flow coverage (verify/coverage.py): the path every case
    takes through model.onnx's If and Loop nodes, measured in onnxruntime.

    Returns the cases whose trace ran past the deadline, each with the reason:
    a loop that never ends on that input, in every runtime."""
    from .coverage import GraphCoverage, has_control_flow

    if not has_control_flow(folder / layout.ONNX):
        return {}
    graph = GraphCoverage(folder / layout.ONNX, report.model)
    report.graph_sites = graph.sites
    unfinished = {}
    for case in cases:
        try:
            report.graph_paths[case.name] = graph.trace(case.feed)
        except DeadlineExceeded as e:
            unfinished[case.name] = f"{e}; a loop that never ends on this input"
        except Exception:  # onnxruntime failing on this input: the ONNX runtimes report it as a finding
            continue
    return unfinished


def _insensitive(spec: ModelSpec, counted: list[dict[str, np.ndarray]], stored: list[dict[str, np.ndarray]],
                 feeds: list[dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """The outputs whose reference values never move over the counted cases and the stored test
    data (compare.insensitivity), or have vanished below float32's resolution at the scale of
    the inputs `feeds` (compare.vanishing). Nothing when no case was counted: that fails on its own."""
    from .compare import insensitivity, vanishing

    if not counted:
        return {}
    scale = max([1.0, *(float(np.abs(v).max()) for feed in feeds for k, v in feed.items()
                        if v.size and np.issubdtype(v.dtype, np.floating) and np.isfinite(v).all())])
    floor = float(np.finfo(np.float32).eps) * scale
    found = {}
    for sig in spec.outputs:
        values = [e[sig.name] for e in [*counted, *stored]]
        info = insensitivity(values, spec.atol, spec.rtol, batched=sig.shape[:1] == (None,)) or vanishing(values, floor)
        if info is not None:
            found[sig.name] = info
    return found


def _generic_coverage(report: ModelReport, apart: set[str]) -> dict[str, list[str]]:
    """For a model without a probe: every If branch and Loop count class, and the cases reaching it
    (cases reported apart, boundary or loop-cap, do not count)."""
    from .coverage import coverage_of

    counted = {k: p for k, p in report.graph_paths.items() if k not in apart}
    return coverage_of(report.graph_sites, counted)


def infer(spec: ModelSpec, runtime: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`runtime.infer(feed)`; a row-wise model (every input and output keeps the
    batch dimension) takes a batch larger than CHUNK_ROWS in chunks, so that a
    million rows through a 256-wide layer never sit in memory at once.
    A model that sums over the batch cannot be split: it gets the whole batch."""
    batch = next(iter(feed.values())).shape[0]
    row_wise = all(t.shape[:1] == (None,) for t in (*spec.inputs, *spec.outputs))
    if batch <= CHUNK_ROWS or not row_wise:
        return runtime.infer(feed)
    parts = [runtime.infer({k: v[i:i + CHUNK_ROWS] for k, v in feed.items()}) for i in range(0, batch, CHUNK_ROWS)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _terms(spec: ModelSpec, output: str, feed: dict[str, np.ndarray]) -> int:
    """How many float32 terms each element of `output` sums (1 for a row-wise output)."""
    sig = next((t for t in spec.outputs if t.name == output), None)
    if sig is None or not sig.sums_per_row:
        return 1
    return int(next(iter(feed.values())).shape[0]) * sig.sums_per_row


def _reference_model(spec: ModelSpec, folder: Path, card: dict[str, Any], prebuilt: Any = None) -> Any:
    """The Keras model from the registry (or `prebuilt`, the same architecture
    already built) with the folder's weights loaded into it."""
    from tf_parity_export.models.plugins import build_checked

    model = prebuilt if prebuilt is not None else build_checked(spec, card.get("seed", spec.seed))
    try:
        model.load_weights(str(folder / layout.WEIGHTS))
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # h5py's errors on damaged files
        raise ArtifactError(f"{spec.name}: {layout.WEIGHTS} cannot be loaded ({str(e).splitlines()[0]})") from None
    return model


def _stored_outputs_check(spec: ModelSpec, stored: list[Any], reference: Any, expected: dict[str, Any],
                          cases: list[Case]) -> Check:
    """The test data sets' outputs must be what TF eager computes now (what TF-free replay trusts).

    Reuses the reference outputs of a case with the same name and inputs."""
    fresh = {c.name: c.feed for c in cases}
    bad = []
    for s in stored:
        same = s.case.name in fresh and all(np.array_equal(fresh[s.case.name][k], v) for k, v in s.case.feed.items())
        now = expected[s.case.name] if same else reference.infer(s.case.feed)
        if not all(compare_output(k, s.expected[k], v, spec.atol, spec.rtol, _terms(spec, k, s.case.feed))
                   for k, v in now.items()):
            bad.append(s.case.name)
    detail = f"{len(stored)} test data sets match TF eager" if not bad else f"outputs differ from TF eager: {bad}"
    return Check("test_data_outputs", not bad, detail)


def _run_case(spec: ModelSpec, runtime: Any, case: Case, expected: dict[str, np.ndarray],
              apart: str | None, atol: float) -> CaseResult:
    """Run one case; `apart` is the status of a case reported but not counted (see APART)."""
    try:
        got = infer(spec, runtime, case.feed)
    except Unsupported as e:  # beyond what this runtime can take: said up front, not a failure unless required
        return CaseResult(runtime.name, case.name, UNSUPPORTED, reason=str(e))
    except Exception as e:  # a runtime failing on valid input is a finding, not a crash
        return CaseResult(runtime.name, case.name, "error", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    outputs = [compare_output(t.name, expected[t.name], got.get(t.name), atol, spec.rtol,
                              _terms(spec, t.name, case.feed)) for t in spec.outputs]
    status = apart or ("passed" if all(outputs) else "failed")
    return CaseResult(runtime.name, case.name, status, outputs)


def check_require(require: dict[str, float | None]) -> None:
    """Refuse an ATOL for an exact (fp32) runtime: it is held to the model's own tolerance,
    always; a looser one would let a wrong model pass (say another model's ONNX with
    `ort_cpu:1000`). An ATOL is for a reduced-precision runtime (bf16, tf32, fp16, auto)."""
    exact = [name for name, atol in require.items() if atol is not None and mode(name) == EXACT]
    if exact:
        reduced = ", ".join(sorted(n for n in RUNTIMES if mode(n) != EXACT))
        raise UserError(f"--require {exact[0]}:{require[exact[0]]:g}: {exact[0]} is exact (fp32), always held to "
                        f"the model's own tolerance; an ATOL is for a reduced-precision runtime ({reduced}). "
                        f"Use --require {exact[0]} to require it")


def verify_models(
    names: list[str],
    artifacts: Path,
    runtimes: list[str] | None = None,
    inputs: Path | None = None,
    models: dict[str, Any] | None = None,
    require: dict[str, float | None] | None = None,
    allow_uncovered: bool = False,
    scope: RunScope | None = None,
    allow_insensitive: bool = False,
    localize: list[str] | None = None,
    repro_root: Path | None = None,
) -> Report:
    """Verify the named models' artifacts under `artifacts`.

    Args:
        names: registry names, names of models exported from a file (their folder's card
            says how to rebuild them), or ModelSpecs.
        artifacts: the folder `export-models` wrote.
        runtimes: runtime names (see `verify.runtimes.RUNTIMES`); None means
            all; an empty list is a ValueError (nothing would be compared).
            Named ones that turn out unavailable count as failures;
            unavailable ones picked by default are only reported.
        inputs: an optional `.npz` (keys = input names) used instead of the
            built-in cases.
        models: already-built Keras models by name (the exporter's), into
            which the folder's weights are loaded instead of rebuilding them.
        require: runtimes that must run and agree even if their numeric mode
            is reduced (bf16, tf32, fp16, auto), each with an atol to hold it
            to, or None for the model's tolerance. Runtimes named in
            `runtimes` are required too, at the model's tolerance.
        allow_uncovered: report control-flow paths no case reaches without
            failing on them.
        allow_insensitive: report outputs that never move over the cases
            (parity on them proves nothing) without failing on them.
        scope: the services the runtimes share (the browser), to use and
            leave running; by default the run starts and stops its own.
        localize: runtimes to localize even if they agree (an empty list:
            every runtime that ran); those outside the tolerance always are.
        repro_root: where localization writes repro folders
            (`<repro_root>/<model>/<runtime>/`); default `artifacts/repro`.

    Without TensorFlow (an environment with only onnxruntime and onnx), the
    stored test data sets are replayed on the ONNX runtimes instead.

    Returns:
        A `Report`, truthy when everything agreed.
    """
    from tf_parity_export.models.lazy_tf import tensorflow_available

    start = time.perf_counter()
    deadline.seconds()  # a bad $TF_PARITY_DEADLINE is one line now, not an error per call
    specs = [layout.resolve_spec(n, artifacts) for n in names]
    require = dict(require or {})
    chosen = list(RUNTIMES) if runtimes is None else list(runtimes)
    chosen += [r for r in [*require, *(localize or [])] if r not in chosen]
    if not chosen:
        raise ValueError("verify_models needs at least one runtime to compare (runtimes=None means all)")
    required = {**{r: None for r in (runtimes or [])}, **require}
    arrays = read_npz(inputs) if inputs else {}  # read once; every model validates the same arrays
    user_cases = {s.name: load_npz(inputs, s, arrays) for s in specs} if inputs else {}
    with_tf = tensorflow_available()
    prebuilt = models or {}
    with contextlib.ExitStack() as stack:
        if scope is None:  # one browser for every model; stopped here, also on Ctrl-C
            scope = stack.enter_context(RunScope())
        repro_root = Path(artifacts) / layout.REPRO if repro_root is None else Path(repro_root)
        reports = [verify_model(s, Path(artifacts) / s.name, chosen, user_cases.get(s.name), with_tf,
                                prebuilt.get(s.name), required, scope, localize, repro_root) for s in specs]
        services = scope.environment()  # e.g. the browser's version
    for r in reports:
        r.allow_uncovered, r.allow_insensitive = allow_uncovered, allow_insensitive
    return Report(reports, set(required), time.perf_counter() - start, {**environment(), **services})
