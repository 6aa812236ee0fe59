"""The JavaScript runtimes' channels: Node's own pipes, every wait bounded, every tensor type both ways."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import _onnx_graphs
from _processes import HAS_PROC, alive, cmdline, descendants
from tf_parity_export.models import ModelSpec, TensorSig
from tf_parity_export.verify import verify_models
from tf_parity_export.verify.runtimes import RunScope, Subject, node, web

WEB_MISSING = web.missing()
needs_browser = pytest.mark.skipif(WEB_MISSING is not None, reason=f"no browser here: {WEB_MISSING}")
NODE_MISSING = None
try:
    node._check_installed()
except node.Unavailable as e:
    NODE_MISSING = str(e)
needs_node = pytest.mark.skipif(NODE_MISSING is not None, reason=f"no Node here: {NODE_MISSING}")


@needs_node
@needs_browser
def test_a_node_options_hook_that_prints_breaks_neither_node_runtime(artifacts, tmp_path, monkeypatch):
    """NODE_OPTIONS=--require hook.cjs, a hook that logs to stdout at load and then every millisecond (common in
    corporate setups): both Node processes (ours and Playwright's driver) start with it, and both runtimes pass."""
    hook = tmp_path / "hook.cjs"
    hook.write_text("console.log('hook: loaded');\n"
                    "setInterval(() => process.stdout.write('hook: tick {\"ready\": 1}\\n'), 1).unref();\n")
    monkeypatch.setenv("NODE_OPTIONS", f"--require {hook}")
    monkeypatch.setattr(node, "_server", None)  # a fresh node, started with the hook
    rep = verify_models(["mlp"], artifacts, runtimes=["ort_node", "ort_web"])
    assert rep.models[0].runtimes == {"ort_node": "ran", "ort_web": "ran"}, rep.models[0].runtimes
    assert rep.failures() == []
    assert [r.status for r in rep.models[0].results] == ["passed"] * 6


def _typed_subject(folder: Path, scope: RunScope) -> Subject:
    _onnx_graphs.typed(folder / "model.onnx")
    spec = ModelSpec(name="typed", builder="none:none", summary="every tensor type",
                     inputs=(TensorSig("f32", (None, 3)),), outputs=(TensorSig("f32_out", (None, 3)),))
    return Subject(spec, folder, None, scope)


@pytest.mark.parametrize("runtime", [pytest.param(node, marks=needs_node, id="ort_node"),
                                     pytest.param(web, marks=needs_browser, id="ort_web")])
def test_tensors_keep_their_type_both_ways(tmp_path, runtime):
    """int32, int64, bool, float16, float64 and float32 inputs go in as such, and each output comes back in its
    own type, bit for bit what onnxruntime computes (an int32 output is int32, not float32)."""
    feed = _onnx_graphs.typed_feed()
    with RunScope() as scope:
        subject = _typed_subject(tmp_path, scope)
        got = runtime.load(subject).infer(feed)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        assert got[name].dtype == expected.dtype and got[name].shape == expected.shape, name
        assert got[name].tobytes() == expected.tobytes(), (name, got[name], expected)


@needs_browser
@pytest.mark.skipif(not HAS_PROC, reason="reads the process table from /proc (Linux)")
def test_a_chromium_that_hangs_at_start_is_unavailable_quickly(artifacts, tmp_path, monkeypatch):
    """TF_PARITY_CHROMIUM names a program that never comes up: ort_web is `unavailable` after the start limit,
    the other runtimes still run, and the program is not left running."""
    hang = tmp_path / "chromium"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    monkeypatch.setenv("TF_PARITY_CHROMIUM", str(hang))
    monkeypatch.setattr(web, "START_TIMEOUT_S", 3.0)
    start = time.monotonic()
    rep = verify_models(["mlp"], artifacts, runtimes=["ort_cpu", "ort_web"])
    took = time.monotonic() - start
    assert rep.models[0].runtimes == {"ort_cpu": "ran", "ort_web": "unavailable: Chromium did not start within 3 s"}
    assert took < 20, f"took {took:.1f} s"
    sleepers = [pid for pid in descendants(os.getpid()) if "sleep 600" in cmdline(pid)]
    assert not alive(set(sleepers))


@needs_node
def test_node_that_never_says_it_is_ready_is_unavailable_quickly(tmp_path, monkeypatch):
    """A node that starts but never answers (here: a NODE_OPTIONS hook that blocks) is `unavailable` after
    the start limit, never a wait for ever."""
    hook = tmp_path / "block.cjs"
    hook.write_text("Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);\n")  # blocks for ever
    monkeypatch.setenv("NODE_OPTIONS", f"--require {hook}")
    monkeypatch.setattr(node, "START_TIMEOUT_S", 2.0)
    monkeypatch.setattr(node, "_server", None)
    with RunScope() as scope:
        subject = _typed_subject(tmp_path, scope)
        start = time.monotonic()
        with pytest.raises(node.Unavailable, match="^onnxruntime-node did not start within 2 s$"):
            node.load(subject)
        assert time.monotonic() - start < 10
    assert not node._server.alive()
