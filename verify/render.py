"""Render a Report for people (a table) and for machines (JSON)."""

from __future__ import annotations

from pathlib import Path

from tf_parity_export.models import UserError

from .coverage import report_lines as graph_coverage_lines
from .layout import check_target, write_json, write_text
from .verifier import APART, STORED, UNFINISHED, ModelReport, Report, insensitive_line


def _cell(m: ModelReport, runtime: str) -> str:
    state = m.runtimes.get(runtime, "")
    if not state:
        return "-"
    if state.startswith("unavailable"):
        return "unavailable"
    if state.startswith("unsupported"):
        return "unsupported"
    if state.startswith("error"):
        return "ERROR"
    results = [r for r in m.results if r.runtime == runtime]
    counted = [r for r in results if r.status not in APART.values()]
    worst = max((o.max_abs for r in counted for o in r.outputs), default=0.0)
    if any(r.status == "error" for r in results):
        text = "ERROR"
    elif not counted:
        text = "none"  # every case was reported apart: nothing passed
    elif all(r.status == "passed" for r in counted):
        text = f"ok {worst:.1e}"
    elif any(r.status == "failed" for r in counted):
        text = f"FAIL {worst:.1e}"
    else:  # reduced precision outside the tolerance: measured, marked with what it computes in
        text = f"~{m.precision[runtime]['computes_in']} {worst:.1e}"
    boundary = sum(r.status == "boundary" for r in results)
    capped = sum(r.status == "loop_cap" for r in results)
    return text + (f" +{boundary}b" if boundary else "") + (f" +{capped}c" if capped else "")


def table(report: Report, tolerances: bool = False) -> str:
    """Models x runtimes: the worst max-abs error over all cases, and the status.

    Runtimes unavailable for every model get no column, only a note saying why.
    With `tolerances`, a second table gives each runtime's tightest passing tolerance.
    """
    every = list(dict.fromkeys(rt for m in report.models for rt in m.runtimes))
    runtimes = [rt for rt in every
                if any(not m.runtimes.get(rt, "unavailable").startswith("unavailable") for m in report.models)]
    unavailable = [rt for rt in every if rt not in runtimes]
    header = ["model", "cases", *runtimes]
    rows = []
    for m in report.models:
        if m.error:
            rows.append([m.model, "-", *(["ERROR"] * len(runtimes))])
        else:
            rows.append([m.model, str(len(m.cases)), *(_cell(m, rt) for rt in runtimes)])
    lines = text_table(header, rows)
    notes = []
    for rt in [*runtimes, *unavailable]:
        reasons = {m.runtimes[rt] for m in report.models if m.runtimes.get(rt, "").startswith("unavailable")}
        notes += [f"{rt}: {reason}" for reason in sorted(reasons)]
    for m in report.models:  # a deployment runtime that cannot take a model: apart from mismatches
        notes += [f"{m.model}/{rt}: {state}{' (required: fails the run)' if rt in report.required else ''}"
                  for rt, state in m.runtimes.items() if state.startswith("unsupported")]
    notes += _reduced_notes(report)
    for m in report.models:
        notes += [insensitive_line(m.model, name, info) + ("; accepted (--allow-insensitive)" if m.allow_insensitive
                                                           else "") for name, info in m.insensitive.items()]
        notes += graph_coverage_lines(m)
        if m.coverage:
            got = ", ".join(f"{need} ({len(hits)})" if hits else f"{need} (MISSING)" for need, hits in m.coverage.items())
            notes.append(f"{m.model} control-flow coverage: {got}")
        for c in m.cases:
            if c["kind"] == "boundary":
                p = c["path"]
                notes.append(f"{m.model} boundary case {c['name']}: a tested norm is within {p['margin']:.1e} "
                             "(relative) of its threshold; reported, not counted as a pass")
            elif c["kind"] == UNFINISHED:
                notes.append(f"{m.model} case {c['name']}: {c['reason']}: run on no runtime (each would hang), "
                             "not counted")
            elif c["kind"] == "capped" and "norm_before_loop" in c["path"]:
                notes.append(f"{m.model} loop-cap case {c['name']}: the norm entering the loop is "
                             f"{c['path']['norm_before_loop']:.3g}, so the loop stopped at its "
                             f"{c['path']['iterations']}-iteration cap (the seed's loop never ends on this input); "
                             "reported, not counted as a pass")
            elif c["kind"] == "capped":
                loops = ", ".join(c["path"].get("capped_loops", [])) or "a loop"
                notes.append(f"{m.model} loop-cap case {c['name']}: Loop {loops} ran to its trip-count limit with "
                             "its condition still true (it did not end on its own); reported, not counted as a pass")
    notes += [loc.line(m.model) for m in report.models for loc in m.localization.values()]
    stored = any(m.reference == STORED for m in report.models)
    reference = ("the stored test data sets' outputs (TensorFlow is not installed: replaying them)"
                 if stored else "tf_eager")
    cells = (f"cells: worst max-abs error vs {reference} over all cases; +Nb = N boundary cases, "
             "+Nc = N loop-cap cases, run but not counted")
    verdict = f"{'PASSED' if report else 'FAILED'} in {report.seconds:.1f} s"
    extra = ["", tolerance_table(report)] if tolerances else []
    return "\n".join([*lines, "", cells, *notes, *extra, verdict])


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, a dashed line under the header."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _reduced_notes(report: Report) -> list[str]:
    """One line per reduced-precision runtime that ran: what it computes in and its worst error."""
    notes = []
    for rt in dict.fromkeys(rt for m in report.models for rt in m.precision):
        found = [(m.model, m.precision[rt]) for m in report.models if rt in m.precision and not m.precision[rt]["exact"]]
        if not found:
            continue
        measured = [(model, p) for model, p in found if p["max_abs"] is not None]
        model, worst = max(measured, key=lambda mp: mp[1]["max_abs"], default=(None, None))
        computes = "/".join(sorted({p["computes_in"] for _, p in found}))
        head = f"{rt}: reduced precision (mode {found[0][1]['mode']}, computes in {computes} here)"
        if rt in report.required:
            notes.append(f"{head}: required, held to atol={found[0][1]['atol']:g}")
        elif worst is not None:
            notes.append(f"{head}: measured, not failed; worst {worst['max_abs']:.2g} ({model}, case "
                         f"{worst['worst_case']}); hold it to a tolerance with --require {rt}:ATOL")
    return notes


