"""onnxruntime-web: the ONNX artifact run in a real headless Chromium, as a web page would.

One browser and one loopback HTTP server serve every model of a run (a
`RunScope` service): the server listens on 127.0.0.1 on a port the kernel
picks and answers only for the files it was given (the page, onnxruntime-web
from `node/node_modules`, the models); Playwright's Python API drives the
system's Chromium (never a downloaded browser build). Tensors cross into
and out of the page as base64 float32 bytes. Both are stopped when the run
ends, also on an error or Ctrl-C.
"""

from __future__ import annotations

import atexit
import base64
import http.server
import logging
import os
import queue
import shutil
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..layout import ONNX
from .base import Subject, Unavailable, Unsupported
from .node import INSTALL, NODE_DIR

NAME = "ort_web"
PAGE_DIR = Path(__file__).resolve().parent / "web_page"
ORT_DIST = NODE_DIR / "node_modules" / "onnxruntime-web" / "dist"
ORT_SCRIPT = "ort.wasm.min.js"
# Every WASM build beside the script: which one onnxruntime-web fetches depends on
# the build and the browser, and with only the plain pair it may find "no available backend".
ORT_WASM_GLOB = "ort-wasm-simd-threaded*"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
INSTALL_CHROMIUM = "apt-get install chromium, or set TF_PARITY_CHROMIUM to a Chromium binary"
INSTALL_PLAYWRIGHT = "pip install 'tf-parity-export[web]'"
# Why each flag: no sandbox as root (CI); no GPU, background networking, component
# updates or sync: a headless run that talks to nothing and starts fast.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGE_TIMEOUT_MS = 60_000


