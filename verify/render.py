"""Render a Report for people (a table) and for machines (JSON)."""

from __future__ import annotations

from pathlib import Path

from .layout import write_json
from .verifier import APART, STORED, ModelReport, Report


def _cell(m: ModelReport, runtime: str) -> str:
    state = m.runtimes.get(runtime, "")
    if not state:
        return "-"
    if state.startswith("unavailable"):
        return "unavailable"
    if state.startswith("error"):
        return "ERROR"
    results = [r for r in m.results if r.runtime == runtime]
    counted = [r for r in results if r.status not in APART.values()]
    worst = max((o.max_abs for r in counted for o in r.outputs), default=0.0)
    if any(r.status == "error" for r in results):
        text = "ERROR"
    elif not counted:
        text = "none"  # every case was reported apart: nothing passed
    else:
        text = ("ok " if all(r.status == "passed" for r in counted) else "FAIL ") + f"{worst:.1e}"
    boundary = sum(r.status == "boundary" for r in results)
    capped = sum(r.status == "loop_cap" for r in results)
    return text + (f" +{boundary}b" if boundary else "") + (f" +{capped}c" if capped else "")


def table(report: Report) -> str:
    """Models x runtimes: the worst max-abs error over all cases, and the status."""
    runtimes = list(dict.fromkeys(rt for m in report.models for rt in m.runtimes))
    header = ["model", "cases", *runtimes]
    rows = []
    for m in report.models:
        if m.error:
            rows.append([m.model, "-", *(["ERROR"] * len(runtimes))])
        else:
            rows.append([m.model, str(len(m.cases)), *(_cell(m, rt) for rt in runtimes)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = []
    for rt in runtimes:
        reasons = {m.runtimes[rt] for m in report.models if m.runtimes.get(rt, "").startswith("unavailable")}
        notes += [f"{rt}: {reason}" for reason in sorted(reasons)]
    for m in report.models:
        if m.coverage:
            got = ", ".join(f"{need} ({len(hits)})" if hits else f"{need} (MISSING)" for need, hits in m.coverage.items())
            notes.append(f"{m.model} control-flow coverage: {got}")
        for c in m.cases:
            if c["kind"] == "boundary":
                p = c["path"]
                notes.append(f"{m.model} boundary case {c['name']}: a tested norm is within {p['margin']:.1e} "
                             "(relative) of its threshold; reported, not counted as a pass")
            elif c["kind"] == "capped":
                notes.append(f"{m.model} loop-cap case {c['name']}: the norm entering the loop is "
                             f"{c['path']['norm_before_loop']:.3g}, so the loop stopped at its "
                             f"{c['path']['iterations']}-iteration cap (the seed's loop never ends on this input); "
                             "reported, not counted as a pass")
    stored = any(m.reference == STORED for m in report.models)
    reference = ("the stored test data sets' outputs (TensorFlow is not installed: replaying them)"
                 if stored else "tf_eager")
    cells = (f"cells: worst max-abs error vs {reference} over all cases; +Nb = N boundary cases, "
             "+Nc = N loop-cap cases, run but not counted")
    verdict = f"{'PASSED' if report else 'FAILED'} in {report.seconds:.1f} s"
    return "\n".join([*lines, "", cells, *notes, verdict])


def write_report(report: Report, path: Path) -> None:
    """Write the report as JSON, atomically."""
    write_json(path, report.to_json())
