"""report.html and the demo page: rendered from the real report, looked at in a real headless Chromium."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tf_parity_export.models import MODELS, get_spec
from tf_parity_export.verify import layout
from tf_parity_export.verify.render import write_report
from tf_parity_export.verify.report_html import BRANCH_THRESHOLD, LOOP_THRESHOLD, render_html
from tf_parity_export.verify.test_data import read_sets

LOOPING = ["fancy_mlp", "chimera"]


def shown_runtimes(report) -> tuple[list[str], list[str]]:
    """The matrix's columns (runtimes that ran for some model), and those unavailable for every model."""
    every = list(dict.fromkeys(rt for m in report.models for rt in m.runtimes))
    shown = [rt for rt in every if any(not m.runtimes[rt].startswith("unavailable") for m in report.models)]
    return shown, [rt for rt in every if rt not in shown]


def test_page_shows_every_model_runtime_and_unavailable_reason(report):
    data = report.to_json()
    page = render_html(data)
    matrix = page[page.index("id='matrix'"):page.index("</table>", page.index("id='matrix'"))]
    runtimes, nowhere = shown_runtimes(report)
    for name in MODELS:
        assert f"<th class='model'>{name} " in matrix
    for rt in runtimes:
        assert f"<th>{rt.replace('_', '_<wbr>')}</th>" in matrix
    for rt in nowhere:  # unavailable for every model: no column, its reason under the matrix
        assert f"<th>{rt.replace('_', '_<wbr>')}</th>" not in matrix
        assert f"<li><b>{rt}</b>: " in page
    cells = re.findall(r"<td class='cell[^']*'", matrix)
    assert len(cells) == len(MODELS) * len(runtimes)
    unavailable = {(m.model, rt) for m in report.models for rt, s in m.runtimes.items()
                   if s.startswith("unavailable") and rt in runtimes}
    assert sum("unavailable" in c for c in cells) == len(unavailable)
    for m in report.models:
        for state in m.runtimes.values():
            if state.startswith("unavailable"):
                assert state.removeprefix("unavailable: ").replace("'", "&#x27;") in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # nothing fetched
    assert "<script" not in page


def test_coverage_chart_for_the_looping_models_only(report):
    page = render_html(report.to_json())
    charts = re.findall(r"aria-label='(\w+) control-flow coverage'", page)
    assert charts == LOOPING
    for name in LOOPING:
        m = next(m for m in report.models if m.model == name)
        section = page[page.index(f"id='model-{name}'"):]
        section = section[:section.index("</svg>")]
        assert section.count("<g class='case'>") == len(m.cases)
        for c in m.cases:
            if c["kind"] == "boundary":
                assert f"{c['name']} (margin" in section  # boundary cases are labelled


def test_thresholds_drawn_are_fancy_mlps():
    from tf_parity_export.models.fancy_mlp import LOWER, UPPER

    assert (LOOP_THRESHOLD, BRANCH_THRESHOLD) == (UPPER, LOWER)


def test_precision_modes_and_null_numbers_render(report):
    """What the precision work adds: per-runtime modes, `measured` cases, null numbers. None of it may crash,
    and each kind of cell looks different."""
    data = copy.deepcopy(report.to_json())
    m = next(m for m in data["models"] if m["model"] == "mlp")
    m["precision"] = {"ort_cpu": {"mode": "bf16", "exact": False, "max_abs": 3e-3, "max_rel": None,
                                  "tightest_atol": 4e-3, "tightest_rtol": None},
                      "tf_function": {"mode": "fp32", "exact": True, "max_abs": None, "max_rel": None}}
    for r in m["results"]:
        if r["runtime"] == "ort_cpu":
            r["status"] = "measured"
            for o in r["outputs"]:
                o.update(max_abs=3e-3, max_rel=None, passed=False)
        if r["runtime"] == "saved_model":
            for o in r["outputs"]:
                o.update(max_abs=None, max_rel=None, passed=False, note="output missing")
            r["status"] = "failed"
    page = render_html(data)
    row = page[page.index("<th class='model'>mlp "):]
    row = row[:row.index("</tr>")]
    cells = dict(zip(shown_runtimes(report)[0], re.findall(r"<td class='(cell[^']*)'", row)))
    assert cells["ort_cpu"] == "cell reduced measured"
    assert ">bf16<" in row and ">measured<" in row
    assert cells["tf_function"] == "cell"
    assert "FAIL n/a" in row  # the null-number failure: shown, not crashed on
    assert "ort_cuda" not in cells or cells["ort_cuda"] == "cell unavailable"