def find_chromium() -> str | None:
    """The Chromium binary to drive: $TF_PARITY_CHROMIUM, else the Debian package's."""
    explicit = os.environ.get("TF_PARITY_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def missing() -> str | None:
    """Why the browser runtime cannot run here (with how to fix it), or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"Playwright's Python package is not installed (run: {INSTALL_PLAYWRIGHT})"
    if find_chromium() is None:
        return f"no Chromium found (run: {INSTALL_CHROMIUM})"
    if not (ORT_DIST / ORT_SCRIPT).is_file():
        return f"onnxruntime-web is not installed in {NODE_DIR} (run: {INSTALL})"
    return None


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves exactly the files in `server.routes` (URL path -> file); everything else is 404."""

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        path = self.server.routes.get(self.path.split("?", 1)[0])  # type: ignore[attr-defined]
        if path is None:
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", _content_type(path.name))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # silence the per-request log
        pass


def _content_type(name: str) -> str:
    for suffix, kind in ((".html", "text/html"), (".mjs", "text/javascript"), (".js", "text/javascript"),
                         (".wasm", "application/wasm"), (".json", "application/json")):
        if name.endswith(suffix):
            return kind
    return "application/octet-stream"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that goes away mid-response (Ctrl-C) is not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FileServer:
    """A loopback-only HTTP server on an ephemeral port, in a daemon thread."""

    def __init__(self) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {}  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ort_web-files", daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, url_path: str, file: Path) -> str:
        """Serve `file` at `url_path`; returns its full URL."""
        self.httpd.routes[url_path] = Path(file)  # type: ignore[attr-defined]
        return self.origin + url_path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _DriverGone(logging.Filter):
    """Ctrl-C in a terminal also interrupts Playwright's driver; its pending futures then
    fail with this message when collected, which says nothing the interrupt did not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Connection closed while reading from the driver" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_DriverGone())


class Browser:
    """The file server, Playwright and one headless Chromium page with onnxruntime-web loaded.

    Playwright's sync API must be driven from the thread that started it, so
    one worker thread owns Playwright, the browser and the page, and every call
    is handed to it. Construction returns at once: Chromium starts in the
    background (about a second) while the caller goes on exporting or
    building reference models; the first call waits for it, and a failed start
    is raised there (as `Unavailable`, with the reason).
    """

    def __init__(self) -> None:
        reason = missing()
        if reason:
            raise Unavailable(reason)
        self.server = FileServer()
        self.errors: list[str] = []
        self.models: dict[str, str] = {}
        self.version, self.browser_version = "?", "?"
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future] | None] = queue.Queue()
        self._ready: Future = Future()
        try:
            self.server.add("/", PAGE_DIR / "index.html")
            self.server.add("/ort_runner.js", PAGE_DIR / "ort_runner.js")
            for file in [ORT_DIST / ORT_SCRIPT, *sorted(ORT_DIST.glob(ORT_WASM_GLOB))]:
                self.server.add(f"/ort/{file.name}", file)
        except BaseException:
            self.server.close()
            raise
        atexit.register(self.close)
        self._worker = threading.Thread(target=self._run, name="ort_web-browser", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        """The worker: start everything, serve calls until told to stop, then stop everything."""
        from playwright.sync_api import Error, sync_playwright

        playwright = browser = None
        try:
            try:
                playwright = sync_playwright().start()
            except Error as e:  # e.g. a thread where Playwright's sync API already runs an event loop
                raise Unavailable(f"Playwright could not start: {_first_line(e)}") from None
            try:
                browser = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
            except Error as e:
                raise Unavailable(f"Chromium did not start: {_first_line(e)}") from None
            self.browser_version = browser.version
            self.page = browser.new_page()
            self.page.set_default_timeout(PAGE_TIMEOUT_MS)
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
                self._ready.set_exception(e if isinstance(e, Unavailable) else
                                          Unavailable(f"the browser did not start: {_first_line(e)}"))
        finally:
            try:
                if browser is not None:
                    browser.close()
            except Error:
                pass  # already gone (its process was interrupted too)
            finally:
                if playwright is not None:
                    playwright.stop()
                while not self._jobs.empty():  # calls that came in after the end: fail them, never hang
                    job = self._jobs.get()
                    if job is not None:
                        job[1].set_exception(PageError("the browser was stopped"))

    def _submit(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the worker thread (after the browser is up) and return its result here."""
        self._ready.result()  # raises Unavailable if the browser did not start
        if not self._worker.is_alive():
            raise PageError("the browser was stopped")
        done: Future = Future()
        self._jobs.put((fn, done))
        return done.result()

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

        return self._submit(evaluate)

    def load(self, model: Path) -> str:
        """Serve `model` and create its session in the page; returns the key to run it under."""
        model = model.resolve()
        key = self.models.get(str(model))
        if key is None:
            key = self.models[str(model)] = f"m{len(self.models)}"
            url = self.server.add(f"/models/{key}/{model.name}", model)
            self.call("load", key, url)
        return key

    def close(self) -> None:
        """Stop the browser, Playwright and the server; safe to call twice and after a failure."""
        atexit.unregister(self.close)
        self._jobs.put(None)
        self._worker.join(timeout=30)
        self.server.close()


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
        tensors = {k: {"dims": list(v.shape), "data": base64.b64encode(np.ascontiguousarray(v, "<f4").tobytes()).decode()}
                   for k, v in feed.items()}
        outputs = self.browser.call("run", self.key, tensors)
        return {k: np.frombuffer(base64.b64decode(v["data"]), "<f4").reshape(v["dims"]).astype(np.float32)
                for k, v in outputs.items()}


def warm_up(scope: Any) -> None:
    """Start the run's browser now, in the background, so that it is up when the first model needs it."""
    try:
        scope.shared(NAME, Browser)
    except Unavailable:
        pass  # each model reports it when it asks for the runtime


def load(subject: Subject) -> WebRuntime:
    """The model's ONNX file in onnxruntime-web's WASM execution provider, in headless Chromium."""
    browser = subject.scope.shared(NAME, Browser)
    try:
        key = browser.load(subject.folder / ONNX)
    except PageError as e:
        raise Unsupported(f"onnxruntime-web in Chromium cannot load {ONNX}: {e}") from None
    return WebRuntime(browser, key)

