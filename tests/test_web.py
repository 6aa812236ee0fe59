"""ort_web: onnxruntime-web in a real headless Chromium, its server, and its shutdown."""

from __future__ import annotations

import http.client
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

from _processes import HAS_PROC, Interrupted, alive, cmdline, descendants, interrupt, litter
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
    """An op onnxruntime-web does not know: the browser cannot take the model (`unsupported`), one line with
    the browser's message, failing the run where ort_web is required (named in --providers)."""
    root = copy_of("mlp")
    path = root / "mlp" / layout.ONNX
    model = onnx.load(str(path))
    model.graph.node[0].op_type = "NoSuchOp"
    onnx.save(model, str(path))
    _resign(root / "mlp")
    rep = verify_models(["mlp"], root, runtimes=["ort_web"])
    state = rep.models[0].runtimes["ort_web"]
    assert state.startswith("unsupported: onnxruntime-web in Chromium cannot load model.onnx: ")
    assert "NoSuchOp" in state and "\n" not in state
    assert f"mlp/ort_web: {state}" in rep.failures()


def test_missing_browser_is_unavailable_with_how_to_install(artifacts, monkeypatch):
    monkeypatch.delenv("TF_PARITY_CHROMIUM", raising=False)
    monkeypatch.setattr(web, "CHROMIUM_CANDIDATES", ("no-such-chromium-here",))
    rep = verify_models(["mlp"], artifacts, runtimes=["ort_cpu", "ort_web"])
    state = rep.models[0].runtimes["ort_web"]
    assert state.startswith("unavailable: ")
    if "Playwright" not in state:
        assert state == "unavailable: no Chromium found (run: apt-get install chromium, or set TF_PARITY_CHROMIUM " \
                        "to a Chromium binary)"
    assert rep.failures() == [f"mlp/ort_web: {state}"]  # named in --providers: unavailable fails the run


@pytest.mark.parametrize("what", ["missing", "not executable", "a folder"])
def test_a_chromium_setting_that_is_not_an_executable_says_exactly_that(artifacts, monkeypatch, tmp_path, what):
    path = tmp_path / "chromium"
    if what == "not executable":
        path.write_text("#!/bin/sh\n")
        path.chmod(0o644)
    elif what == "a folder":
        path.mkdir()
    monkeypatch.setenv("TF_PARITY_CHROMIUM", str(path))
    rep = verify_models(["mlp"], artifacts, runtimes=["ort_web"])
    state = rep.models[0].runtimes["ort_web"]
    if "Playwright" not in state:
        assert state == (f"unavailable: TF_PARITY_CHROMIUM={path} is not an executable file (set it to a Chromium "
                         "binary, or unset it to use the system's)")


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


def _get(server: web.FileServer, path: str, host: str | None = None, method: str = "GET") -> int:
    """The status the server answers for `path` sent exactly as given (no client-side normalisation)."""
    port = server.httpd.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{port}" if host is None else host)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_file_server_answers_only_its_own_host(tmp_path):
    """DNS rebinding: a page of evil.example rebound to 127.0.0.1 sends its own host name; it gets nothing."""
    (tmp_path / "model.onnx").write_bytes(b"onnx bytes")
    server = web.FileServer()
    try:
        server.add("/models/m0/model.onnx", tmp_path / "model.onnx")
        sink = server.expect("/io/t/out/0", 100)
        port = server.httpd.server_address[1]
        assert _get(server, "/models/m0/model.onnx") == 200
        for host in ("evil.example", f"evil.example:{port}", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}",
                     f"0.0.0.0:{port}", ""):
            assert _get(server, "/models/m0/model.onnx", host) == 403, host
            assert _get(server, "/io/t/out/0", host, "POST") == 403, host
        assert sink.data is None
    finally:
        server.close()


@needs_browser
def test_file_server_answers_no_other_path_under_the_onnxruntime_web_prefix():
    """Exactly the routes it was given: every other file of onnxruntime-web's dist, and every spelling of `..`,
    `.`, a doubled or trailing slash or another case, is 404; nothing is POSTed where no output is expected."""
    routes = web.page_routes()
    server = web.FileServer()
    try:
        for url, file in routes.items():
            server.add(url, file)
        served = [url for url in routes if url.startswith("/ort/")]
        assert served and all(_get(server, url) == 200 for url in served)
        others = [f"/ort/{f.name}" for f in web.ORT_DIST.iterdir() if f"/ort/{f.name}" not in routes]
        assert len(others) > 10  # the dist holds many builds; only the WASM one is served
        tricks = ["/ort/", "/ort", "/ort/../ort_runner.js", "/ort/./ort.wasm.min.js", "/ort//ort.wasm.min.js",
                  "/ort/ort.wasm.min.js/", "/ort/%2e%2e/ort_runner.js", "/ort/..%2f..%2fpackage.json",
                  "/ort/../../package.json", "/ort/../../../onnxruntime-node/package.json", "/ort/ORT.WASM.MIN.JS",
                  "/ort/ort.wasm.min.js%00", "/./ort/ort.wasm.min.js", "//ort/ort.wasm.min.js"]
        for path in others + tricks:
            assert _get(server, path) == 404, path
        for path in [*served, "/", "/io/x/out/0"]:
            assert _get(server, path, method="POST") == 404, path
    finally:
        server.close()


