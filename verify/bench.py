"""Latency of every runtime on the exported artifacts, and the speed-up over TF eager.

Timings are medians of interleaved rounds (each round times every runtime,
in rotating order), so a burst of load on a shared machine hits all runtimes
alike and ratios measured in one run stay meaningful.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tf_parity_export.models import UserError

from . import layout
from .deadline import DeadlineExceeded
from .render import text_table
from .runtimes import REFERENCE, RUNTIMES, RunScope, Subject, Unavailable

BATCHES = (1, 64)


def interleaved_samples(contenders: dict[str, Callable[[], object]], rounds: int = 15,
                        budget_s: float = 0.01) -> dict[str, list[float]]:
    """Per round, the mean seconds per call of every contender (in rotating order).
    Each contender is called enough times per round to fill about `budget_s`."""
    calls = {}
    for name, fn in contenders.items():
        fn()  # warm up: first calls build caches and kernels
        start = time.perf_counter()
        fn()
        calls[name] = max(1, int(budget_s / max(time.perf_counter() - start, 1e-7)))
    names = list(contenders)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, n = contenders[name], calls[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n)
    return samples


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int = 15,
                budget_s: float = 0.01) -> dict[str, float]:
    """Median over rounds of the mean seconds per call (see interleaved_samples)."""
    return {n: statistics.median(s) for n, s in interleaved_samples(contenders, rounds, budget_s).items()}


def benchmark(names: list[str], artifacts: Path, runtimes: list[str] | None = None,
              batches: tuple[int, ...] = BATCHES, rounds: int = 15) -> dict[str, Any]:
    """Latency per model x runtime x batch size, and the speed-up over TF eager.

    The same contract as verification: every folder passes the integrity
    checks first; a runtime named in `runtimes` that is unavailable, and any
    artifact a runtime cannot load, is a failure (listed in "failures");
    an unavailable runtime picked by default is only reported.

    Returns:
        {"machine", "batches", "models": {model: {runtime: {"batch_<n>_ms": .., "speedup_<n>": ..}
        or {"unavailable": reason} or {"error": reason}}}, "failures": [one line each]}
    """
    from tf_parity_export.models.lazy_tf import tensorflow_available

    if not tensorflow_available():
        raise UserError("--bench needs TensorFlow: the speed-up is measured against TF eager")
    required = set(runtimes or ())
    chosen = [r for r in (runtimes or list(RUNTIMES)) if r != REFERENCE]
    result: dict[str, Any] = {"machine": _machine(), "batches": list(batches), "rounds": rounds, "models": {},
                              "failures": []}
    with RunScope() as scope:
        for name in names:
            result["models"][name] = _bench_model(name, artifacts, chosen, required, batches, rounds, scope,
                                                  result["failures"])
    return result


def _bench_model(name: str, artifacts: Path, chosen: list[str], required: set[str], batches: tuple[int, ...],
                 rounds: int, scope: RunScope, failures: list[str]) -> dict[str, Any]:
    """One model's row of the benchmark, its runtimes loaded in the run's `scope`; problems go to `failures`."""
    from .verifier import _reference_model

    spec = layout.resolve_spec(name, artifacts)
    folder = Path(artifacts) / name
    card = layout.check_folder(Path(artifacts), name)
    model = _reference_model(spec, folder, card)
    subject = Subject(spec, folder, model, scope)
    loaded, rows = {}, {}
    for runtime in [REFERENCE, *chosen]:
        try:
            loaded[runtime] = RUNTIMES[runtime](subject)
        except Unavailable as e:
            rows[runtime] = {"unavailable": str(e)}
            if runtime in required:
                failures.append(f"{name}/{runtime}: unavailable: {e}")
        except (UserError, DeadlineExceeded) as e:  # the artifact cannot be loaded: a bad artifact, never "unavailable"
            rows[runtime] = {"error": str(e)}
            failures.append(f"{name}/{runtime}: {e}")
    rows = {r: rows.get(r, {}) for r in [REFERENCE, *chosen]}  # report order
    for batch in batches:
        rng = np.random.default_rng(batch)
        feed = {t.name: rng.random((batch, *t.shape[1:]), dtype=np.float32) for t in spec.inputs}
        for runtime, rt in list(loaded.items()):
            try:  # once under the deadline: a runtime that fails or hangs on this input is a row, not a crash
                rt.infer(feed)
            except Exception as e:
                rows[runtime] = {"error": f"batch {batch}: {type(e).__name__}: {_first_line(e)}"}
                failures.append(f"{name}/{runtime}: fails at inference on batch {batch} "
                                f"({type(e).__name__}: {_first_line(e)})")
                del loaded[runtime]
        if REFERENCE not in loaded:
            break  # nothing to measure a speed-up against
        # timed without the deadline's worker thread or watchdog (microseconds): this input was just shown to finish
        times = interleaved({n: (lambda rt=rt: getattr(rt, "unbounded", rt.infer)(feed)) for n, rt in loaded.items()},
                            rounds)
        for runtime, seconds in times.items():
            row = rows.setdefault(runtime, {})
            row[f"batch_{batch}_ms"] = seconds * 1e3
            row[f"speedup_{batch}"] = times[REFERENCE] / seconds
    return rows


def table(result: dict[str, Any]) -> str:
    """One line per model x runtime: latency at each batch size and the speed-up over TF eager."""

    batches = result["batches"]
    header = ["model", "runtime", *(f"b{b} ms" for b in batches), *(f"b{b} vs eager" for b in batches)]
    rows = []
    for model, runtimes in result["models"].items():
        for runtime, row in runtimes.items():
            if "unavailable" in row or "error" in row:
                state = "unavailable" if "unavailable" in row else "ERROR"
                rows.append([model, runtime, state, *([""] * (2 * len(batches) - 1))])
                continue
            rows.append([model, runtime, *(f"{row[f'batch_{b}_ms']:.3f}" for b in batches),
                         *(f"{row[f'speedup_{b}']:.1f}x" for b in batches)])
    lines = text_table(header, rows)
    verdict = ["FAILED: " + line for line in result.get("failures", [])]
    return "\n".join([*lines, f"machine: {result['machine']}; medians of {result['rounds']} interleaved rounds",
                      *verdict])


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"


def _machine() -> str:
    import os

    import onnxruntime

    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"onnxruntime {onnxruntime.__version__}")
