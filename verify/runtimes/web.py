"""onnxruntime-web: the ONNX artifact run in a real headless Chromium, as a web page would.

One browser and one loopback HTTP server serve every model of a run (a
`RunScope` service): the server (web_files.py) listens on 127.0.0.1 on a
port the kernel picks and answers only for the files it was given (the page,
onnxruntime-web from `node/node_modules`, the models) and only to
`Host: 127.0.0.1:<port>`; Playwright's Python API drives the system's
Chromium (never a downloaded browser build), with a profile and TMPDIR in a
folder this tool owns and removes (browser_home.py).

Tensors never cross Playwright's JSON channel: for each call the page
fetches the input tensors' raw bytes from the server and POSTs each
output's raw bytes back, with their types (float32, int32, int64, bool, ...),
so the comparison sees the browser's exact bits and a million rows cost one
copy, not a base64 string. A case larger than the page is known to hold
(`PAGE_LIMIT_MB`) is `unsupported` up front.

Every wait is bounded: the browser's start (`START_TIMEOUT_S`) and each call
(the deadline, verify/deadline.py; past it Chromium is killed). Everything
is stopped when the run ends, also on an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import secrets
import shutil
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import deadline, interrupt
from ..layout import ONNX
from .base import Subject, Unavailable, Unsupported
from .browser_home import BrowserHome
from .node import INSTALL, NODE_DIR
from .tensors import from_wire, to_wire
from .web_files import FileServer

NAME = "ort_web"
PAGE_DIR = Path(__file__).resolve().parent / "web_page"
ORT_DIST = NODE_DIR / "node_modules" / "onnxruntime-web" / "dist"
ORT_SCRIPT = "ort.wasm.min.js"
# Every WASM build beside the script: which one onnxruntime-web fetches depends on
# the build and the browser, and with only the plain pair it may find "no available backend".
ORT_WASM_GLOB = "ort-wasm-simd-threaded*"
CHROMIUM_ENV = "TF_PARITY_CHROMIUM"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
INSTALL_CHROMIUM = f"apt-get install chromium, or set {CHROMIUM_ENV} to a Chromium binary"
INSTALL_PLAYWRIGHT = "pip install 'tf-parity-export[web]'"
# Why each flag: no sandbox as root (CI); no GPU, background networking, component
# updates or sync: a headless run that talks to nothing and starts fast.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Chromium and onnxruntime-web are up in about 1.5 s here; a browser not up in this long will not come up.
START_TIMEOUT_S = 30.0
# The most input tensor data one case may hand the page, in MiB. Measured here with
# benchmarks/page_limit.py: one page ran fancy_mlp and chimera (whose outputs sum over the
# batch, so they cannot be split) on 8,000,000 x 20 float32 rows (610 MiB) in 20-31 s; at
# 12,000,000 rows (916 MiB) onnxruntime-web's 4 GiB of WASM memory ran out (std::bad_alloc).
PAGE_LIMIT_MB = 512
# The browser's processes name its home folder (in their command line, or here in their
# environment), so a call past the deadline, or Ctrl-C, kills exactly that browser.
MARKER = "TF_PARITY_BROWSER"
KILL_WAIT_S = 2.0


def find_chromium() -> str | None:
    """The Chromium binary to drive: $TF_PARITY_CHROMIUM, else the Debian package's."""
    explicit = os.environ.get(CHROMIUM_ENV)
    if explicit:
        return explicit if _executable(explicit) else None
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def missing() -> str | None:
    """Why the browser runtime cannot run here (with how to fix it), or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"Playwright's Python package is not installed (run: {INSTALL_PLAYWRIGHT})"
    explicit = os.environ.get(CHROMIUM_ENV)
    if explicit and not _executable(explicit):
        return (f"{CHROMIUM_ENV}={explicit} is not an executable file (set it to a Chromium binary, "
                "or unset it to use the system's)")
    if find_chromium() is None:
        return f"no Chromium found (run: {INSTALL_CHROMIUM})"
    if not (ORT_DIST / ORT_SCRIPT).is_file():
        return f"onnxruntime-web is not installed in {NODE_DIR} (run: {INSTALL})"
    return None


def page_routes() -> dict[str, Path]:
    """What the file server answers for the page (URL path -> file); models and tensors come per run."""
    routes = {"/": PAGE_DIR / "index.html", "/ort_runner.js": PAGE_DIR / "ort_runner.js"}
    for file in [ORT_DIST / ORT_SCRIPT, *sorted(ORT_DIST.glob(ORT_WASM_GLOB))]:
        routes[f"/ort/{file.name}"] = file
    return routes


class _DriverGone(logging.Filter):
    """Ctrl-C in a terminal also interrupts Playwright's driver; its pending futures then
    fail with this message when collected, which says nothing the interrupt did not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Connection closed while reading from the driver" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_DriverGone())

