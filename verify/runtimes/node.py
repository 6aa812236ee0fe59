"""onnxruntime-node: the ONNX artifact run by Node.js, as a JavaScript service would.

One `node node/infer.mjs` process serves every model of a run (starting Node
and onnxruntime-node costs about 0.1 s). Requests and replies go over two
pipes of their own, not stdin/stdout, so nothing else Node prints (a
`NODE_OPTIONS=--require` hook that logs) can break them; tensors travel as
their raw bytes with their type (float32, int32, int64, bool, ...), so
nothing is lost in transit. Every wait is bounded: node's ready line and
each call by the deadline (verify/deadline.py); a call past it kills Node,
and the next call starts a fresh one.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import re
import selectors
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import deadline, interrupt
from . import node_project
from ..layout import ONNX
from .base import Subject, Unavailable, Unsupported
from .tensors import from_wire, to_wire

# Where the Node project is (verify/runtimes/node_project.py: TF_PARITY_NODE_DIR, a checkout's node/
# after `npm ci`, or the per-user folder `verify-models --install-node` fills).
NODE_DIR = node_project.node_dir()
INSTALL = node_project.INSTALL
# Node and onnxruntime-node start in about 0.1 s; a node that has not said it is ready by then will not.
START_TIMEOUT_S = 30.0


class NodeError(RuntimeError):
    """Node died, or answered what the protocol does not allow."""


class NodeServer:
    """The node process, started on first use (or early, by `warm_up`) and stopped at exit.

    Starting returns at once; the first request waits for node's "ready" message,
    so node and onnxruntime-node load while the caller does other work.
    """

    def __init__(self) -> None:
        request_r, self._request = os.pipe()
        self._reply, reply_w = os.pipe()
        try:
            self.proc = subprocess.Popen(["node", str(NODE_DIR / "infer.mjs"), str(request_r), str(reply_w)],
                                         cwd=NODE_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, pass_fds=(request_r, reply_w))
        except BaseException:
            for fd in (request_r, self._request, self._reply, reply_w):
                os.close(fd)
            raise
        os.close(request_r)
        os.close(reply_w)
        os.set_blocking(self._request, False)
        os.set_blocking(self._reply, False)
        # The last lines node wrote to stderr (its error when it dies), drained so it never blocks on a full pipe.
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        threading.Thread(target=self._drain, name="ort_node-stderr", daemon=True).start()
        self.ready = False
        self.closed = False
        atexit.register(self.close)
        interrupt.register(self)

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())

    def request(self, header: dict[str, Any], tensors: list[memoryview] = ()) -> tuple[dict[str, Any], bytes]:
        """Send one frame and wait for the reply (header, payload), within the deadline; node is killed past it."""
        if not self.ready:
            limit = START_TIMEOUT_S
            try:
                hello, _ = self._exchange(None, [], limit, "node's start")
            except deadline.DeadlineExceeded:
                raise Unavailable(f"onnxruntime-node did not start within {limit:g} s") from None
            except NodeError as e:
                raise Unavailable(f"onnxruntime-node did not start: {e}") from None
            if "ready" not in hello:
                self.kill()
                raise Unavailable(f"onnxruntime-node did not start: {hello.get('error', hello)}")
            self.ready = True
        return self._exchange(header, list(tensors), deadline.seconds(), "onnxruntime-node")

    def _exchange(self, header: dict[str, Any] | None, tensors: list[memoryview], limit: float,
                  what: str) -> tuple[dict[str, Any], bytes]:
        out: list[memoryview] = []
        if header is not None:
            head = json.dumps(header).encode()
            out = [memoryview(struct.pack("<I", len(head)) + head), *tensors]
        got = bytearray()
        need: int | None = None  # the reply's size once its header is in
        reply: dict[str, Any] | None = None
        end = time.monotonic() + limit
        with selectors.DefaultSelector() as sel:
            sel.register(self._reply, selectors.EVENT_READ)
            if out:
                sel.register(self._request, selectors.EVENT_WRITE)
            while reply is None or len(got) < need:
                left = end - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise deadline.DeadlineExceeded(what, limit, "node was killed")
                for key, _ in sel.select(left):
                    if key.fd == self._request:
                        try:
                            sent = os.write(self._request, out[0])
                        except BrokenPipeError:
                            raise NodeError(self._died()) from None
                        out[0] = out[0][sent:]
                        while out and not len(out[0]):
                            out.pop(0)
                        if not out:
                            sel.unregister(self._request)
                    else:
                        chunk = os.read(self._reply, 1 << 20)
                        if not chunk:
                            raise NodeError(self._died())
                        got += chunk
                if reply is None and len(got) >= 4:
                    (length,) = struct.unpack_from("<I", got)
                    if len(got) >= 4 + length:
                        reply = json.loads(got[4:4 + length])
                        del got[:4 + length]
                        need = sum(t["nbytes"] for t in reply.get("outputs", []))
        return reply, bytes(got)

    def _died(self) -> str:
        try:
            status = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            status = None
        time.sleep(0.05)  # its last stderr lines
        lines = [line.strip() for line in self._stderr if line.strip()]
        errors = [line for line in lines if re.match(r"\w*(Error|Exception)\b", line)]  # not "Node.js v20"
        return (errors or lines or [f"node exited with status {status}"])[-1]

    def alive(self) -> bool:
        return not self.closed and self.proc.poll() is None

    def kill(self) -> None:
        """Stop node now (a call past the deadline, or Ctrl-C)."""
        self.proc.kill()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        interrupt.unregister(self)
        os.close(self._request)  # node ends when its request pipe closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._reply)


_server: NodeServer | None = None
_server_lock = threading.Lock()


def _get_server() -> NodeServer:
    global _server
    with _server_lock:
        if _server is None or not _server.alive():
            _server = NodeServer()
        return _server


class NodeRuntime:
    name = "ort_node"

    def __init__(self, model: Path) -> None:
        self.model = str(model)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs, data = [], []
        for name, array in feed.items():
            spec, raw = to_wire(array)
            inputs.append({"name": name, **spec, "nbytes": len(raw)})
            data.append(raw)
        reply, payload = _get_server().request({"model": self.model, "inputs": inputs}, data)
        if "error" in reply:
            raise RuntimeError(f"onnxruntime-node: {reply['error']}")
        outputs, offset = {}, 0
        for t in reply["outputs"]:
            outputs[t["name"]] = from_wire(t["type"], t["dims"], payload[offset:offset + t["nbytes"]])
            offset += t["nbytes"]
        return outputs


def _check_installed() -> None:
    if shutil.which("node") is None:
        raise Unavailable("node is not on PATH")
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        raise Unavailable(f"onnxruntime-node is not installed in {NODE_DIR} (run: {INSTALL})")


def warm_up(scope: Any) -> None:
    """Start node now, so that it is ready when the first model needs it (the process serves the whole run)."""
    try:
        _check_installed()
        _get_server()
    except Exception:  # not installed, or node would not start: each model reports it when it loads the runtime
        return


def load(subject: Subject) -> NodeRuntime:
    _check_installed()
    model = (subject.folder / ONNX).resolve()
    try:
        reply, _ = _get_server().request({"model": str(model)})
    except NodeError as e:  # node died loading it
        raise Unsupported(f"onnxruntime-node died loading {ONNX}: {e}") from None
    if "error" in reply:
        raise Unsupported(f"onnxruntime-node cannot load {ONNX}: {reply['error']}")
    return NodeRuntime(model)
