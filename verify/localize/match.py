"""Pair a runtime's tensors with TensorFlow's, and measure each pair against a scaled tolerance.

Names. tf2onnx names each ONNX tensor after the TF tensor it came from
(`dense/MatMul:0`); a TF op it writes as several ONNX nodes gives the first
node the TF name and the others derived ones (`Rsqrt__13:0`, `Erfc:0__erf`),
and the TF value is not always under the TF name: TF's `Rsqrt` becomes
`Sqrt` (named `Rsqrt:0`) then `Reciprocal` (`Rsqrt__13:0`), which is the one
equal to TF's `Rsqrt:0`. So a TF tensor's candidates are every ONNX tensor
named after it, derived names included, and the candidate whose values are
closest is its match; the others are listed as unmatched, with the reason.
LiteRT joins the TF names of the ops it fused with ';' and numbers repeats
(`while1`: the While op's second output); each part is a candidate name.

Layouts. tf2onnx computes convolutions in NCHW where TF has NHWC, and may
leave a tensor in either layout; a reduction may keep size-1 dimensions TF
squeezed. As onnx2tf does, every axis permutation of the TF tensor whose
shape matches is tried (after dropping size-1 dimensions on both sides when
no permutation matches as is), and the closest is taken.

Tolerance scaled to the tensor. The model's tolerance holds for its outputs:
an element fails beyond both `atol` and `rtol * |ref|`. `rtol` is already
scale-free; `atol` is an absolute floor for elements near zero, and what
"near zero" means depends on the tensor's magnitude. So a tensor T is held to

    atol_T = atol * scale(T) / scale(outputs)      (scale: the largest |value| of the reference)

with `rtol` unchanged: at the outputs this is exactly the verifier's rule, and
inside the graph every tensor gets the same relative slack the outputs get.
That is fair to deep graphs: a correct float32 computation's rounding error in a
tensor grows with the tensor's magnitude, not with its depth, so a layer whose
activations are 1000x the outputs' (before a normalization) is not flagged for
errors that are float32 rounding at its own scale, and one whose activations are
1000x smaller is not let off with the outputs' absolute floor.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

# Ranks above this are compared only as they are (7! permutations would cost more than they find).
MAX_PERMUTED_RANK = 6
_DERIVED = (re.compile(r"^(?P<base>.+)__\d+:(?P<port>\d+)$"),  # tf2onnx's extra nodes: Rsqrt__13:0
            re.compile(r"^(?P<base>.+):(?P<port>\d+)__[A-Za-z]\w*$"))  # the exporter's rewrites: Erfc:0__erf


def onnx_candidates(source: str, tf_names: list[str]) -> list[str]:
    """The TF tensors an ONNX tensor named `source` by tf2onnx may hold: the one of that name; the one
    its derived name comes from; for a `Loop` output (`<while>_loop:k`), the While op's float outputs
    (tf2onnx drops the loop counter and the bound, and state it reads from outside, so k shifts)."""
    if source in tf_names:
        return [source]
    for pattern in _DERIVED:
        found = pattern.match(source)
        if found and f"{found['base']}:{found['port']}" in tf_names:
            return [f"{found['base']}:{found['port']}"]
    loop = re.match(r"^(?P<op>.+)_loop:\d+$", source)
    if loop:
        return [n for n in tf_names if n.rpartition(":")[0] == loop["op"]]
    return []


def litert_candidates(name: str, tf_names: set[str]) -> list[str]:
    """The TF tensors a LiteRT tensor may hold: each ';'-joined part, as output 0, or as output k
    when the part ends in k (LiteRT's name for an op's k-th output, or a repeated name)."""
    found = []
    for part in (p.strip() for p in name.split(";")):
        if f"{part}:0" in tf_names:
            found.append(f"{part}:0")
        digits = re.match(r"^(?P<base>.+?)(?P<k>\d+)$", part)
        if digits:
            for tf_name in (f"{digits['base']}:{int(digits['k'])}", f"{digits['base']}:0"):
                if tf_name in tf_names:
                    found.append(tf_name)
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Layout:
    """How a TF tensor is laid out as the runtime's: optionally squeeze size-1 dims, then permute, then reshape."""

    perm: tuple[int, ...]
    squeeze: bool = False

    def apply(self, ref: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.squeeze:
            ref = ref.reshape([d for d in ref.shape if d != 1])
        return np.transpose(ref, self.perm).reshape(shape)

    def to_json(self) -> dict[str, object] | None:
        identity = self.perm == tuple(range(len(self.perm)))
        return None if identity and not self.squeeze else {"perm": list(self.perm), "squeeze": self.squeeze}


def layouts(shape: tuple[int, ...], ref_shape: tuple[int, ...]) -> list[Layout]:
    """Every way TF's tensor of `ref_shape` can be the runtime's of `shape`: identity first."""
    if math.prod(shape) != math.prod(ref_shape):
        return []
    found = _perms(tuple(shape), tuple(ref_shape), False)
    if not found:
        found = _perms(tuple(d for d in shape if d != 1), tuple(d for d in ref_shape if d != 1), True)
    return found


def _perms(shape: tuple[int, ...], ref_shape: tuple[int, ...], squeeze: bool) -> list[Layout]:
    if len(shape) != len(ref_shape):
        return []
    identity = tuple(range(len(shape)))
    if len(shape) > MAX_PERMUTED_RANK:
        return [Layout(identity, squeeze)] if shape == ref_shape else []
    return [Layout(p, squeeze) for p in sorted(itertools.permutations(identity), key=lambda p: p != identity)
            if tuple(ref_shape[i] for i in p) == shape]


def scale(values: np.ndarray) -> float:
    """The largest finite |value| (0 for an empty or all non-finite tensor)."""
    finite = np.abs(values[np.isfinite(values)]) if values.size else values
    return float(finite.max()) if finite.size else 0.0


@dataclass(frozen=True)
class TensorError:
    """One tensor against the reference. `ratio`: the worst element's error over its tolerance
    (above 1: outside it); `rel`: max abs over the reference's scale; `cosine`: of the flattened pair."""

    ratio: float
    max_abs: float
    rel: float
    cosine: float
    atol: float


def tensor_error(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> TensorError:
    """Compare one pair (same shape) elementwise: an element is within tolerance when
    |got - ref| <= max(atol, rtol * |ref|); NaN or an infinity on one side only is infinitely far.

    Plain numpy reductions, no BLAS call: a tensor of a million elements costs a few milliseconds."""
    g, r = np.asarray(got, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    if not g.size:
        return TensorError(0.0, 0.0, 0.0, 1.0, atol)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(g - r)
        finite = bool(np.isfinite(diff).all())
        if not finite:  # NaN where NaN and equal infinities are equal; anything else non-finite is infinitely far
            same = (g == r) | (np.isnan(g) & np.isnan(r))
            diff[same] = 0.0
            diff[np.isnan(diff)] = np.inf
        ratio = diff / np.maximum(atol, rtol * np.abs(r))
        ratio[diff == 0] = 0.0
    ratio[np.isnan(ratio)] = np.inf  # an infinite error against an infinite reference
    max_abs = float(diff.max())
    ref_scale = scale(r)
    rel = max_abs / ref_scale if ref_scale else (0.0 if max_abs == 0 else math.inf)
    if not finite:
        keep = np.isfinite(g) & np.isfinite(r)
        g, r = g[keep], r[keep]
    norms = math.sqrt(float(np.sum(g * g)) * float(np.sum(r * r)))
    cosine = float(np.sum(g * r)) / norms if norms else (1.0 if max_abs == 0 else 0.0)
    return TensorError(float(ratio.max()), max_abs, rel, cosine, atol)


def scaled_atol(atol: float, ref: np.ndarray, outputs_scale: float) -> float:
    """The model's atol scaled to this tensor (see the module docstring)."""
    return atol * scale(ref) / outputs_scale if outputs_scale > 0 else atol


def best_match(got: np.ndarray, candidates: dict[str, np.ndarray], atol: float, rtol: float,
               outputs_scale: float) -> tuple[str, Layout, TensorError] | None:
    """The candidate TF tensor and layout closest to `got` (smallest ratio), or None when no shape fits.

    Candidates are tried in order (identity layout first); the first within
    tolerance is taken: another layout or name can only be as close when the
    values are symmetric, and the search costs a comparison each."""
    best = None
    for tf_name, ref in candidates.items():
        atol_t = scaled_atol(atol, ref, outputs_scale)
        for lay in layouts(tuple(got.shape), tuple(ref.shape)):
            err = tensor_error(got, lay.apply(ref, tuple(got.shape)), atol_t, rtol)
            if best is None or err.ratio < best[2].ratio:
                best = (tf_name, lay, err)
            if err.ratio <= 1:
                return best
    return best
