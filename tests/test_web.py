"""ort_web: onnxruntime-web in a real headless Chromium, its server, and its shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import onnx
import pytest

from conftest import resign_folder
from tf_parity_export.models import MODELS, get_spec
from tf_parity_export.verify import layout, verify_models
from tf_parity_export.verify.runtimes import web

ROOT = Path(__file__).resolve().parents[1]
MISSING = web.missing()
needs_browser = pytest.mark.skipif(MISSING is not None, reason=f"no browser here: {MISSING}")


def test_ort_web_ran_every_model_or_says_why(report):
    """CI installs Chromium and onnxruntime-web, so there it must run; elsewhere `unavailable` with the reason."""
    if os.environ.get("CI"):
        assert MISSING is None, f"CI must install Chromium and node/ (see .ci/run): {MISSING}"
    assert [m.model for m in report.models] == list(MODELS)
    for m in report.models:
        state = m.runtimes["ort_web"]
        if MISSING is None:
            assert state == "ran", state
            results = [r for r in m.results if r.runtime == "ort_web"]
            assert [r.case for r in results] == [c["name"] for c in m.cases]
            assert all(r.status in ("passed", "boundary") for r in results), [r.to_json() for r in results]
            assert all(o.max_abs <= o.atol for r in results if r.status == "passed" for o in r.outputs)
        else:
            assert state == f"unavailable: {MISSING}"


@needs_browser
def test_report_names_the_browser_and_onnxruntime_web(report):
    assert report.environment["onnxruntime_web"] == json.loads(
        (web.ORT_DIST.parent / "package.json").read_text())["version"]
    assert report.environment["chromium"].split(".")[0].isdigit()


@needs_browser
def test_ort_web_catches_a_planted_mismatch(copy_of):
    """A bias nudged by 1e-3 in the ONNX file only (hash re-signed): ort_web must fail every case."""
    from tf_parity_export.export.onnx_model import export_onnx

    root = copy_of("nest_mlp")
    spec = get_spec("nest_mlp")
    model = spec.build()
    model.dense.bias.assign(model.dense.bias.numpy() + 1e-3)
    export_onnx(spec.serving_function(model), spec, root / "nest_mlp" / layout.ONNX)
    _resign(root / "nest_mlp")
    rep = verify_models(["nest_mlp"], root, runtimes=["ort_web"])
    assert rep.models[0].runtimes["ort_web"] == "ran"
    assert rep.failures() and all(line.startswith("nest_mlp/ort_web: case ") for line in rep.failures())


@needs_browser
def test_a_model_the_page_cannot_load_is_one_line_naming_it(copy_of):
    """An op onnxruntime-web does not know: one line with the model and the browser's message."""
    root = copy_of("mlp")
    path = root / "mlp" / layout.ONNX
    model = onnx.load(str(path))
    model.graph.node[0].op_type = "NoSuchOp"
    onnx.save(model, str(path))
    _resign(root / "mlp")
    rep = verify_models(["mlp"], root, runtimes=["ort_web"])
    state = rep.models[0].runtimes["ort_web"]
    assert state.startswith("error: mlp: model.onnx cannot be loaded by onnxruntime-web in Chromium (")
    assert "NoSuchOp" in state and "\n" not in state
    assert f"mlp/ort_web: {state}" in rep.failures()


def test_missing_browser_is_unavailable_with_how_to_install(artifacts, monkeypatch):
    monkeypatch.setenv("TF_PARITY_CHROMIUM", str(artifacts / "no-such-chromium"))
    rep = verify_models(["mlp"], artifacts, runtimes=["ort_cpu", "ort_web"])
    state = rep.models[0].runtimes["ort_web"]
    assert state.startswith("unavailable: ")
    if "Playwright" not in state:
        assert state == "unavailable: no Chromium found (run: apt-get install chromium, or set TF_PARITY_CHROMIUM " \
                        "to a Chromium binary)"
    assert rep.failures() == [f"mlp/ort_web: {state}"]  # named in --providers: unavailable fails the run


