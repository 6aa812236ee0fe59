"""Compare one runtime's outputs with the reference, element by element.

Tolerance at scale. The spec's `atol`/`rtol` hold for an output computed from
one input row. An output element that *sums over the batch* (fancy_mlp's and
chimera's `total`) adds n = batch x terms-per-row float32 numbers, and two
correct float32 runtimes may add them in different orders: onnxruntime adds
them one after another, TensorFlow pairwise. The rounding error of adding n
terms one by one is a random walk of n roundings, each at most
u = 2**-24 relative (float32's unit roundoff), so it grows like sqrt(n) u
times the sum of the terms' magnitudes (Higham and Mary, "A new approach to
probabilistic rounding error analysis", 2019); pairwise summation stays
within log2(n) u. Such an element is held to

    rtol_n = rtol + SUM_SIGMAS * sqrt(n) * u

which, measured on fancy_mlp with 1,000,000 rows (n = 2e7), is 5.3e-4 where
onnxruntime's float32 sum was 1.04e-4 from the exact (float64) sum and
TensorFlow's 2e-8. The bound assumes the terms' magnitudes add up to about
the sum's (no cancellation), which holds for the seeds: the summed
activations are ReLU outputs, never negative. At the built-in batch sizes
(n <= 140) it adds at most 1.4e-6 to rtol, so a real change, such as one
weight moved by 1e-3, still fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# float32's unit roundoff, and how many sqrt(n) u an order-dependent float32
# sum may drift (one-by-one summation measured 0.4 sqrt(n) u on fancy_mlp).
UNIT_ROUNDOFF = 2.0**-24
SUM_SIGMAS = 2.0
BLOCK = 1 << 20  # elements compared at a time: float64 temporaries stay ~8 MiB each


def summed_rtol(rtol: float, terms: int) -> float:
    """The relative tolerance of an element that sums `terms` float32 numbers (see the module docstring)."""
    return rtol if terms <= 1 else rtol + SUM_SIGMAS * math.sqrt(terms) * UNIT_ROUNDOFF


@dataclass(frozen=True)
class OutputComparison:
    """How far one named output is from the reference. Truthy when it passes.

    `rtol` is the one applied: the spec's, grown by `summed_rtol` when each
    element sums `terms` > 1 float32 numbers over the batch.

    Beside them, the error measured against the output's scale, as Polygraphy
    and onnx2tf report it (the verdict stays on atol/rtol): `scale_error`,
    max|got - ref| / max|ref|; `cosine`, the cosine similarity of the two
    outputs as vectors; `snr_db`, 10 log10(sum ref^2 / sum (got - ref)^2).
    NaN where they cannot be computed (a shape or dtype mismatch, a
    non-finite value); an exact match has scale error 0, cosine 1, SNR inf.
    """

    output: str
    shape: list[int]
    dtype: str
    max_abs: float
    max_rel: float
    worst_index: list[int]
    atol: float
    rtol: float
    passed: bool
    note: str = ""
    terms: int = 1
    scale_error: float = float("nan")
    cosine: float = float("nan")
    snr_db: float = float("nan")

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict[str, Any]:
        """Non-finite numbers stay floats here; the report writer spells them out (layout.json_safe)."""
        return asdict(self)


def compare_output(name: str, ref: np.ndarray, got: np.ndarray | None, atol: float, rtol: float,
                   terms: int = 1) -> OutputComparison:
    """An element fails only if it exceeds both atol and rtol * |ref| (as Polygraphy does);
    a NaN or an infinity on one side only (or infinities of opposite sign) fails; shape or
    dtype differences fail. Equal values pass, infinities of the same sign included.

    `terms`: how many float32 numbers each element sums over the batch; rtol
    grows with it (`summed_rtol`). Compared in blocks, so a million-row output
    needs only a few MiB of temporaries.
    """
    nan = float("nan")
    rtol = summed_rtol(rtol, terms)
    if got is None:
        return OutputComparison(name, [], "", nan, nan, [], atol, rtol, False, "output missing", terms)
    got = np.asarray(got)
    shape, dtype = list(got.shape), str(got.dtype)
    if got.shape != ref.shape:
        return OutputComparison(name, shape, dtype, nan, nan, [], atol, rtol, False,
                                f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}", terms)
    if got.dtype != ref.dtype:
        return OutputComparison(name, shape, dtype, nan, nan, [], atol, rtol, False,
                                f"dtype {got.dtype} != reference {ref.dtype}", terms)
    if got.size == 0:
        return OutputComparison(name, shape, dtype, 0.0, 0.0, [], atol, rtol, True, "", terms, 0.0, 1.0, math.inf)
    flat_ref, flat_got = ref.reshape(-1), got.reshape(-1)
    max_abs, max_rel, worst, bad = -1.0, 0.0, 0, 0
    sums = np.zeros(4)  # sum ref^2, sum got^2, sum ref*got, sum (got - ref)^2: the scale-aware metrics
    max_ref, finite = 0.0, True
    for start in range(0, flat_ref.size, BLOCK):
        ref64 = flat_ref[start:start + BLOCK].astype(np.float64)
        got64 = flat_got[start:start + BLOCK].astype(np.float64)
        same = (ref64 == got64) | (np.isnan(ref64) & np.isnan(got64))
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(got64 - ref64)
        diff[same] = 0.0
        diff[np.isnan(diff)] = np.inf  # NaN against a number, or opposite infinities: worst possible
        scale = np.abs(ref64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(diff == 0, 0.0, diff / scale)
        rel[np.isnan(rel)] = np.inf  # an infinite error against an infinite reference
        # A NaN or an infinity that the other side does not have fails whatever the tolerances:
        # against a NaN or infinite reference, `diff > rtol * scale` alone would never be true.
        nonfinite = ~same & ~(np.isfinite(ref64) & np.isfinite(got64))
        bad += int((nonfinite | ((diff > atol) & (diff > rtol * scale))).sum())
        i = int(np.argmax(diff))
        if diff[i] > max_abs:
            max_abs, worst = float(diff[i]), start + i
        max_rel = max(max_rel, float(rel.max()))
        finite = finite and bool(np.isfinite(ref64).all() and np.isfinite(got64).all())
        if finite:
            max_ref = max(max_ref, float(scale.max()))
            with np.errstate(over="ignore", invalid="ignore"):  # squares of values near float32's limit
                sums += [ref64 @ ref64, got64 @ got64, ref64 @ got64, diff @ diff]
    index = [int(i) for i in np.unravel_index(worst, got.shape)] if got.ndim else []
    metrics = _scale_metrics(max_abs, max_ref, *sums) if finite else (nan, nan, nan)
    return OutputComparison(
        name, shape, dtype, max_abs, max_rel, index, atol, rtol, not bad,
        "" if not bad else f"{bad} of {got.size} elements out of tolerance", terms, *metrics,
    )


def _scale_metrics(max_abs: float, max_ref: float, ref2: float, got2: float, dot: float,
                   err2: float) -> tuple[float, float, float]:
    """(scale error, cosine similarity, SNR in dB) from the sums over every element."""
    if not all(math.isfinite(v) for v in (ref2, got2, dot, err2)):
        return max_abs / max_ref if max_ref > 0 else math.nan, math.nan, math.nan  # sums beyond float64
    scale_error = max_abs / max_ref if max_ref > 0 else (0.0 if max_abs == 0 else math.inf)
    if ref2 > 0 and got2 > 0:
        cosine = min(1.0, max(-1.0, dot / math.sqrt(ref2 * got2)))
    else:
        cosine = 1.0 if ref2 == got2 else 0.0  # both all zeros: the same; one all zeros: nothing in common
    snr_db = math.inf if err2 == 0 else (10 * math.log10(ref2 / err2) if ref2 > 0 else -math.inf)
    return float(scale_error), float(cosine), float(snr_db)


def insensitivity(values: list[np.ndarray], atol: float, rtol: float, batched: bool = True) -> dict[str, Any] | None:
    """Whether an output never moves: a runtime that returned, at every element position, one
    constant whatever the input would pass every comparison, so parity on it proves nothing.

    `values`: the reference's output for each counted case; its rows (the batch, `batched`, or
    the whole value, one row per case, for an output without a batch dimension) are stacked. At one position, a constant c
    passes against every value v when |c - v| <= max(atol, rtol |v|) (the comparison's rule),
    so such a c exists exactly when the intervals [v - t(v), v + t(v)] share a point. The
    output is insensitive when they do at every position.

    Returns:
        None when the output moves somewhere; else {"spread": the largest max - min over a
        position, "rows": how many values each position had, "atol", "rtol"}.
    """
    low = high = top = bottom = None  # per position: max(v - t), min(v + t), max(v), min(v)
    count = 0
    for value in values:
        value = np.asarray(value)
        rows = value if batched else value[np.newaxis]
        if not rows.ndim or (top is not None and rows.shape[1:] != top.shape):
            return None
        for start in range(0, rows.shape[0], 1 << 16):  # float64 temporaries of a few MiB at a time
            v = rows[start:start + (1 << 16)].astype(np.float64)
            if not np.isfinite(v).all():
                return None  # a NaN or infinite reference has nothing to agree with
            t = np.maximum(atol, rtol * np.abs(v))
            parts = ((v - t).max(axis=0), (v + t).min(axis=0), v.max(axis=0), v.min(axis=0))
            if top is None:
                low, high, top, bottom = parts
            else:
                low, high = np.maximum(low, parts[0]), np.minimum(high, parts[1])
                top, bottom = np.maximum(top, parts[2]), np.minimum(bottom, parts[3])
            count += v.shape[0]
    if count < 2 or not (low <= high).all():
        return None  # one value always matches itself; or some position moves
    spread = float((top - bottom).max())
    return {"spread": spread, "rows": count, "atol": atol, "rtol": rtol}
