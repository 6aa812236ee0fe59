"""Run every case through every runtime and collect the results as data.

Nothing here raises on a mismatch: `verify_models` returns a `Report`, and
the caller decides (the CLIs raise one ParityError listing every failure).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tf_parity_export.models import ArtifactError, InputError, ModelSpec, UserError, get_spec

from . import layout
from .compare import OutputComparison, compare_output
from .inputs import BOUNDARY_MARGIN, Case, load_npz, random_cases, read_npz, validate_feed
from .runtimes import REFERENCE, RUNTIMES, Subject, Unavailable
from .structure import Check, onnx_checks, saved_model_checks
from .test_data import read_sets

REPORT_SCHEMA = "tf-parity-report/1"
# Cases that run on every runtime but are reported apart, never counted as passes:
# on a decision boundary (float rounding may take either side), or driving a
# loop to its iteration cap (the seed's loop would never end on that input).
APART = {"boundary": "boundary", "capped": "loop_cap"}
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
    """One case through one runtime. `status`: passed, failed, error, or one of
    the statuses of cases run but not counted (`APART`)."""

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
    runtimes: dict[str, str] = field(default_factory=dict)  # name -> "ran" | "unavailable: ..." | "error: ..."
    cases: list[dict[str, Any]] = field(default_factory=list)
    results: list[CaseResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    coverage: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""

    def failures(self, required: set[str] = frozenset()) -> list[str]:
        """One line per problem; empty when this model passed."""
        if self.error:
            return [self.error]
        lines = [f"{self.model}: structure check {c.name} failed: {c.detail}" for c in self.checks if not c.passed]
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
        lines += [f"{self.model}: no input covers '{need}' (coverage)" for need, hits in self.coverage.items() if not hits]
        counted = [c for c in self.cases if c["kind"] not in APART]
        if self.cases and not counted and self.results:
            kinds = sorted({APART[c["kind"]] for c in self.cases})
            lines.append(f"{self.model}: no case was compared: all {len(self.cases)} are {' or '.join(kinds)} "
                         "cases, reported but not counted; give inputs away from the thresholds")
        return lines

    def to_json(self, required: set[str] = frozenset()) -> dict[str, Any]:
        return {"model": self.model, "passed": not self.failures(required), "error": self.error,
                "reference": self.reference,
                "runtimes": self.runtimes, "cases": self.cases, "coverage": self.coverage,
                "checks": [c.to_json() for c in self.checks], "results": [r.to_json() for r in self.results]}


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


def stored_cases(folder: Path, name: str = "") -> list[Case]:
    """The control-flow coverage inputs the exporter found and stored (keys "<case>/<input>")."""
    path = folder / layout.CASES
    if not path.exists():
        return []
    data = read_npz(path, error=ArtifactError, label=f"{name}: {layout.CASES}")
    if not all(key.count("/") == 1 and all(key.split("/")) for key in data):
        raise ArtifactError(f"{name}: {layout.CASES} has keys {sorted(data)[:5]}, not '<case>/<input>'; "
                            f"re-export with `export-models {name}`")
    return [Case(key.split("/")[0], "coverage", {key.split("/")[1]: data[key]}) for key in sorted(data)]


def verify_model(spec: ModelSpec, folder: Path, runtimes: list[str], user_case: Case | None = None,
                 with_tf: bool = True, prebuilt: Any = None) -> ModelReport:
    """Verify one model folder on the named runtimes; problems become data in the report.

    Nothing in the folder is parsed or loaded before every integrity check
    passed (`layout.check_folder`: paths, hashes, unlisted files, the manifest).
    With TensorFlow, the reference is TF eager on the model rebuilt from the
    folder's weights, and the stored test data must match it. Without
    TensorFlow, the stored test data sets are replayed: their outputs, TF
    eager's at export time, are the reference.
    """
    report = ModelReport(spec.name, reference=REFERENCE if with_tf else STORED)
    try:
        card = layout.check_folder(folder.parent, folder.name)
        stored = read_sets(folder, spec, card)
        if not with_tf and user_case:
            raise InputError(f"{spec.name}: --inputs needs TensorFlow to compute reference outputs; "
                             "without it only the stored test data sets can be replayed")
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

    probe = spec.make_probe(model) if model is not None else None
    recorded = {s.case.name: s.path for s in stored}
    for case in cases:
        info: dict[str, Any] = {"name": case.name, "kind": case.kind,
                                "batch": int(next(iter(case.feed.values())).shape[0])}
        if probe is not None:
            info["path"] = probe.trace(next(iter(case.feed.values()))).to_json()
        elif recorded.get(case.name):
            info["path"] = {**recorded[case.name], "source": "recorded at export"}
        if "path" in info and info["path"].get("capped"):
            info["kind"] = "capped"
        elif "path" in info and info["path"]["margin"] < BOUNDARY_MARGIN:
            info["kind"] = "boundary"
        report.cases.append(info)
    apart = {c["name"]: APART[c["kind"]] for c in report.cases if c["kind"] in APART}
    if spec.probe and user_case is None:
        counted = [c for c in report.cases if c["kind"] not in APART and "path" in c]
        report.coverage = {need: [c["name"] for c in counted if hit(c["path"])] for need, hit in REQUIRED_PATHS.items()}

    subject = Subject(spec, folder, model)
    if model is not None:
        reference = RUNTIMES[REFERENCE](subject)
        expected = {case.name: infer(spec, reference, case.feed) for case in cases}
        report.checks.append(_stored_outputs_check(spec, stored, reference, expected, cases))
    else:
        expected = {s.case.name: s.expected for s in stored}
    for name in runtimes:
        try:
            runtime = RUNTIMES[name](subject)
        except Unavailable as e:
            report.runtimes[name] = f"unavailable: {e}"
            continue
        except UserError as e:
            report.runtimes[name] = f"error: {e}"
            continue
        report.runtimes[name] = "ran"
        if hasattr(runtime, "signature"):
            report.checks += saved_model_checks(spec, runtime.signature)
        for case in cases:
            report.results.append(_run_case(spec, runtime, case, expected[case.name], apart.get(case.name)))
    return report


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
    model = prebuilt if prebuilt is not None else spec.build(card.get("seed", spec.seed))
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
              apart: str | None) -> CaseResult:
    """Run one case; `apart` is the status of a case reported but not counted (see APART)."""
    try:
        got = infer(spec, runtime, case.feed)
    except Exception as e:  # a runtime failing on valid input is a finding, not a crash
        return CaseResult(runtime.name, case.name, "error", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    outputs = [compare_output(t.name, expected[t.name], got.get(t.name), spec.atol, spec.rtol,
                              _terms(spec, t.name, case.feed)) for t in spec.outputs]
    status = apart or ("passed" if all(outputs) else "failed")
    return CaseResult(runtime.name, case.name, status, outputs)


def verify_models(
    names: list[str],
    artifacts: Path,
    runtimes: list[str] | None = None,
    inputs: Path | None = None,
    models: dict[str, Any] | None = None,
) -> Report:
    """Verify the named models' artifacts under `artifacts`.

    Args:
        names: registry names.
        artifacts: the folder `export-models` wrote.
        runtimes: runtime names (see `verify.runtimes.RUNTIMES`); None means
            all; an empty list is a ValueError (nothing would be compared).
            Named ones that turn out unavailable count as failures;
            unavailable ones picked by default are only reported.
        inputs: an optional `.npz` (keys = input names) used instead of the
            built-in cases.
        models: already-built Keras models by name (the exporter's), into
            which the folder's weights are loaded instead of rebuilding them.

    Without TensorFlow (an environment with only onnxruntime and onnx), the
    stored test data sets are replayed on the ONNX runtimes instead.

    Returns:
        A `Report`, truthy when everything agreed.
    """
    from tf_parity_export.models.lazy_tf import tensorflow_available

    start = time.perf_counter()
    specs = [get_spec(n) for n in names]
    chosen = list(RUNTIMES) if runtimes is None else runtimes
    if not chosen:
        raise ValueError("verify_models needs at least one runtime to compare (runtimes=None means all)")
    arrays = read_npz(inputs) if inputs else {}  # read once; every model validates the same arrays
    user_cases = {s.name: load_npz(inputs, s, arrays) for s in specs} if inputs else {}
    with_tf = tensorflow_available()
    prebuilt = models or {}
    reports = [verify_model(s, Path(artifacts) / s.name, chosen, user_cases.get(s.name), with_tf, prebuilt.get(s.name))
               for s in specs]
    required = set() if runtimes is None else set(runtimes)
    return Report(reports, required, time.perf_counter() - start, environment())
