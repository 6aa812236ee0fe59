"""A million rows through every runtime (marked `scale`: the README's test command runs it after the plain suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tf_parity_export.verify.runtimes import web

ROWS = 1_000_000
GIB = 2**30
# onnxruntime-web adds the batch's 20,000,000 float32 terms in one page, one thread; measured here its sum is
# 2.4e-3 (relative) off the exact one, beyond the summation tolerance (5.4e-4 at this size): a finding
# about the browser at scale, reported as FAIL. It must still be a comparison (the page held the batch and
# answered), never an error or a crash.
DRIFTS = {"ort_web"}


@pytest.mark.scale
@pytest.mark.parametrize("model", ["fancy_mlp", "chimera"])
def test_a_million_rows_that_cannot_be_split_stay_under_2_gb_on_every_runtime(artifacts, tmp_path, model):
    """`verify-models MODEL --inputs` with 1,000,000 x 20 float32 (the --inputs limit is 80 MiB): no process of
    the run (Python, Node, Chromium's) peaks at 2 GiB resident (what `/usr/bin/time -v` reports), and every
    runtime ran the batch (passing) or is unsupported with its limit."""
    inputs = tmp_path / "million.npz"
    np.savez(inputs, x=np.random.default_rng(1).random((ROWS, 20), dtype=np.float32))
    report = tmp_path / "report.json"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("verify-models")), model, "--artifacts",
                                 str(artifacts), "--inputs", str(inputs), "--json", str(report)], stdout=out, stderr=err)
    # wait4: the peak resident memory of this child and of every descendant it waited for (the driver, Chromium
    # and its renderers, Node), each process's own peak: the largest one
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_kib = usage.ru_maxrss
    err = (tmp_path / "err").read_text()
    assert "Traceback" not in err, err
    assert peak_kib * 1024 < 2 * GIB, f"peak {peak_kib / 1024:.0f} MiB"
    found = json.loads(report.read_text())["models"][0]
    for runtime, state in found["runtimes"].items():
        if state.startswith("unavailable"):
            continue  # not on this machine (a GPU provider); CI installs the others
        if state.startswith("unsupported"):
            assert "limit of" in state, state
            continue
        assert state == "ran", (runtime, state)
        [result] = [r for r in found["results"] if r["runtime"] == runtime]
        if runtime in DRIFTS:
            assert result["status"] in ("passed", "failed"), result
        else:
            assert result["status"] in ("passed", "measured"), result
    if web.missing() is None:
        assert found["runtimes"]["ort_web"] == "ran"