def tolerance_table(report: Report) -> str:
    """Per model and runtime that ran: its mode, and the tightest atol (whatever the rtol) and
    rtol (whatever the atol) it would pass: evidence to choose tolerances from."""
    header = ["model", "runtime", "mode", "computes in", "tightest atol", "tightest rtol", "within model tolerance",
              "error / scale", "min cosine", "min SNR dB"]

    def fmt(v: float | None, spec: str = ".2e") -> str:
        return "-" if v is None else format(v, spec)  # inf: no tolerance of that kind passes

    rows = []
    for m in report.models:
        for rt, p in m.precision.items():
            rows.append([m.model, rt, p["mode"], p["computes_in"], fmt(p["tightest_atol"]), fmt(p["tightest_rtol"]),
                         "yes" if p["within_tolerance"] else "no", fmt(p.get("worst_scale_error")),
                         fmt(p.get("min_cosine"), ".9f"), fmt(p.get("min_snr_db"), ".1f")])
    lines = text_table(header, rows)
    return "\n".join(lines)


def write_report(report: Report, path: Path) -> Path:
    """Write the report as JSON, and beside it the same data as a page
    (`report.json` -> `report.html`), atomically; if the page cannot be written, the JSON is
    removed too (a UserError). Returns the page's path."""
    from .report_html import render_html

    check_report_path(path)  # both, before either is written
    data = report.to_json()
    write_json(path, data)
    page = page_path(path)
    try:
        write_text(page, render_html(data))
    except UserError:
        Path(path).unlink(missing_ok=True)  # a report is the pair: never leave half of it
        raise
    return page


def check_report_path(json_path: Path) -> None:
    """Refuse, in one line, a report path (or the page's beside it) that holds a symlink, a FIFO,
    a device or a socket: they are never replaced (see `layout.check_target`). The CLIs call
    this before running, so a run is not wasted on a report that cannot be written."""
    check_target(Path(json_path))
    check_target(page_path(json_path))


def page_path(json_path: Path) -> Path:
    """Where the page for a JSON report goes: the same name with .html."""
    json_path = Path(json_path)
    return json_path.with_suffix(".html") if json_path.suffix != ".html" else json_path.with_name(json_path.name + ".html")