def test_verify_cli_writes_the_page_beside_each_json_report(artifacts, tmp_path):
    from tf_parity_export.verify.cli import main

    result = CliRunner().invoke(main, ["mlp", "--artifacts", str(artifacts), "--providers", "ort_cpu",
                                       "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().splitlines()[-1].startswith("PASSED")
    for json_path in (tmp_path / "r.json", artifacts / layout.REPORT):
        page = json_path.with_suffix(".html").read_text()
        assert page == render_html(json.loads(json_path.read_text()))  # the same data, nothing else


def test_report_page_in_chromium(report, chromium, count_colours, tmp_path):
    write_report(report, tmp_path / "report.json")
    page = chromium.new_page(viewport={"width": 1300, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((tmp_path / "report.html").as_uri())
    matrix = page.inner_text("#matrix")
    for name in MODELS:
        assert name in matrix
    for rt in shown_runtimes(report)[0]:
        assert rt in matrix.replace("\n", "")
    assert page.locator("svg.coverage").count() == len(LOOPING)
    assert page.locator("svg.coverage g.case").count() == sum(
        len(m.cases) for m in report.models if m.model in LOOPING)
    assert page.locator("#matrix td.cell").count() == len(MODELS) * len(shown_runtimes(report)[0])
    shot = page.screenshot(full_page=True)
    page.close()
    assert count_colours(shot) > 50  # a coloured matrix and charts, not a blank page
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # self-contained


@pytest.fixture
def demo_site(artifacts, tmp_path):
    """The demo page written for every model, served by `python -m http.server` on a loopback port."""
    from tf_parity_export.export.demo import write_demo

    site = tmp_path / "site"
    write_demo(list(MODELS), artifacts, site)
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "-d", str(site), "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(re.search(r"port (\d+)", server.stdout.readline()).group(1))
        yield site, f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_demo_folder_has_the_wasm_build_and_no_more(demo_site):
    site, _ = demo_site
    assert sorted(p.name for p in (site / "ort").iterdir()) == [
        "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "ort.wasm.min.js"]
    assert sorted(p.name for p in (site / "models").iterdir()) == sorted(f"{n}.onnx" for n in MODELS)


def test_demo_page_output_equals_the_stored_output(artifacts, demo_site, chromium, count_colours):
    """Every model, every stored test input, run by clicking through the page: the browser's output
    is within the model's tolerance of TF eager's stored output, and the page says so."""
    import base64

    _, url = demo_site
    page = chromium.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    for name in MODELS:
        spec = get_spec(name)
        folder = artifacts / name
        stored = read_sets(folder, spec, layout.read_card(folder, name))
        page.select_option("#model", name)
        for i, s in enumerate(stored):
            page.select_option("#set", str(i))
            page.click("#run")
            page.wait_for_function(f"document.getElementById('result').dataset.matchSet === '{i}' "
                                   f"&& document.getElementById('result').dataset.model === '{name}'")
            result = page.eval_on_selector("#result", "e => ({...e.dataset})")
            assert result["withinTolerance"] == "true", (name, s.case.name, result)
            for out in spec.outputs:
                bits = page.get_attribute(f"#result td.output[data-output='{out.name}']", "data-bits")
                got = np.frombuffer(base64.b64decode(bits), "<f4").reshape(s.expected[out.name].shape)
                np.testing.assert_allclose(got, s.expected[out.name], atol=spec.atol, rtol=spec.rtol)
            page.evaluate("document.getElementById('result').dataset.matchSet = ''")
    # A generated input has no stored TF output: the page says so instead of comparing.
    page.click("#random")
    page.click("#run")
    page.wait_for_function("document.getElementById('result').dataset.matchSet === '-1'")
    assert "no stored TF output for this input" in page.inner_text("#result")
    shot = page.screenshot(full_page=True)
    page.close()
    assert not errors
    assert count_colours(shot) > 20


def test_export_cli_writes_the_demo_and_refuses_bad_destinations(tmp_path, monkeypatch):
    from tf_parity_export.export.cli import main
    from tf_parity_export.verify.runtimes import web

    site = tmp_path / "site"
    result = CliRunner().invoke(main, ["mlp", "--out", str(tmp_path / "art"), "--demo", str(site)])
    assert result.exit_code == 0, result.output
    assert f"demo page: {site / 'index.html'} (serve it: python -m http.server -d {site}" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("PASSED")
    demo = json.loads((site / "demo.json").read_text())
    assert list(demo["models"]) == ["mlp"] and len(demo["models"]["mlp"]["sets"]) == 3
    assert (tmp_path / "art" / "report.html").is_file()

    assert CliRunner().invoke(main, ["mlp", "--check", "--demo", str(site)]).exit_code == 2
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(main, ["mlp", "--out", str(tmp_path / "art2"), "--demo", str(tmp_path / "file")])
    assert result.exit_code == 2 and "is a file" in result.output  # click's own check on the option
    assert not (tmp_path / "art2").exists()  # refused before anything was exported
    monkeypatch.setattr(web, "ORT_DIST", tmp_path / "nowhere")
    result = CliRunner().invoke(main, ["mlp", "--out", str(tmp_path / "art2"), "--demo", str(tmp_path / "s2")])
    assert result.exit_code == 1 and result.output.startswith("error: --demo needs onnxruntime-web, which is not "
                                                              "installed in ")
    assert result.output.count("\n") == 1 and not (tmp_path / "art2").exists()


def test_a_model_error_is_text_on_the_page_in_a_real_browser(artifacts, tmp_path, chromium):
    """A real error whose text is markup (the artifacts folder's own name: a user's, or an attacker's):
    on the page it is text, in the model's section, in its cells' titles and in the failures."""
    from tf_parity_export.verify import verify_models

    import shutil

    hostile = tmp_path / "x' onmouseover='alert(2)' <img src=x onerror=alert(1)>"
    shutil.copytree(artifacts / "nest_mlp", hostile / "nest_mlp")  # a model that runs: the matrix gets columns
    shutil.copy(artifacts / layout.INDEX, hostile / layout.INDEX)
    report = verify_models(["mlp", "nest_mlp"], hostile, runtimes=["ort_cpu"])
    error = report.models[0].error
    assert "<img src=x onerror=alert(1)>" in error and "onmouseover='alert(2)'" in error  # as the verifier wrote it
    write_report(report, tmp_path / "r.json")
    source = (tmp_path / "r.html").read_text()
    assert "<img" not in source and "onmouseover='" not in source
    page = chromium.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto((tmp_path / "r.html").as_uri())
    assert page.eval_on_selector_all("img, [onmouseover], [onerror]", "els => els.length") == 0
    assert page.inner_text("#model-mlp p") == error
    titles = page.eval_on_selector_all("#matrix td.cell.error", "els => els.map(e => e.title)")
    assert titles == [error]  # mlp's one cell (ort_cpu)
    assert error in page.inner_text(".failures")
    page.hover("#matrix td.cell.error >> nth=0")
    page.close()
    assert dialogs == []
