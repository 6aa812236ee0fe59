"""The verification report as a page people look at: `report.html` beside `report.json`.

Rendered from the report's JSON dict (`Report.to_json()`), so the table, the
JSON and the page show the same data. Self-contained: inline CSS and SVG,
no script, nothing fetched from the network.

What it shows:
- a matrix of models x runtimes, each cell coloured by the worst error
  relative to the model's tolerance on a log scale; bit-identical results,
  reduced-precision findings (a runtime whose numeric mode is not fp32),
  errors and unavailable runtimes each look different;
- per model, every case through every runtime, and for models whose cases
  record a control-flow path (FancyMLP's loop and branch), the norm entering
  the loop against the iterations taken and the branch, with the thresholds
  drawn and boundary cases marked;
- the environment the run happened in.
"""

from __future__ import annotations

import html
import math
from typing import Any

# FancyMLP's thresholds (models/fancy_mlp.py UPPER and LOWER; a test keeps them equal):
# the loop halves while the norm is > 1.0, then the branch scales by 10 if it is < 0.8.
LOOP_THRESHOLD = 1.0
BRANCH_THRESHOLD = 0.8

# Colour scale for error / tolerance, by log10: green far below tolerance, amber at it, red beyond.
SCALE_MIN, SCALE_MAX = -4.0, 2.0
STOPS = [(-4.0, (26, 152, 80)), (-2.0, (102, 189, 99)), (-1.0, (166, 217, 106)), (-0.3, (217, 239, 139)),
         (0.0, (254, 224, 139)), (0.0001, (244, 109, 67)), (2.0, (165, 0, 38))]
