"""Nothing runs without end: every runtime call has a deadline, and a signal stops any run within 5 s.

The models that never end are real: a handmade ONNX `Loop` with no trip-count cap fed an infinite input,
and a plugin whose `tf.while_loop` has no `maximum_iterations`, fed finite inputs that overflow (3e38).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import _hang_plugins
from _processes import HAS_PROC, interrupt, litter
from test_plugins import fake_distribution
from tf_parity_export.models import MODELS
from tf_parity_export.verify import verify_models
from tf_parity_export.verify.deadline import DeadlineExceeded, OnThread, Stuck
from tf_parity_export.verify.runtimes import web

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
needs_browser = pytest.mark.skipif(web.missing() is not None, reason=f"no browser here: {web.missing()}")
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="reads the process table from /proc (Linux)")


def test_a_call_that_cannot_be_stopped_is_abandoned_at_the_deadline_and_not_called_again(monkeypatch):
    monkeypatch.setenv("TF_PARITY_DEADLINE", "0.5")
    bounded = OnThread("slow")
    assert bounded(lambda: 42) == 42
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"^slow did not finish within the deadline of 0.5 s \(set "
                                               r"TF_PARITY_DEADLINE=SECONDS to change it\)$"):
        bounded(lambda: time.sleep(3))
    assert time.monotonic() - start < 1.5
    with pytest.raises(Stuck, match="still running a call that ran past the deadline"):
        bounded(lambda: 42)


# Each runtime kind, in a process of its own (a runtime past its deadline may keep a core busy until the
# process ends): a loop that never ends, then a call that does.
PROBE = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import _onnx_graphs
    from tf_parity_export.models import ModelSpec, TensorSig
    from tf_parity_export.verify.runtimes import RUNTIMES, RunScope, Subject
    folder = Path({folder!r})
    _onnx_graphs.halving_loop(folder / "model.onnx")
    spec = ModelSpec(name="halving", builder="none:none", summary="", inputs=(TensorSig("x", (None, 4)),),
                     outputs=(TensorSig("y", (None, 4)),))
    found = {{}}
    with RunScope() as scope:
        subject = Subject(spec, folder, None, scope)
        for name in sys.argv[1:]:
            os.environ["TF_PARITY_DEADLINE"] = "60"  # loading (the browser's start) may take its time here
            runtime = RUNTIMES[name](subject)
            runtime.infer({{"x": np.full((1, 4), 8, np.float32)}})
            os.environ["TF_PARITY_DEADLINE"] = "1.5"
            row = found[name] = {{}}
            for what, x in (("never ends", np.inf), ("ends", 8.0)):
                start = time.monotonic()
                try:
                    row[what] = ["ok", runtime.infer({{"x": np.full((1, 4), x, np.float32)}})["y"].tolist()]
                except Exception as e:
                    row[what] = [type(e).__name__, str(e)]
                row[what].append(time.monotonic() - start)
    print(json.dumps(found), flush=True)
    os._exit(0)  # a call abandoned at its deadline may still run: leave without waiting for it
""")


@needs_browser
def test_every_kind_of_runtime_call_ends_at_the_deadline(tmp_path):
    """onnxruntime stops itself (RunOptions.terminate) and runs the next call; OpenVINO is cancelled; Node is
    killed and the next call gets a fresh one; the browser is killed and later calls refused; a pure-Python
    runtime (onnx.reference) is abandoned on its worker thread and refused from then on."""
    runtimes = ["ort_web", "ort_node", "ort_cpu", "openvino", "onnx_reference"]  # the ones left spinning last
    script = PROBE.format(tests=str(Path(__file__).parent), folder=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script, *runtimes], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    for name in runtimes:
        kind, message, seconds = found[name]["never ends"]
        assert kind == "DeadlineExceeded" and "within the deadline of 1.5 s" in message, (name, kind, message)
        assert seconds < 1.5 + 3, (name, seconds)
    then = {name: found[name]["ends"][:2] for name in runtimes}
    assert then["ort_cpu"] == ["ok", [[1.0] * 4]] and then["ort_node"] == ["ok", [[1.0] * 4]]
    assert then["onnx_reference"][0] == "Stuck"
    assert then["openvino"][0] in ("ok", "Stuck")  # cancelled between nodes, if the loop lets it
    assert then["ort_web"] == ["PageError", "the browser was stopped: a call ran past the deadline of 1.5 s"]
    assert "Chromium was killed" in found["ort_web"]["never ends"][1]
    assert "node was killed" in found["ort_node"]["never ends"][1]