@pytest.mark.skipif(not HAS_PROC, reason="reads the process table from /proc (Linux)")
def test_browser_is_stopped_when_the_run_ends(artifacts):
    """A verification that ran ort_web in this process leaves no browser or Playwright driver behind
    (ort_node's Node process may: it is stopped at exit)."""
    ran = verify_models(["mlp"], artifacts, runtimes=["ort_web"])
    assert ran.models[0].runtimes["ort_web"] == "ran" or web.missing() is not None
    left = []
    for pid, name in descendants(os.getpid()).items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "chrom" in name or "playwright" in cmdline:
            left.append(cmdline)
    assert not left


# How a run is stopped from outside: Ctrl-C in a terminal (SIGINT to the whole process group),
# `kill` (SIGTERM to Python only), and `timeout` (SIGTERM, relayed by timeout to its command).
STOPS = {
    "ctrl-c": (lambda proc: os.killpg(proc.pid, signal.SIGINT), 130),
    "sigterm": (lambda proc: os.kill(proc.pid, signal.SIGTERM), 143),
    "timeout": (lambda proc: os.kill(proc.pid, signal.SIGTERM), 143),
}


def stopped_within_5s_leaving_nothing(run: Interrupted, status: int, tmpdir: Path) -> None:
    assert run.returncode == status, (run.returncode, run.err)
    assert run.seconds < 5, f"took {run.seconds:.1f} s to stop"
    assert "Traceback" not in run.err and "PASSED" not in run.out, run.err
    assert not run.left, f"left running: {run.left}"
    assert litter(tmpdir) == []  # the browser's profile and temporary files went with it


@needs_browser
@pytest.mark.skipif(not HAS_PROC, reason="reads the process table from /proc (Linux)")
@pytest.mark.parametrize("how", list(STOPS))
def test_a_signal_mid_browser_run_stops_everything_within_5s(artifacts, short_tmpdir, how):
    """Interrupted while the page runs models: the process exits at once (130 / 143), the browser, Playwright's
    driver and Node go with it, and nothing of the browser is left in $TMPDIR."""
    tmpdir = short_tmpdir
    command = [str(Path(sys.executable).with_name("verify-models")), "--all", "--artifacts", str(artifacts),
               "--providers", "tf_eager,ort_node,ort_web"]
    if how == "timeout":
        command = ["timeout", "600", *command]
    send, status = STOPS[how]
    page_up = lambda seen: any("--type=renderer" in cmdline(pid) for pid in seen)  # noqa: E731
    run = interrupt(command, {**os.environ, "TMPDIR": str(tmpdir)}, page_up, 1.0, send)
    assert any("chrom" in name for name in run.seen.values()) and any(n == "node" for n in run.seen.values())
    stopped_within_5s_leaving_nothing(run, status, tmpdir)


@needs_browser
@pytest.mark.skipif(not HAS_PROC, reason="reads the process table from /proc (Linux)")
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
    while time.monotonic() < deadline and any("chrom" in n for n in descendants(os.getpid()).values()):
        time.sleep(0.1)
    assert not [n for n in descendants(os.getpid()).values() if "chrom" in n]


def _resign(folder: Path) -> None:
    resign_folder(folder)


@needs_browser
@pytest.mark.skipif(not HAS_PROC, reason="reads the process table from /proc (Linux)")
def test_a_page_that_fails_after_chromium_launched_leaves_nothing_running(tmp_path, monkeypatch):
    """Chromium starts, then the page cannot come up (here: its script is missing): the runtime is unavailable
    with the page's message, and the browser, Playwright's driver and the home folder are all gone."""
    page = tmp_path / "page"
    page.mkdir()
    (page / "index.html").write_text("<!doctype html><title>no runner</title>")
    (page / "ort_runner.js").write_text("")
    monkeypatch.setattr(web, "PAGE_DIR", page)
    before = set(descendants(os.getpid()))
    browser = web.Browser()
    try:
        with pytest.raises(web.Unavailable, match="the browser did not start: .*ortRunner is not defined"):
            browser.load(tmp_path / "model.onnx")
        started = {pid: name for pid, name in descendants(os.getpid()).items() if pid not in before}
        deadline = time.monotonic() + 10
        while alive(set(started)) and time.monotonic() < deadline:
            time.sleep(0.1)
        # the driver (node) and Chromium were started, and are gone without close() having been called
        assert not alive(set(started)), f"left running: {alive(set(started))}"
    finally:
        browser.close()
    assert not browser.home.path.exists()


