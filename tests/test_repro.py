"""Exports are byte-identical, also while other threads draw from Python's global `random`.

The browser's warm-up thread does (Playwright's call ids come from `random.randrange`) while the
models are built; Keras seeds weights through that same global generator.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tf_parity_export.verify import layout
from tf_parity_export.verify.runtimes import WARM_UPS, web

ROOT = Path(__file__).resolve().parents[1]
# What an export writes whose bytes depend on this machine's CPU: TF eager's outputs (and the card that hashes
# them). Everything else must equal the committed artifacts/ on any machine.
CPU_DEPENDENT = ("output_0.pb", layout.CARD)


def files(out: Path, names: list[str]) -> dict[str, str]:
    """relative path -> sha256 of everything an export wrote for `names`, the manifest included."""
    found = {layout.INDEX: layout.sha256(out / layout.INDEX)}
    for name in names:
        found.update({f"{name}/{rel}": digest for rel, digest in layout.hash_tree(out / name).items()})
        found[f"{name}/{layout.CARD}"] = layout.sha256(out / name / layout.CARD)
    return found


class Noise:
    """A warm-up service that draws from the global `random` for as long as the run lives."""

    def __init__(self) -> None:
        self.draws = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, name="noise", daemon=True)
        self._thread.start()

    def _draw(self) -> None:
        import time

        while not self._stop.is_set():
            random.randrange(1 << 30)
            self.draws += 1
            time.sleep(0)  # let the build run between draws, as a real warm-up would

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def test_exports_are_identical_while_a_warm_up_draws_from_random(tmp_path, monkeypatch):
    """A warm-up registered like the browser's (WARM_UPS) draws from `random` without pause while the models are
    built: two exports are still byte-identical."""
    from tf_parity_export.export import api, export_models
    from tf_parity_export.verify import Report

    started: list[Noise] = []

    def noisy(scope):
        started.append(scope.shared("noise", Noise))

    monkeypatch.setitem(WARM_UPS, "ort_node", noisy)  # instead of Node: its warm-up is not under test here
    # The warm-ups start because the export will verify; the verification itself is not under test here.
    monkeypatch.setattr(api, "verify_models", lambda names, out, **kwargs: Report([], set(), 0.0, {}))
    names = ["mlp", "nest_mlp"]
    for run in ("a", "b"):
        export_models(names, tmp_path / run)
    noises = list({id(noise): noise for noise in started}.values())  # one per run (export and verify share it)
    assert len(noises) == 2 and all(noise.draws > 1000 for noise in noises)
    assert files(tmp_path / "a", names) == files(tmp_path / "b", names)


REPRO_RUNS = int(os.environ.get("TF_PARITY_REPRO_RUNS", "6"))


@pytest.mark.repro
@pytest.mark.skipif(web.missing() is not None, reason=f"the race needs the browser: {web.missing()}")
def test_exports_in_a_row_with_chromium_are_byte_identical(tmp_path):
    """`export-models mlp nest_mlp --out DIR` again and again, each starting Chromium while it builds: every run
    writes the same bytes, and what does not depend on the CPU equals the committed artifacts/.
    (TF_PARITY_REPRO_RUNS sets how many runs; 20 were measured once, see the README.)"""
    names = ["mlp", "nest_mlp"]
    runs = []
    for i in range(REPRO_RUNS):
        out = tmp_path / f"run{i}"
        subprocess.run([str(Path(sys.executable).with_name("export-models")), *names, "--out", str(out)],
                       check=True, capture_output=True, text=True, timeout=600)
        runs.append(files(out, names))
    assert all(run == runs[0] for run in runs), [sorted(k for k in run if run[k] != runs[0].get(k)) for run in runs]
    committed = files(ROOT / "artifacts", names)
    portable = [k for k in runs[0] if not k.endswith(CPU_DEPENDENT) and k != layout.INDEX]
    assert len(portable) > 10
    assert {k: runs[0][k] for k in portable} == {k: committed[k] for k in portable}
