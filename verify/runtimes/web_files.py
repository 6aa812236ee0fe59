"""The browser runtime's file server: loopback only, exact routes only, one Host only.

It listens on 127.0.0.1 on a port the kernel picks and answers:
- GET for exactly the URL paths it was given (the page, onnxruntime-web's
  files, the models, and each call's input tensors while the call runs);
- POST for exactly the URL paths a call expects its output tensors at;
and nothing else (404), whatever `..` or `.` a path holds: paths are looked
up as sent, never resolved against a folder. A request whose `Host` header
is not `127.0.0.1:<port>` is refused (403): a page of another site that a
DNS name rebound to 127.0.0.1 would send its own host name, and must not
read the models while a run is going.
"""

from __future__ import annotations

import http.server
import sys
import threading
from pathlib import Path
from typing import Any

_TYPES = ((".html", "text/html"), (".mjs", "text/javascript"), (".js", "text/javascript"),
          (".wasm", "application/wasm"), (".json", "application/json"))


def content_type(name: str) -> str:
    return next((kind for suffix, kind in _TYPES if name.endswith(suffix)), "application/octet-stream")


class Sink:
    """Where one POSTed tensor lands: at most `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data: bytes | None = None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"

    def _target(self) -> str | None:
        """The request's path, or None after refusing a request for another host."""
        if self.headers.get("Host") != self.server.host:
            self.send_error(403, "wrong Host")
            return None
        # The path exactly as sent: the stdlib already turned a leading "//" into "/" in self.path.
        sent = self.requestline.split(" ")[1] if self.requestline.count(" ") >= 2 else self.path
        return sent.split("?", 1)[0]

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        path = self._target()
        if path is None:
            return
        found = self.server.routes.get(path)
        if found is None:
            self.send_error(404)
            return
        body = found.read_bytes() if isinstance(found, Path) else found
        self.send_response(200)
        self.send_header("Content-Type", content_type(found.name) if isinstance(found, Path) else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        path = self._target()
        if path is None:
            return
        sink = self.server.sinks.get(path)
        if sink is None:
            self.send_error(404)
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if not 0 <= length <= sink.limit:
            self.send_error(413)
            return
        sink.data = self.rfile.read(length)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # silence the per-request log
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    host: str
    routes: dict[str, Path | memoryview]
    sinks: dict[str, Sink]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that goes away mid-response (Ctrl-C, a killed page) is not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FileServer:
    """A loopback-only HTTP server on an ephemeral port, in a daemon thread."""

    def __init__(self) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.host = "%s:%d" % self.httpd.server_address[:2]
        self.httpd.routes = {}
        self.httpd.sinks = {}
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ort_web-files", daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://{self.httpd.host}"

    def add(self, url_path: str, content: Path | memoryview) -> str:
        """Serve `content` (a file, or bytes held in memory) at `url_path`; returns its full URL."""
        self.httpd.routes[url_path] = Path(content) if isinstance(content, (str, Path)) else content
        return self.origin + url_path

    def expect(self, url_path: str, limit: int) -> Sink:
        """Take one POST of at most `limit` bytes at `url_path`."""
        sink = self.httpd.sinks[url_path] = Sink(limit)
        return sink

    def drop(self, *url_paths: str) -> None:
        """Stop answering these paths (a call's tensors, once the call is over)."""
        for path in url_paths:
            self.httpd.routes.pop(path, None)
            self.httpd.sinks.pop(path, None)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