@pytest.fixture(scope="module")
def capless(artifacts, report, tmp_path_factory):
    """The `capless` plugin model exported (real TensorFlow, tf2onnx, LiteRT), registered while this module runs,
    and a site folder that installs it (and `forever`) by entry point for commands run in other processes.
    Depends on the session's artifacts and report so that they never include it."""
    from tf_parity_export.export import export_models

    site = tmp_path_factory.mktemp("hang-site")
    fake_distribution(site, "hang-plugins", {"capless": "_hang_plugins:CAPLESS", "forever": "_hang_plugins:FOREVER"},
                      {"_hang_plugins": Path(_hang_plugins.__file__).read_text()})
    out = tmp_path_factory.mktemp("capless")
    MODELS["capless"] = _hang_plugins.CAPLESS
    try:
        export_models(["capless"], out, verify=False)
        inputs = out.parent / "overflowing.npz"
        np.savez(inputs, x=np.full((2, 4), _hang_plugins.OVERFLOWING, np.float32))
        yield out, inputs, site
    finally:
        MODELS.pop("capless", None)


def test_a_loop_that_never_ends_is_one_line_at_the_deadline_and_runs_nowhere(capless):
    """Its control-flow trace (the first thing run on every case) hits the deadline: the case is reported
    with that line and run on no runtime (each would hang too), and the run ends, failing: nothing compared."""
    out, inputs, site = capless
    env = {**os.environ, "PYTHONPATH": str(site), "TF_PARITY_DEADLINE": "2"}
    start = time.monotonic()
    result = subprocess.run([str(BIN / "verify-models"), "capless", "--artifacts", str(out), "--inputs", str(inputs)],
                            capture_output=True, text=True, env=env, timeout=180)
    took = time.monotonic() - start
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    note = [line for line in result.stdout.splitlines() if "deadline" in line and line.startswith("capless case")]
    assert note == ["capless case user:overflowing.npz: its control-flow trace in onnxruntime did not finish within "
                    "the deadline of 2 s (set TF_PARITY_DEADLINE=SECONDS to change it); a loop that never ends on "
                    "this input: run on no runtime (each would hang), not counted"], result.stdout
    assert result.stderr.splitlines() == [
        "error: capless: no case was compared: all 1 are deadline cases, reported but not counted; give inputs on "
        "which the model finishes"], result.stderr
    assert took < 90, f"took {took:.1f} s"


def test_the_same_model_on_finite_inputs_that_end_still_verifies(capless):
    out, _, _ = capless
    rep = verify_models(["capless"], out, runtimes=["tf_eager", "ort_cpu", "onnx_reference"])
    assert rep.failures() == [] and {c["kind"] for c in rep.models[0].cases} <= {"random", "coverage"}


def _python_started(seen: dict[int, str]) -> bool:
    return any("chrom" in name for name in seen.values()) and any(name == "node" for name in seen.values())


@needs_browser
@needs_proc
def test_ctrl_c_stops_verify_models_hung_in_a_loop_within_5s(capless, short_tmpdir):
    """Ctrl-C (SIGINT to the process group) while the coverage trace runs a loop that never ends, in
    onnxruntime's C++ (the deadline is far off): exit 130 at once, nothing left running or in $TMPDIR."""
    out, inputs, site = capless
    env = {**os.environ, "PYTHONPATH": str(site), "TF_PARITY_DEADLINE": "600", "TMPDIR": str(short_tmpdir)}
    command = [str(BIN / "verify-models"), "capless", "--artifacts", str(out), "--inputs", str(inputs)]
    run = interrupt(command, env, _python_started, 4.0, lambda proc: os.killpg(proc.pid, signal.SIGINT))
    assert run.returncode == 130 and run.seconds < 5, (run.returncode, run.seconds, run.err)
    assert run.err.splitlines() == ["interrupted (SIGINT): stopping the browser, Node and every process this run "
                                    "started"]
    assert not run.left and litter(short_tmpdir) == []


@needs_browser
@needs_proc
def test_sigterm_stops_export_models_hung_in_tensorflow_within_5s(capless, short_tmpdir, tmp_path):
    """SIGTERM to Python alone while a builder spins in TensorFlow's C++ while loop, the browser and Node up
    (started at once, in the background): exit 143 at once, and they go too."""
    _, _, site = capless
    env = {**os.environ, "PYTHONPATH": str(site), "TF_PARITY_DEADLINE": "600", "TMPDIR": str(short_tmpdir)}
    command = [str(BIN / "export-models"), "forever", "--out", str(tmp_path / "out")]
    run = interrupt(command, env, _python_started, 3.0, lambda proc: os.kill(proc.pid, signal.SIGTERM))
    assert run.returncode == 143 and run.seconds < 5, (run.returncode, run.seconds, run.err)
    assert "Traceback" not in run.err
    assert not run.left and litter(short_tmpdir) == []