def test_file_server_is_loopback_only_on_an_ephemeral_port_and_serves_only_its_files(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"onnx bytes")
    (tmp_path / "secret").write_text("not served")
    servers = [web.FileServer(), web.FileServer()]
    try:
        for server in servers:
            host, port = server.httpd.server_address[:2]
            assert host == "127.0.0.1" and port > 0
            url = server.add("/models/m0/model.onnx", tmp_path / "model.onnx")
            assert urllib.request.urlopen(url, timeout=5).read() == b"onnx bytes"
            for path in ("/secret", "/models/m0/../../secret", f"/{tmp_path}/secret", "/"):
                with pytest.raises(urllib.error.HTTPError) as e:
                    urllib.request.urlopen(server.origin + path, timeout=5)
                assert e.value.code == 404
        assert servers[0].origin != servers[1].origin
    finally:
        for server in servers:
            server.close()


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, name), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            found[int(entry.name)] = (int(ppid), state, name)
    return found


def _descendants(root: int) -> dict[int, str]:
    table = _processes()
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in family and pid not in family:
                family.add(pid)
                grew = True
    return {pid: table[pid][2] for pid in family - {root} if pid in table}


def _alive(pids: set[int]) -> dict[int, str]:
    """Those of `pids` still running (a zombie has exited: it only waits for its parent to read its status)."""
    table = _processes()
    return {pid: table[pid][2] for pid in pids if pid in table and table[pid][1] != "Z"}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
def test_browser_is_stopped_when_the_run_ends(report):
    """The session's verification ran ort_web in this process: no browser or Playwright driver may be left
    behind (ort_node's Node process may: it is stopped at exit)."""
    left = []
    for pid, name in _descendants(os.getpid()).items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "chrom" in name or "playwright" in cmdline:
            left.append(cmdline)
    assert not left


@needs_browser
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
@pytest.mark.parametrize("target", ["process group", "python"])
def test_ctrl_c_leaves_no_browser_or_server_running(artifacts, target):
    """Ctrl-C in a terminal signals the whole process group; `kill -INT` only Python. Neither leaves orphans."""
    command = [str(Path(sys.executable).with_name("verify-models")), "--all", "--artifacts", str(artifacts),
               "--providers", "tf_eager,ort_web"]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("chrom" in n for n in seen.values()):
            assert proc.poll() is None, proc.communicate()
            seen.update(_descendants(proc.pid))
            time.sleep(0.05)
        assert any("chrom" in n for n in seen.values()), "the browser never started"
        time.sleep(0.3)  # into the run: pages loading, models running
        seen.update(_descendants(proc.pid))
        if target == "process group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0 and "PASSED" not in out  # interrupted, not finished
    assert "Traceback" not in err, err
    deadline = time.monotonic() + 10  # the browser's own children exit a moment after it
    while _alive(set(seen)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(set(seen)), f"left running after Ctrl-C: {_alive(set(seen))}"


@needs_browser
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
def test_interrupt_mid_run_stops_browser_and_server_in_process(artifacts, monkeypatch):
    """KeyboardInterrupt in the middle of a model: the run's scope stops the browser and the server
    before the interrupt leaves verify_models (the process lives on, so nothing else could have)."""
    started: list[web.Browser] = []
    real_init, real_infer, calls = web.Browser.__init__, web.WebRuntime.infer, []

    def init(self):
        real_init(self)
        started.append(self)

    def infer(self, feed):
        calls.append(1)
        if len(calls) == 5:  # the second model's second case
            raise KeyboardInterrupt
        return real_infer(self, feed)

    monkeypatch.setattr(web.Browser, "__init__", init)
    monkeypatch.setattr(web.WebRuntime, "infer", infer)
    with pytest.raises(KeyboardInterrupt):
        verify_models(["mlp", "sequential_mlp"], artifacts, runtimes=["ort_web"])
    [browser] = started
    with pytest.raises(OSError):  # the server's socket is closed
        urllib.request.urlopen(browser.server.origin + "/", timeout=2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any("chrom" in n for n in _descendants(os.getpid()).values()):
        time.sleep(0.1)
    assert not [n for n in _descendants(os.getpid()).values() if "chrom" in n]


def _resign(folder: Path) -> None:
    resign_folder(folder)
