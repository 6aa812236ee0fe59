"""Compare one runtime's outputs with the reference, element by element."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OutputComparison:
    """How far one named output is from the reference. Truthy when it passes."""

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

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}


def compare_output(name: str, ref: np.ndarray, got: np.ndarray | None, atol: float, rtol: float) -> OutputComparison:
    """An element fails only if it exceeds both atol and rtol * |ref| (as Polygraphy does);
    a NaN or an infinity on one side only (or infinities of opposite sign) fails; shape or
    dtype differences fail."""
    nan = float("nan")
    if got is None:
        return OutputComparison(name, [], "", nan, nan, [], atol, rtol, False, "output missing")
    got = np.asarray(got)
    shape, dtype = list(got.shape), str(got.dtype)
    if got.shape != ref.shape:
        return OutputComparison(name, shape, dtype, nan, nan, [], atol, rtol, False,
                                f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
    if got.dtype != ref.dtype:
        return OutputComparison(name, shape, dtype, nan, nan, [], atol, rtol, False,
                                f"dtype {got.dtype} != reference {ref.dtype}")
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    same = (ref64 == got64) | (np.isnan(ref64) & np.isnan(got64))  # equal infinities, NaN for NaN
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(got64 - ref64))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN against a number (either side): worst possible
    scale = np.abs(ref64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / scale)
    # A NaN or an infinity that the other side does not have fails whatever the tolerances:
    # against a NaN or infinite reference, `diff > rtol * scale` alone would never be true.
    nonfinite = ~same & ~(np.isfinite(ref64) & np.isfinite(got64))
    bad = nonfinite | ((diff > atol) & (diff > rtol * scale))
    if diff.size == 0:
        return OutputComparison(name, shape, dtype, 0.0, 0.0, [], atol, rtol, True)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
    return OutputComparison(
        name, shape, dtype, float(diff.max()), float(rel.max()), [int(i) for i in worst],
        atol, rtol, not bool(bad.any()),
        "" if not bad.any() else f"{int(bad.sum())} of {bad.size} elements out of tolerance",
    )