BIT_EXACT = (0, 104, 55)
REDUCED_MODES = ("bf16", "tf32", "fp16", "auto")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px 32px;color:#1d232b;background:#fbfbfd}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dde1e6;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}
.pass{background:#1a7f37} .fail{background:#b42318}
.muted{color:#5b6470} .small{font-size:12px}
table{border-collapse:collapse} td,th{padding:4px 8px}
table.matrix th{font-weight:600;font-size:12px;text-align:center;vertical-align:bottom}
table.matrix th.model{text-align:left;font-size:14px;white-space:nowrap;padding-right:14px}
table.matrix td.cell{min-width:78px;height:46px;white-space:nowrap;padding:2px 4px;text-align:center;border:2px solid #fff;font-size:11px;line-height:1.25}
td.cell b{font-size:13px} td.cell .small{font-size:11px} .tag{display:inline-block;font-size:10px;padding:0 4px;border-radius:3px;background:rgba(255,255,255,.75);color:#222;margin-left:2px}
td.unsupported{background:repeating-linear-gradient(135deg,#fdf0dc,#fdf0dc 6px,#fff8ee 6px,#fff8ee 12px)!important;color:#8a5a12;outline:1px dashed #d9a55a;outline-offset:-3px}
td.unavailable{background:repeating-linear-gradient(45deg,#eceef1,#eceef1 6px,#f7f8fa 6px,#f7f8fa 12px)!important;color:#7a828c;outline:1px dashed #b8bec6;outline-offset:-3px}
td.error{background:#2b0b0e!important;color:#ffb4ab}
td.reduced{background-image:repeating-linear-gradient(135deg,rgba(255,255,255,.45) 0 5px,transparent 5px 10px)}
td.measured{outline:3px solid #6941c6;outline-offset:-4px}
td.none{background:#fff;color:#aaa}
.failures{background:#fff1f0;border:1px solid #f3b4ae;padding:8px 12px;border-radius:6px}
.failures li{font-family:ui-monospace,Menlo,monospace;font-size:12px}
table.kv td{border-bottom:1px solid #eceef1;font-size:13px} table.kv td:first-child{color:#5b6470;padding-right:24px}
table.cases th{font-size:11px;font-weight:600;text-align:center;padding:2px 4px}
table.cases td{font-size:12px;padding:1px 6px;border-bottom:1px solid #f0f1f3}
table.cases td.sq{width:22px;height:16px;padding:0;border:1px solid #fff}
td.sq.boundary{outline:2px dashed #d92d20;outline-offset:-2px}
.legend{display:flex;gap:18px;align-items:center;flex-wrap:wrap;margin:8px 0 4px;font-size:12px}
.swatch{display:inline-block;width:26px;height:16px;vertical-align:middle;margin-right:4px;border:1px solid #ccd}
.model{margin-bottom:12px} .row{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
code{font-family:ui-monospace,Menlo,monospace;font-size:12px;background:#eef0f3;padding:0 3px;border-radius:3px}
"""


def render_html(report_json: dict[str, Any]) -> str:
    """The whole page for one verification report (the dict `Report.to_json()` returns)."""
    models = report_json.get("models", [])
    every = list(dict.fromkeys(rt for m in models for rt in m.get("runtimes", {})))
    # a runtime unavailable for every model gets no column, only its reason under the matrix
    runtimes = [rt for rt in every
                if any(not m.get("runtimes", {}).get(rt, "unavailable").startswith("unavailable") for m in models)]
    passed = bool(report_json.get("passed"))
    reference = next((m.get("reference") for m in models if m.get("reference")), "tf_eager")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'><link rel='icon' href='data:,'>",
        f"<title>tf-parity-export: verification report ({'passed' if passed else 'FAILED'})</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>tf-parity-export: do all runtimes compute the same function?</h1>",
        f"<p><span class='verdict {'pass' if passed else 'fail'}'>{'PASSED' if passed else 'FAILED'}</span> "
        f"<span class='muted'>{len(models)} models &times; {len(runtimes)} runtimes "
        f"({len(every) - len(runtimes)} more unavailable here) in "
        f"{_num(report_json.get('seconds'), '.1f')} s; reference: {_e(reference)}</span></p>",
    ]
    failures = report_json.get("failures") or []
    if failures:
        parts.append("<div class='failures'><b>Failures</b><ul>" +
                     "".join(f"<li>{_e(f)}</li>" for f in failures) + "</ul></div>")
    parts += ["<h2>Models &times; runtimes</h2>", _legend(), _matrix(models, runtimes), _unavailable_notes(models)]
    parts.append("<h2>Per model</h2>")
    parts += [_model_section(m, runtimes) for m in models]
    parts += ["<h2>Environment</h2>", _environment(report_json.get("environment", {})),
              f"<p class='muted small'>schema {_e(report_json.get('schema', '?'))}; "
              "rendered from report.json (the same data as the table and the JSON)</p>",
              "</body></html>"]
    return "\n".join(parts)


# ---------------------------------------------------------------- numbers


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str = ".1e") -> str:
    if isinstance(value, (int, float)) and math.isinf(value):
        return "\u221e" if value > 0 else "-\u221e"
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _ratio(output: dict[str, Any]) -> float:
    """The worst error relative to tolerance, as min(max_abs / atol, max_rel / rtol).

    An element fails only beyond both tolerances, so a failing output is > 1.
    The two maxima may come from different elements, so for a passing output
    the bound is clipped to 1. A missing number (non-finite, or an output
    that could not be compared) counts as infinitely far when it failed.
    """
    atol, rtol = output.get("atol") or 0.0, output.get("rtol") or 0.0
    max_abs, max_rel = output.get("max_abs"), output.get("max_rel")
    bounds = []
    if isinstance(max_abs, (int, float)) and atol > 0:
        bounds.append(max_abs / atol)
    if isinstance(max_rel, (int, float)) and rtol > 0:
        bounds.append(max_rel / rtol)
    if not bounds:
        return 0.0 if output.get("passed") and max_abs == 0 else (0.0 if output.get("passed") else math.inf)
    ratio = min(bounds)
    return min(ratio, 1.0) if output.get("passed") else max(ratio, 1.0 + 1e-9)


def _colour(ratio: float) -> tuple[int, int, int]:
    if ratio == 0:
        return BIT_EXACT
    x = min(max(math.log10(ratio) if math.isfinite(ratio) else SCALE_MAX, SCALE_MIN), SCALE_MAX)
    for (x0, c0), (x1, c1) in zip(STOPS, STOPS[1:]):
        if x <= x1:
            t = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
            return tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return STOPS[-1][1]


def _css(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    ink = "#fff" if 0.299 * r + 0.587 * g + 0.114 * b < 140 else "#1d232b"
    return f"background-color:rgb({r},{g},{b});color:{ink}"


def _precision(model: dict[str, Any], runtime: str) -> dict[str, Any]:
    """The runtime's numeric mode for this model; a report without one is fp32 and exact."""
    found = (model.get("precision") or {}).get(runtime) or {}
    mode = found.get("mode") or "fp32"
    return {**found, "mode": mode, "exact": found.get("exact", mode not in REDUCED_MODES)}


def _summary(model: dict[str, Any], runtime: str) -> dict[str, Any]:
    """One cell's data: state, worst ratio and max-abs over counted cases, boundary count."""
    state = model.get("runtimes", {}).get(runtime, "")
    results = [r for r in model.get("results", []) if r.get("runtime") == runtime]
    counted = [r for r in results if r.get("status") != "boundary"]
    outputs = [o for r in counted for o in r.get("outputs", [])]
    ratios = [_ratio(o) for o in outputs]
    abs_errors = [o["max_abs"] for o in outputs if isinstance(o.get("max_abs"), (int, float))]
    statuses = {r.get("status") for r in counted}
    return {"state": state, "ratio": max(ratios, default=0.0), "max_abs": max(abs_errors, default=None),
            "boundary": len(results) - len(counted), "cases": len(results), "statuses": statuses,
            "reasons": [f"{r.get('case')}: {r.get('reason')}" for r in results if r.get("status") == "error"]}


# ---------------------------------------------------------------- the matrix


def _cell(model: dict[str, Any], runtime: str) -> str:
    if model.get("error"):
        return f"<td class='cell error' title='{_e(model['error'])}'>error</td>"
    s = _summary(model, runtime)
    state, prec = s["state"], _precision(model, runtime)
    if not state:
        return "<td class='cell none'>&ndash;</td>"
    if state.startswith("unavailable"):
        return f"<td class='cell unavailable' title='{_e(state)}'>unavailable</td>"
    if state.startswith("unsupported"):
        return f"<td class='cell unsupported' title='{_e(state)}'>unsupported</td>"
    if state.startswith("error") or "error" in s["statuses"]:
        detail = state if state.startswith("error") else "; ".join(s["reasons"])
        return f"<td class='cell error' title='{_e(detail)}'><b>error</b></td>"
    classes, tags = ["cell"], []
    reduced = not prec["exact"]
    if reduced:
        classes.append("reduced")
        # what it actually computes in: "auto" alone would hide that the device picked bf16
        computes = prec.get("computes_in")
        tags.append(computes if computes and computes not in (prec["mode"], "unknown") else prec["mode"])
    if "measured" in s["statuses"]:
        classes.append("measured")
        tags.append("measured")
    failed = "failed" in s["statuses"]
    ratio = s["ratio"]
    value = "0" if s["max_abs"] == 0 else _num(s["max_abs"])
    verdict = "FAIL " if failed else ""
    line2 = "bit-identical" if ratio == 0 else f"{_num(ratio, '.2g')}&times; tol"
    if s["boundary"]:
        line2 += f" +{s['boundary']}b"
    title = [f"{runtime} on {model.get('model')}: worst max-abs {_num(s['max_abs'], '.3e')}, "
             f"{'infinite' if not math.isfinite(ratio) else format(ratio, '.3g')} x tolerance over "
             f"{s['cases'] - s['boundary']} counted cases",
             f"precision mode {prec['mode']} ({'exact: held to the tolerance' if prec['exact'] else 'reduced: measured'})"]
    if reduced:
        title.append(f"tightest tolerance it passes: atol {_num(prec.get('tightest_atol'), '.1e')}, "
                     f"rtol {_num(prec.get('tightest_rtol'), '.1e')}")
    if s["boundary"]:
        title.append(f"{s['boundary']} boundary cases run and reported, not counted")
    tag_html = "".join(f"<span class='tag'>{_e(t)}</span>" for t in tags)
    return (f"<td class='{' '.join(classes)}' style='{_css(_colour(ratio))}' title='{_e('; '.join(title))}'>"
            f"<b>{verdict}{value}</b>{tag_html}<br><span class='small'>{line2}</span></td>")


def _matrix(models: list[dict[str, Any]], runtimes: list[str]) -> str:
    head = "".join(f"<th>{_e(rt).replace('_', '_<wbr>')}</th>" for rt in runtimes)  # long names may wrap
    rows = []
    for m in models:
        cells = "".join(_cell(m, rt) for rt in runtimes)
        mark = "&#10003;" if m.get("passed") else "&#10007;"
        rows.append(f"<tr><th class='model'>{_e(m.get('model'))} <span class='muted small'>{mark} "
                    f"{len(m.get('cases', []))} cases</span></th>{cells}</tr>")
    return (f"<table class='matrix' id='matrix'><tr><th class='model'>model</th>{head}</tr>"
            f"{''.join(rows)}</table>"
            "<p class='muted small'>Each cell: the worst max-abs error against the reference over the counted "
            "cases (bold), and the worst error relative to the model's tolerance (an element fails only beyond "
            "both atol and rtol&middot;|reference|). +Nb: boundary cases run and reported, not counted. "
            "Hover a cell for details.</p>")


def _legend() -> str:
    width, height = 360, 16
    stops = "".join(
        f"<stop offset='{(x - SCALE_MIN) / (SCALE_MAX - SCALE_MIN):.4f}' stop-color='rgb{c}'/>" for x, c in STOPS)
    ticks = []
    for p in range(int(SCALE_MIN), int(SCALE_MAX) + 1):
        x = (p - SCALE_MIN) / (SCALE_MAX - SCALE_MIN) * width
        label = "tolerance" if p == 0 else f"1e{p}"
        ticks.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{height}' y2='{height + 4}' stroke='#555'/>"
                     f"<text x='{x:.1f}' y='{height + 15}' font-size='10' text-anchor='middle'>{label}</text>")
    bar = (f"<svg width='{width + 40}' height='{height + 20}' role='img' aria-label='colour scale'>"
           f"<defs><linearGradient id='scale'>{stops}</linearGradient></defs>"
           f"<g transform='translate(20,0)'><rect width='{width}' height='{height}' fill='url(#scale)' stroke='#999'/>"
           f"{''.join(ticks)}</g></svg>")
    swatch = "<span class='swatch' style='{}'></span>{}"
    items = [
        "<span>error / tolerance (log scale):</span>", bar,
        swatch.format(_css(BIT_EXACT), "bit-identical"),
        "<span><span class='swatch' style='background:rgb(217,239,139);background-image:repeating-linear-gradient("
        "135deg,rgba(255,255,255,.45) 0 5px,transparent 5px 10px)'></span>reduced precision (bf16/tf32/fp16: "
        "measured, striped)</span>",
        "<span><span class='swatch' style='background:#fff;outline:3px solid #6941c6;outline-offset:-4px'></span>"
        "measured beyond tolerance (reported, not failed)</span>",
        "<span><span class='swatch' style='background:repeating-linear-gradient(45deg,#eceef1,#eceef1 4px,#f7f8fa 4px,"
        "#f7f8fa 8px)'></span>unavailable</span>",
        "<span><span class='swatch' style='background:repeating-linear-gradient(135deg,#fdf0dc,#fdf0dc 4px,#fff8ee 4px,"
        "#fff8ee 8px)'></span>unsupported (the runtime cannot take the model)</span>",
        "<span><span class='swatch' style='background:#2b0b0e'></span>error</span>",
    ]
    return f"<div class='legend'>{''.join(items)}</div>"


def _unavailable_notes(models: list[dict[str, Any]]) -> str:
    reasons: dict[str, set[str]] = {}
    for m in models:
        for rt, state in m.get("runtimes", {}).items():
            if state.startswith("unavailable"):
                reasons.setdefault(rt, set()).add(state.removeprefix("unavailable: "))
    unsupported = [(m.get("model", "?"), rt, state.removeprefix("unsupported: ")) for m in models
                   for rt, state in m.get("runtimes", {}).items() if state.startswith("unsupported")]
    parts = []
    if reasons:
        items = "".join(f"<li><b>{_e(rt)}</b>: {_e(r)}</li>" for rt, rs in reasons.items() for r in sorted(rs))
        parts.append(f"<h3>Unavailable here, and why</h3><ul class='small'>{items}</ul>")
    if unsupported:
        items = "".join(f"<li><b>{_e(model)} / {_e(rt)}</b>: {_e(r)}</li>" for model, rt, r in unsupported)
        parts.append("<h3>Unsupported: runtimes that cannot take a model (not failed unless required), and why</h3>"
                     f"<ul class='small'>{items}</ul>")
    return "".join(parts)


# ---------------------------------------------------------------- per model


def _model_section(model: dict[str, Any], runtimes: list[str]) -> str:
    name = model.get("model", "?")
    head = (f"<div class='model' id='model-{_e(name)}'><h3>{_e(name)} "
            f"<span class='verdict {'pass' if model.get('passed') else 'fail'} small'>"
            f"{'passed' if model.get('passed') else 'FAILED'}</span></h3>")
    if model.get("error"):
        return head + f"<p>{_e(model['error'])}</p></div>"
    body = [_case_grid(model, [rt for rt in runtimes if model.get("runtimes", {}).get(rt) == "ran"])]
    if any("path" in c for c in model.get("cases", [])):
        body.append(_coverage_chart(model))
    checks = model.get("checks", [])
    bad = [c for c in checks if not c.get("passed")]
    check_line = (f"{len(checks)} structure checks passed" if not bad else
                  "failed checks: " + "; ".join(f"{c.get('check')}: {c.get('detail')}" for c in bad))
    coverage = model.get("coverage") or {}
    cov_line = ("coverage: " + ", ".join(f"{need} ({len(hits)})" if hits else f"{need} (MISSING)"
                                         for need, hits in coverage.items())) if coverage else ""
    notes = f"<p class='small muted'>{_e(check_line)}{'<br>' + _e(cov_line) if cov_line else ''}</p>"
    return head + f"<div class='row'>{''.join(body)}</div>{notes}</div>"


def _case_grid(model: dict[str, Any], runtimes: list[str]) -> str:
    """Every case (rows) through every runtime that ran (columns), coloured like the matrix."""
    by = {(r.get("case"), r.get("runtime")): r for r in model.get("results", [])}
    head = "".join(f"<th title='{_e(rt)}'>{_e(_short(rt))}</th>" for rt in runtimes)
    rows = []
    for case in model.get("cases", []):
        path = case.get("path") or {}
        desc = (f"{path.get('iterations')} it, {path.get('branch')}" if path else "")
        cells = []
        for rt in runtimes:
            r = by.get((case.get("name"), rt))
            if r is None:
                cells.append("<td class='sq none'></td>")
                continue
            status = r.get("status")
            ratio = max((_ratio(o) for o in r.get("outputs", [])), default=0.0)
            style = "background:#2b0b0e" if status == "error" else _css(_colour(ratio))
            extra = " boundary" if status == "boundary" else ""
            text = (f"{rt} / {case.get('name')}: {status}; "
                    + ("; ".join(f"{o.get('output')} max abs {_num(o.get('max_abs'), '.2e')}" for o in r.get("outputs", []))
                       or r.get("reason", "")))
            cells.append(f"<td class='sq{extra}' style='{style}' title='{_e(text)}'></td>")
        kind = case.get("kind", "")
        rows.append(f"<tr><td>{_e(case.get('name'))}</td><td class='muted'>{_e(kind)}</td>"
                    f"<td class='muted'>b{_e(case.get('batch', '?'))}</td><td class='muted'>{_e(desc)}</td>"
                    f"{''.join(cells)}</tr>")
    return (f"<table class='cases'><tr><th>case</th><th>kind</th><th>batch</th><th>path</th>{head}</tr>"
            f"{''.join(rows)}</table>")


def _short(runtime: str) -> str:
    """Column heads for the narrow case grid."""
    return runtime.replace("ort_", "").replace("tf_", "").replace("_", " ")


def _coverage_chart(model: dict[str, Any]) -> str:
    """The norm entering the loop (log x) against the iterations taken (y); marker fill = branch.

    The loop threshold is a vertical line at norm 1.0. After k halvings the branch
    tests norm / 2^k < 0.8, i.e. norm < 0.8 * 2^k: a straight line on this log-x
    plot (dashed); cases left of it are scaled, right of it kept.
    """
    # a norm that overflowed (a loop-cap case: the seed's loop would never end) cannot sit on a log axis;
    # such cases are named in the table and the notes instead
    cases = [c for c in model.get("cases", []) if isinstance((c.get("path") or {}).get("norm_before_loop"), (int, float))
             and math.isfinite(c["path"]["norm_before_loop"])]
    if not cases:
        return ""
    w, h, left, right, top, bottom = 600, 330, 48, 16, 40, 40
    norms = [c["path"]["norm_before_loop"] for c in cases if c["path"]["norm_before_loop"] > 0]
    lo = math.floor(math.log10(min([*norms, BRANCH_THRESHOLD * 0.7]))) if norms else -1
    hi = math.ceil(math.log10(max([*norms, 2.0]))) if norms else 1
    top_iter = max([c["path"].get("iterations", 0) for c in cases] + [1])
    y_max = top_iter + 1

    def sx(norm: float) -> float:
        v = math.log10(max(norm, 10.0**lo))
        return left + (v - lo) / (hi - lo) * (w - left - right)

    def sy(iterations: float) -> float:
        return top + (1 - iterations / y_max) * (h - top - bottom)

    out = [f"<svg width='{w}' height='{h}' class='coverage' role='img' "
           f"aria-label='{_e(model.get('model'))} control-flow coverage' font-size='11'>",
           f"<rect x='{left}' y='{top}' width='{w - left - right}' height='{h - top - bottom}' fill='#fff' stroke='#ccd'/>"]
    for p in range(lo, hi + 1):  # decades
        x = sx(10.0**p)
        out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{h - bottom}' stroke='#eef0f3'/>"
                   f"<text x='{x:.1f}' y='{h - bottom + 14}' text-anchor='middle'>{10.0**p:g}</text>")
    step = max(1, math.ceil(y_max / 8))
    for k in range(0, y_max + 1, step):
        y = sy(k)
        out.append(f"<line x1='{left}' x2='{w - right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eef0f3'/>"
                   f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{k}</text>")
    # What the loop does: ceil(log2(norm)) halvings above 1.0 (a staircase), none below.
    stairs, k = [f"{sx(10.0**lo):.1f},{sy(0):.1f}", f"{sx(LOOP_THRESHOLD):.1f},{sy(0):.1f}"], 0
    while 2.0**k < 10.0**hi and k < y_max:
        k += 1
        stairs += [f"{sx(2.0 ** (k - 1)):.1f},{sy(k):.1f}", f"{sx(min(2.0**k, 10.0**hi)):.1f},{sy(k):.1f}"]
    out.append(f"<polyline points='{' '.join(stairs)}' fill='none' stroke='#c9ced6' stroke-width='6' "
               "stroke-linejoin='round' opacity='.7'/>")
    x_loop = sx(LOOP_THRESHOLD)
    out.append(f"<line x1='{x_loop:.1f}' x2='{x_loop:.1f}' y1='{top}' y2='{h - bottom}' stroke='#b42318' "
               "stroke-width='1.5'/>")
    # Branch threshold: norm = 0.8 * 2^k, from k = 0 to the top.
    k_end = y_max
    x0, x1 = sx(BRANCH_THRESHOLD), sx(min(BRANCH_THRESHOLD * 2.0**k_end, 10.0**hi))
    k1 = math.log2(min(BRANCH_THRESHOLD * 2.0**k_end, 10.0**hi) / BRANCH_THRESHOLD)
    out.append(f"<line x1='{x0:.1f}' y1='{sy(0):.1f}' x2='{x1:.1f}' y2='{sy(k1):.1f}' stroke='#1849a9' "
               "stroke-dasharray='5 4' stroke-width='1.5'/>")
    # The key to the threshold lines, above the plot.
    out.append(f"<line x1='{left}' x2='{left + 18}' y1='{top - 22}' y2='{top - 22}' stroke='#b42318' stroke-width='1.5'/>"
               f"<text x='{left + 22}' y='{top - 18}' fill='#b42318'>loop threshold: halve while norm &gt; "
               f"{LOOP_THRESHOLD:g}</text>"
               f"<line x1='{left}' x2='{left + 18}' y1='{top - 8}' y2='{top - 8}' stroke='#1849a9' "
               "stroke-dasharray='5 4' stroke-width='1.5'/>"
               f"<text x='{left + 22}' y='{top - 4}' fill='#1849a9'>branch threshold: x10 if norm / 2^iterations &lt; "
               f"{BRANCH_THRESHOLD:g} (left of the line: scaled)</text>")
    labelled = 0
    for c in sorted(cases, key=lambda c: c.get("kind") == "boundary"):  # boundary markers on top
        p = c["path"]
        x, y = sx(p["norm_before_loop"]), sy(p.get("iterations", 0))
        scaled = p.get("branch") == "scaled"
        fill = "#1849a9" if scaled else "#fff"
        boundary = c.get("kind") == "boundary"
        title = (f"{c.get('name')} ({c.get('kind')}, batch {c.get('batch')}): norm entering the loop "
                 f"{_num(p['norm_before_loop'], '.6g')}, {p.get('iterations')} iterations, branch {p.get('branch')}, "
                 f"margin {_num(p.get('margin'), '.1e')}" + (" - BOUNDARY: reported, not counted" if boundary else ""))
        shape = (f"<rect x='{x - 5:.1f}' y='{y - 5:.1f}' width='10' height='10' fill='{fill}' stroke='#1849a9' "
                 "stroke-width='2'/>" if c.get("kind") == "coverage" else
                 f"<circle cx='{x:.1f}' cy='{y:.1f}' r='5.5' fill='{fill}' stroke='#1849a9' stroke-width='2'/>")
        ring = ""
        if boundary:  # labelled in the empty upper left (few iterations never come with a large norm)
            lx, ly = left + 12, top + 18 + 16 * labelled
            labelled += 1
            ring = (f"<circle cx='{x:.1f}' cy='{y:.1f}' r='11' fill='none' stroke='#d92d20' stroke-width='2.5'/>"
                    f"<line x1='{lx + 4:.1f}' y1='{ly + 3:.1f}' x2='{x:.1f}' y2='{y - 11:.1f}' stroke='#d92d20' "
                    "stroke-width='.8'/><circle cx='{:.1f}' cy='{:.1f}' r='2' fill='#d92d20'/>".format(lx + 4, ly + 3)
                    + f"<text x='{lx + 10:.1f}' y='{ly + 7:.1f}' fill='#d92d20' font-weight='600'>"
                    f"{_e(c.get('name'))} (margin {_num(p.get('margin'), '.0e')})</text>")
        out.append(f"<g class='case'><title>{_e(title)}</title>{shape}{ring}</g>")
    out.append(f"<text x='{(left + w - right) / 2:.1f}' y='{h - 6}' text-anchor='middle'>"
               "norm entering the loop (log scale)</text>"
               f"<text transform='translate(12,{(top + h - bottom) / 2:.1f}) rotate(-90)' text-anchor='middle'>"
               "loop iterations</text></svg>")
    key = ("<p class='small muted' style='max-width:560px'>Each marker is a case (circle: random, square: coverage "
           "input found at export); filled: the branch scaled by 10, hollow: kept. Red rings (and dashed red outlines in the case grid): boundary cases, "
           "whose tested norm is within 1e-4 of a threshold (another runtime may take the other side). "
           "Grey: the path the loop takes for each norm.</p>")
    return f"<div>{''.join(out)}{key}</div>"


def _environment(env: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(', '.join(map(str, v)) if isinstance(v, list) else v)}</td></tr>"
                   for k, v in env.items())
    return f"<table class='kv'>{rows}</table>"