@needs_browser
@pytest.mark.skipif(not HAS_PROC, reason="reads the process table from /proc (Linux)")
def test_the_browser_lives_in_a_folder_of_its_own_and_dead_runs_folders_are_swept(artifacts, short_tmpdir,
                                                                                  monkeypatch):
    """Chromium's profile and TMPDIR are one folder this tool made, locked while its run lives and removed
    with it; a later run removes the folders of dead runs (lock free) and nothing else."""
    import fcntl
    import tempfile

    from tf_parity_export.verify.runtimes import browser_home

    monkeypatch.setattr(tempfile, "tempdir", str(short_tmpdir))
    dead = short_tmpdir / "tf-parity-browser-dead"
    (dead / "profile").mkdir(parents=True)
    (dead / "owner.lock").write_bytes(browser_home.SIGNATURE)
    live = short_tmpdir / "tf-parity-browser-live"
    live.mkdir()
    (live / "owner.lock").write_bytes(browser_home.SIGNATURE)
    held = os.open(live / "owner.lock", os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # its run is alive
    users = [short_tmpdir / "tf-parity-browser-mine", short_tmpdir / "tf-parity-browser-notes"]
    users[0].mkdir()
    (users[0] / "owner.lock").write_text("my own file\n")  # a user's folder: not our signature
    users[1].write_text("a file, not a folder")
    try:
        browser = web.Browser()
        try:
            assert not dead.exists() and live.exists() and all(p.exists() for p in users)
            home = browser.home.path
            assert home.parent == short_tmpdir and home.name.startswith("tf-parity-browser-")
            browser.load(artifacts / "mlp" / layout.ONNX)
            chromium = [pid for pid in descendants(os.getpid()) if f"--user-data-dir={home}/profile" in cmdline(pid)]
            assert chromium, "Chromium runs with its profile in the home folder"
            made = sorted(p.name for p in home.iterdir())
            # Chromium's temporary files and Playwright's driver's (their TMPDIR is the home folder) are in it too
            assert "owner.lock" in made and "profile" in made, made
            assert any(n.startswith("org.chromium.") for n in made) and any(n.startswith("playwright-") for n in made)
            assert browser_home.sweep(short_tmpdir) == []  # its own run is alive: kept
        finally:
            browser.close()
        assert not home.exists()
        assert sorted(p.name for p in short_tmpdir.iterdir()) == ["tf-parity-browser-live", "tf-parity-browser-mine",
                                                                  "tf-parity-browser-notes"]
    finally:
        os.close(held)


@needs_browser
def test_a_case_beyond_the_page_limit_is_unsupported_up_front(artifacts, monkeypatch):
    """Said before the page is asked anything; the run fails on it only where ort_web is required."""
    from tf_parity_export.verify.render import table
    from tf_parity_export.verify.verifier import Report, verify_model

    monkeypatch.setattr(web, "PAGE_LIMIT_MB", 400 / 2**20)  # 400 bytes: mlp's batch of 7 rows is 560
    asked = []
    real_call = web.Browser.call
    monkeypatch.setattr(web.Browser, "call", lambda self, fn, *args: (asked.append(fn), real_call(self, fn, *args))[1])
    spec = get_spec("mlp")
    rep = verify_model(spec, artifacts / "mlp", ["ort_web"], required={})
    state = rep.runtimes["ort_web"]
    assert state == ("unsupported: a case of 0.00053 MB of input tensors exceeds the browser's limit of "
                     "0.00038147 MB (onnxruntime-web's memory in one page)")
    statuses = {r.case: r.status for r in rep.results}
    assert statuses["random_b7"] == "unsupported" and statuses["random_b1"] == "passed"
    assert asked.count("runFromServer") == 2  # batches of 1 and 2 rows ran; the 7 rows never reached the page
    assert rep.failures() == []
    assert rep.failures({"ort_web"}) == [f"mlp/ort_web: {state}"]
    text = table(Report([rep], set(), 0.0, {}))
    assert f"mlp/ort_web: {state}" in text.splitlines()


def test_a_home_folder_whose_browser_still_writes_is_removed_or_left_signed_for_the_sweep(short_tmpdir, monkeypatch):
    """A browser process on its way out writes a file right after a removal pass: removal goes round again,
    and a folder that will not go keeps its signed lock file, so that the next run's sweep takes it."""
    import shutil
    import tempfile

    from tf_parity_export.verify.runtimes import browser_home

    monkeypatch.setattr(tempfile, "tempdir", str(short_tmpdir))
    real_rmtree, late = shutil.rmtree, []

    def rmtree_then_written(path, *args, **kwargs):  # the late write, right after each pass over the profile
        real_rmtree(path, *args, **kwargs)
        if late and late.pop():
            Path(path).mkdir()
            (Path(path) / "Network Persistent State").write_text("{}")

    monkeypatch.setattr(browser_home.shutil, "rmtree", rmtree_then_written)
    for passes_written, passes in ((1, browser_home.REMOVE_PASSES), (2, 2)):
        monkeypatch.setattr(browser_home, "REMOVE_PASSES", passes)
        home = browser_home.BrowserHome()
        late[:] = [True] * passes_written
        home.remove()
        if passes_written < passes:
            assert not home.path.exists()
        else:  # written after every pass: left, signed and no longer locked, for the next sweep
            assert sorted(p.name for p in home.path.iterdir()) == [browser_home.LOCK, "profile"]
            assert (home.path / browser_home.LOCK).read_bytes() == browser_home.SIGNATURE
            assert browser_home.sweep(short_tmpdir) == [home.path] and not home.path.exists()
