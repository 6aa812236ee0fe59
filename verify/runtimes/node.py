"""onnxruntime-node: the ONNX artifact run by Node.js, as a JavaScript service would.

One `node node/infer.mjs model.onnx` process per model; tensors go over
stdin/stdout as JSON lines with base64 float32 payloads, so nothing is lost
in transit.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..layout import ONNX
from .base import Subject, Unavailable

# The Node project sits in the repository beside the Python packages; set
# TF_PARITY_NODE_DIR to use another checkout of it.
NODE_DIR = Path(os.environ.get("TF_PARITY_NODE_DIR", Path(__file__).resolve().parents[2] / "node"))
INSTALL = "cd node && ONNXRUNTIME_NODE_INSTALL=skip npm ci"
TIMEOUT_S = 60


class NodeRuntime:
    name = "ort_node"

    def __init__(self, model_path: Path) -> None:
        self.proc = subprocess.Popen(
            ["node", str(NODE_DIR / "infer.mjs"), str(model_path)], cwd=NODE_DIR, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready = self._read()
        if "ready" not in ready:
            self.close()
            raise Unavailable(f"onnxruntime-node could not load {ONNX}: {ready.get('error', ready)}")
        self.version = ready["ready"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            return {"error": err[-1] if err else f"node exited with status {self.proc.wait()}"}
        return json.loads(line)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = {k: {"dims": list(v.shape), "data": base64.b64encode(np.ascontiguousarray(v, "<f4").tobytes()).decode()}
                   for k, v in feed.items()}
        self.proc.stdin.write(json.dumps({"feeds": request}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"onnxruntime-node: {reply['error']}")
        return {k: np.frombuffer(base64.b64decode(v["data"]), "<f4").reshape(v["dims"]).astype(np.float32)
                for k, v in reply["outputs"].items()}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


def load(subject: Subject) -> NodeRuntime:
    if shutil.which("node") is None:
        raise Unavailable("node is not on PATH")
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        raise Unavailable(f"onnxruntime-node is not installed in {NODE_DIR} (run: {INSTALL})")
    return NodeRuntime(subject.folder / ONNX)