# The environment of Playwright's driver (a Node process). Playwright has no option for
# it, so its `get_driver_env` is wrapped once: the driver talks to Python over its
# stdout, so a NODE_OPTIONS=--require hook that prints there would corrupt every
# message; and its temporary folders go into the browser's home, which the run removes.
_driver = threading.local()


def _wrap_driver_env() -> None:
    from playwright._impl import transport

    original = getattr(transport, "get_driver_env", None)
    if original is None or getattr(original, "tf_parity", False):
        return

    def driver_env() -> dict[str, str]:
        env = original()
        env.pop("NODE_OPTIONS", None)
        env.update(getattr(_driver, "env", {}))
        return env

    driver_env.tf_parity = True  # type: ignore[attr-defined]
    transport.get_driver_env = driver_env


class Browser:
    """The file server, Playwright and one headless Chromium page with onnxruntime-web loaded.

    Playwright's sync API must be driven from the thread that started it, so
    one worker thread owns Playwright, the browser and the page, and every call
    is handed to it. Construction returns at once: Chromium starts in the
    background (about a second) while the caller goes on exporting or
    building reference models; the first call waits for it (at most
    START_TIMEOUT_S), and a failed start is raised there (as `Unavailable`,
    with the reason).
    """

    def __init__(self) -> None:
        reason = missing()
        if reason:
            raise Unavailable(reason)
        try:
            self.home = BrowserHome()
        except OSError as e:
            raise Unavailable(f"Chromium cannot run here: {e}") from None
        try:
            self.server = FileServer()
        except BaseException:
            self.home.remove()
            raise
        self.errors: list[str] = []
        self.models: dict[str, tuple[str, list[str]]] = {}  # model path -> (key, output names)
        self.version, self.browser_version = "?", "?"
        self.stopped = ""  # why calls are refused (the browser was killed)
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future] | None] = queue.Queue()
        self._ready: Future = Future()
        self._start_limit = START_TIMEOUT_S
        for url, file in page_routes().items():
            self.server.add(url, file)
        atexit.register(self.close)
        interrupt.register(self)
        self._worker = threading.Thread(target=self._run, name="ort_web-browser", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        """The worker: start everything, serve calls until told to stop, then stop everything."""
        from playwright.sync_api import Error, sync_playwright
        from playwright.sync_api import TimeoutError as LaunchTimeout

        playwright = context = None
        try:
            _wrap_driver_env()
            _driver.env = {"TMPDIR": str(self.home.tmp)}
            try:
                playwright = sync_playwright().start()
            except Error as e:  # e.g. a thread where Playwright's sync API already runs an event loop
                raise Unavailable(f"Playwright could not start: {_first_line(e)}") from None
            env = {**os.environ, "TMPDIR": str(self.home.tmp), MARKER: str(self.home.path)}
            try:
                context = playwright.chromium.launch_persistent_context(
                    str(self.home.profile), executable_path=find_chromium(), args=CHROMIUM_ARGS, env=env,
                    headless=True, timeout=self._start_limit * 1000)
            except LaunchTimeout:
                raise Unavailable(f"Chromium did not start within {self._start_limit:g} s") from None
            except Error as e:
                raise Unavailable(f"Chromium did not start: {_first_line(e)}") from None
            if context.browser is not None:
                self.browser_version = context.browser.version
            self.page = context.pages[0] if context.pages else context.new_page()
            self.page.set_default_timeout(self._start_limit * 1000)
            self.page.on("pageerror", lambda e: self.errors.append(_first_line(e)))
            self.page.goto(self.server.origin + "/")
            self.version = self.page.evaluate("ortRunner.init()")
            self._ready.set_result(True)
            while (job := self._jobs.get()) is not None:
                fn, done = job
                try:
                    done.set_result(fn())
                except BaseException as e:  # handed to the caller's thread
                    done.set_exception(e)
        except BaseException as e:
            if not self._ready.done():
                self._fail_start(e if isinstance(e, Unavailable) else
                                 Unavailable(f"the browser did not start: {_first_line(e)}"))
        finally:
            try:
                if context is not None:
                    context.close()
            except Error:
                pass  # already gone (killed past a deadline, or its process was interrupted too)
            finally:
                if playwright is not None:
                    playwright.stop()
                while not self._jobs.empty():  # calls that came in after the end: fail them, never hang
                    job = self._jobs.get()
                    if job is not None:
                        job[1].set_exception(PageError("the browser was stopped"))

    def _fail_start(self, error: Exception) -> None:
        try:
            self._ready.set_exception(error)
        except Exception:  # InvalidStateError: the other side got there first
            pass

    def _submit(self, fn: Callable[[], Any], what: str) -> Any:
        """Run `fn` on the worker thread (after the browser is up) and return its result here.

        The browser's start waits at most its start limit, and the call at most
        the deadline; past either, Chromium is killed."""
        try:
            self._ready.result(timeout=self._start_limit + 5)  # raises Unavailable if the browser did not start
        except FutureTimeout:
            self._fail_start(Unavailable(f"Chromium did not start within {self._start_limit:g} s"))
            self.kill()
            self._ready.result()
        if self.stopped:
            raise PageError(self.stopped)
        if not self._worker.is_alive():
            raise PageError("the browser was stopped")
        limit = deadline.seconds()
        done: Future = Future()
        self._jobs.put((fn, done))
        try:
            return done.result(timeout=limit)
        except FutureTimeout:
            self.stopped = f"the browser was stopped: a call ran past the deadline of {limit:g} s"
            self.kill()
            raise deadline.DeadlineExceeded(what, limit, "Chromium was killed") from None

    def environment(self) -> dict[str, str]:
        """Versions for the report's environment."""
        return {"onnxruntime_web": str(self.version),
                "chromium": f"{self.browser_version} ({find_chromium()}, headless)"}

    def call(self, fn: str, *args: Any) -> Any:
        """`await ortRunner.<fn>(...args)` in the page; a failure raises PageError with the browser's message."""
        from playwright.sync_api import Error

        def evaluate() -> Any:
            try:
                return self.page.evaluate(f"(args) => ortRunner.{fn}(...args)", list(args))
            except Error as e:
                raise PageError(_first_line(e) or (self.errors[-1] if self.errors else "unknown page error")) from None

        return self._submit(evaluate, "onnxruntime-web in Chromium")

    def load(self, model: Path) -> str:
        """Serve `model` and create its session in the page; returns the key to run it under."""
        model = model.resolve()
        if str(model) not in self.models:
            key = f"m{len(self.models)}"
            url = self.server.add(f"/models/{key}/{model.name}", model)
            names = self.call("load", key, url)
            self.models[str(model)] = (key, list(names["outputs"]))
        return self.models[str(model)][0]

    def run(self, key: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model loaded under `key` on `feed`: the page fetches the inputs' bytes and POSTs the outputs'."""
        outputs = next(names for k, names in self.models.values() if k == key)
        wire = {name: to_wire(array) for name, array in feed.items()}
        size = sum(len(raw) for _, raw in wire.values())
        limit = PAGE_LIMIT_MB * 2**20
        if size > limit:
            raise Unsupported(f"a case of {size / 2**20:.2g} MB of input tensors exceeds the browser's limit of "
                              f"{PAGE_LIMIT_MB:g} MB (onnxruntime-web's memory in one page)")
        token = secrets.token_hex(8)
        paths, feeds = [], {}
        for i, (name, (spec, raw)) in enumerate(wire.items()):
            paths.append(f"/io/{token}/in/{i}")
            feeds[name] = {**spec, "url": self.server.add(paths[-1], raw)}
        sinks = []
        for i in range(len(outputs)):
            paths.append(f"/io/{token}/out/{i}")
            sinks.append(self.server.expect(paths[-1], limit))
        try:
            described = self.call("runFromServer", key, feeds, f"{self.server.origin}/io/{token}/out/")
        finally:
            self.server.drop(*paths)
        result = {}
        for t, sink in zip(described, sinks):
            if sink.data is None:
                raise PageError(f"the page did not send output {t['name']!r}")
            result[t["name"]] = from_wire(t["type"], t["dims"], sink.data)
        return result

    def kill(self) -> None:
        """Kill this browser's Chromium now (a call past the deadline, or Ctrl-C) and remove its home folder.

        Playwright's driver sees the browser gone and fails the call in flight;
        the run's end (`close`) stops the driver and the server."""
        if not self.stopped:
            self.stopped = "the browser was stopped"
        # With the separator: its profile is inside the home folder, and no other folder's name is then taken for it.
        pids = interrupt.family(interrupt.mentioning(f"{self.home.path}{os.sep}"))
        interrupt.kill(pids)
        end = time.monotonic() + KILL_WAIT_S
        while interrupt.alive(pids) and time.monotonic() < end:
            time.sleep(0.02)
        self.home.remove()

    def close(self) -> None:
        """Stop the browser, Playwright and the server, and remove the home folder; safe to call twice and
        after a failure. A browser that does not stop in time is killed."""
        atexit.unregister(self.close)
        self._jobs.put(None)
        self._worker.join(timeout=10)
        if self._worker.is_alive():
            self.kill()
            self._worker.join(timeout=5)
        self.server.close()
        self.home.remove()
        interrupt.unregister(self)


class PageError(RuntimeError):
    """onnxruntime-web or the page failed; the message is the browser's."""


def _first_line(e: BaseException) -> str:
    """The browser's message without Playwright's call log and stack."""
    text = str(getattr(e, "message", "") or e).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("at ", "Call log", "=====")):
            return line.removeprefix("Error: ")
    return text


class WebRuntime:
    name = NAME

    def __init__(self, browser: Browser, key: str) -> None:
        self.browser, self.key = browser, key

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.browser.run(self.key, feed)


def warm_up(scope: Any) -> None:
    """Start the run's browser now, in the background, so that it is up when the first model needs it."""
    try:
        scope.shared(NAME, Browser)
    except Exception:  # remembered by the scope: each model reports it when it loads the runtime
        pass


def load(subject: Subject) -> WebRuntime:
    """The model's ONNX file in onnxruntime-web's WASM execution provider, in headless Chromium."""
    browser = subject.scope.shared(NAME, Browser)
    try:
        key = browser.load(subject.folder / ONNX)
    except PageError as e:
        raise Unsupported(f"onnxruntime-web in Chromium cannot load {ONNX}: {e}") from None
    return WebRuntime(browser, key)


__all__ = ["Browser", "FileServer", "PageError", "WebRuntime", "find_chromium", "load", "missing", "page_routes",
           "warm_up"]
