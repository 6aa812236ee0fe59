"""onnxruntime-node: the ONNX artifact run by Node.js, as a JavaScript service would.

One `node node/infer.mjs` process serves every model of a run (starting Node
and onnxruntime-node costs about 0.1 s); tensors go over stdin/stdout as JSON
lines with base64 float32 payloads, so nothing is lost in transit.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ..layout import ONNX
from .base import Subject, Unavailable, Unsupported

# The Node project sits in the repository beside the Python packages; set
# TF_PARITY_NODE_DIR to use another checkout of it.
NODE_DIR = Path(os.environ.get("TF_PARITY_NODE_DIR", Path(__file__).resolve().parents[2] / "node"))
INSTALL = "cd node && ONNXRUNTIME_NODE_INSTALL=skip npm ci"


class NodeServer:
    """The node process, started on first use (or early, by `warm_up`) and stopped at exit.

    Starting returns at once; the first request waits for node's "ready" line,
    so node and onnxruntime-node load while the caller does other work.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", str(NODE_DIR / "infer.mjs")], cwd=NODE_DIR, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.ready = False
        atexit.register(self.close)

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        if not self.ready:
            hello = self._read()
            if "ready" not in hello:
                self.close()
                raise Unavailable(f"onnxruntime-node did not start: {hello.get('error', hello)}")
            self.ready = True
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            return {"error": err[-1] if err else f"node exited with status {self.proc.wait()}"}
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


_server: NodeServer | None = None


def _get_server() -> NodeServer:
    global _server
    if _server is None or not _server.alive():
        _server = NodeServer()
    return _server


class NodeRuntime:
    name = "ort_node"

    def __init__(self, server: NodeServer, model: Path) -> None:
        self.server, self.model = server, str(model)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {k: {"dims": list(v.shape), "data": base64.b64encode(np.ascontiguousarray(v, "<f4").tobytes()).decode()}
                   for k, v in feed.items()}
        reply = self.server.request({"model": self.model, "feeds": tensors})
        if "error" in reply:
            raise RuntimeError(f"onnxruntime-node: {reply['error']}")
        return {k: np.frombuffer(base64.b64decode(v["data"]), "<f4").reshape(v["dims"]).astype(np.float32)
                for k, v in reply["outputs"].items()}


def _check_installed() -> None:
    if shutil.which("node") is None:
        raise Unavailable("node is not on PATH")
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        raise Unavailable(f"onnxruntime-node is not installed in {NODE_DIR} (run: {INSTALL})")


def warm_up(scope: Any) -> None:
    """Start node now, so that it is ready when the first model needs it (the process serves the whole run)."""
    try:
        _check_installed()
    except Unavailable:
        return  # each model reports it when it asks for the runtime
    _get_server()


def load(subject: Subject) -> NodeRuntime:
    _check_installed()
    server = _get_server()
    model = (subject.folder / ONNX).resolve()
    reply = server.request({"model": str(model)})
    if "error" in reply:
        raise Unsupported(f"onnxruntime-node cannot load {ONNX}: {reply['error']}")
    return NodeRuntime(server, model)
