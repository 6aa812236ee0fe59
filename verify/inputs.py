"""The inputs the verifier feeds: seeded random batches, control-flow
coverage cases, and the user's own `.npz`, validated before anything runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf_parity_export.models import InputError, ModelSpec, TensorSig

BATCH_SIZES = (1, 2, 7)
INPUT_SEED = 1234
# A case whose tested norms come within this relative distance of a threshold
# may take either side in another runtime: it is a boundary case.
BOUNDARY_MARGIN = 1e-4


@dataclass(frozen=True)
class Case:
    """One input batch that goes through every runtime."""

    name: str
    kind: str  # "random", "coverage" or "user"
    feed: dict[str, np.ndarray]


def random_cases(spec: ModelSpec, batch_sizes: tuple[int, ...] = BATCH_SIZES, seed: int = INPUT_SEED) -> list[Case]:
    """Seeded random inputs of each input's dtype, at each batch size: uniform in its range
    (floats default to [0, 1), as the seed feeds), every integer of its range equally likely."""
    cases = []
    for batch in batch_sizes:
        rng = np.random.default_rng([seed, batch])
        feed = {t.name: random_values(rng, t, (batch, *t.shape[1:])) for t in spec.inputs}
        cases.append(Case(f"random_b{batch}", "random", feed))
    return cases


def random_values(rng: np.random.Generator, sig: TensorSig, shape: tuple[int, ...]) -> np.ndarray:
    """Random values for one input: its dtype, within its range (high exclusive)."""
    dtype = np.dtype(sig.dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if sig.integer:
        if sig.range is None:
            raise InputError(f"input {sig.name!r} is {sig.dtype} and has no range; declare "
                             f"TensorSig({sig.name!r}, ..., range=(low, high))")
        return rng.integers(int(sig.range[0]), int(sig.range[1]), size=shape, dtype=dtype)
    if sig.range is None and dtype == np.float32:
        return rng.random(shape, dtype=np.float32)  # the seed's inputs: these exact bits since schema 1
    low, high = sig.range if sig.range is not None else (0.0, 1.0)
    return (low + (high - low) * rng.random(shape)).astype(dtype)


def validate_feed(spec: ModelSpec, feed: dict[str, Any], source: str) -> dict[str, np.ndarray]:
    """Check names, dtypes, shapes and finiteness; one clear error for the first problem.

    Non-finite values are refused outright: with +inf, FancyMLP's loop halves
    an infinite norm forever in every runtime.
    """
    names = [t.name for t in spec.inputs]
    if sorted(feed) != sorted(names):
        raise InputError(f"{source}: has keys {sorted(feed)}, {spec.name} takes {names}")
    checked = {}
    for sig in spec.inputs:
        arr = np.asarray(feed[sig.name])
        if arr.dtype != np.dtype(sig.dtype):
            raise InputError(f"{source}: {sig.name!r} is {arr.dtype}, {spec.name} takes {sig.dtype}")
        want = tuple("batch" if d is None else d for d in sig.shape)
        ok = arr.ndim == len(sig.shape) and all(d is None or d == n for d, n in zip(sig.shape, arr.shape))
        if not ok or (arr.ndim and arr.shape[0] == 0):
            raise InputError(f"{source}: {sig.name!r} has shape {arr.shape}, {spec.name} takes {want} with batch >= 1")
        if not np.isfinite(arr).all():
            bad = "NaN" if np.isnan(arr).any() else "infinity"
            raise InputError(f"{source}: {sig.name!r} contains {bad}; inputs must be finite")
        if sig.integer and sig.range is not None and arr.dtype != np.bool_ and arr.size and \
                (arr.min() < sig.range[0] or arr.max() >= sig.range[1]):
            # an id beyond an Embedding's table is no input at all: TensorFlow refuses it, ONNX runtimes differ
            raise InputError(f"{source}: {sig.name!r} holds values in [{arr.min()}, {arr.max()}], outside its "
                             f"range [{sig.range[0]:g}, {sig.range[1]:g})")
        checked[sig.name] = arr
    return checked


# The most array data an `.npz` may hold, counted from its headers before
# anything is decompressed: 80 MiB is 2**20 rows of 20 float32 (the seeds'
# input), and keeps a whole verification within about 2 GB.
MAX_INPUT_BYTES = 80 * 2**20
MAX_MEMBERS = 64


def read_npz(path: Path, limit: int = MAX_INPUT_BYTES, error: type[Exception] = InputError,
             label: str = "") -> dict[str, np.ndarray]:
    """Read an `.npz` of plain numeric arrays, refusing oversized ones before decompressing.

    The sizes come from the zip's central directory (what each member
    inflates to; zipfile stops and fails the CRC if a member inflates to
    more) and from each `.npy` header (dtype and shape). Object arrays,
    bad headers, truncated or non-zip files: one line naming the problem
    (`error` is its type; `label` names the file in it, default its path).
    """
    import zipfile

    where = label or str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise error(f"{where}: holds {len(infos)} arrays; an input .npz holds at most {MAX_MEMBERS}")
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise error(f"{where}: holds two arrays under one name; refusing the ambiguity")
            declared = sum(i.file_size for i in infos)
            if declared > limit + 1024 * len(infos):  # + room for the .npy headers
                raise error(f"{where}: inflates to {declared / 2**20:.1f} MiB; inputs are limited to "
                            f"{limit / 2**20:.0f} MiB of array data (about {limit // 80:,} rows of 20 float32)")
            arrays, total = {}, 0
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise error(f"{where}: member {info.filename!r} is not an .npy array")
                key = info.filename[: -len(".npy")]
                with archive.open(info) as f:
                    fmt = np.lib.format
                    major, _ = fmt.read_magic(f)
                    read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
                    shape, _, dtype = read_header(f)
                    if dtype.hasobject or dtype.kind not in "biufc":
                        raise error(f"{where}: {key!r} is a {dtype} array; inputs must be numeric")
                    total += math.prod(shape) * dtype.itemsize
                    if total > limit:
                        raise error(f"{where}: holds {total / 2**20:.1f} MiB of array data; inputs are limited to "
                                    f"{limit / 2**20:.0f} MiB (about {limit // 80:,} rows of 20 float32)")
                with archive.open(info) as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
            return arrays
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError,
            RuntimeError) as e:
        # zipfile and numpy's format reader raise all of these on damaged bytes
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        fix = "; re-export" if error is not InputError else ""
        raise error(f"{where}: not a readable .npz file ({detail}){fix}") from None


def load_npz(path: Path, spec: ModelSpec, arrays: dict[str, np.ndarray] | None = None) -> Case:
    """Read a user's `.npz` (keys = input names) into one validated case.

    `arrays`: the file's arrays, already read by `read_npz` (one read serves every model).
    """
    feed = read_npz(path) if arrays is None else arrays
    return Case(f"user:{Path(path).name}", "user", validate_feed(spec, feed, str(path)))


# Norms entering FancyMLP's loop, and the path each must produce:
# 0.7 and 0.9 never enter the loop; 1.5 and 1.9 halve once; 3072 and 3686 halve 12 times;
# then the branch scales (norm < 0.8) or keeps. (chimera cannot get below ~0.52.)
COVERAGE_TARGETS = {
    "loop0_scaled": 0.7, "loop0_kept": 0.9,
    "loop1_scaled": 1.5, "loop1_kept": 1.9,
    "loop12_scaled": 0.75 * 2**12, "loop12_kept": 0.9 * 2**12,
}
# Deliberately on a decision boundary: float rounding may take either side.
BOUNDARY_TARGETS = {"boundary_loop": 1.0, "boundary_branch": 1.6}


def find_coverage_inputs(spec: ModelSpec, model: Any, seed: int = INPUT_SEED) -> dict[str, np.ndarray]:
    """Search inputs whose pre-loop norm hits each target (run at export time).

    The pre-loop activations are continuous in the input, so a target between
    the norms of a low point and a high point is met on the segment joining
    them, by bisection. The low point comes from gradient descent on the
    squared norm from a batch of random starts; the high point is a large
    random input. A target outside that range is left out, and the verifier
    then reports the coverage it misses.
    """
    from tf_parity_export.models.lazy_tf import import_tensorflow

    tf = import_tensorflow()
    probe = spec.make_probe(model)
    if probe is None:
        return {}
    rng = np.random.default_rng(seed)
    width = spec.inputs[0].shape[1:]

    pre_loop = tf.function(probe.pre_loop, autograph=False, reduce_retracing=True)  # ~50 calls below

    def norms(x: np.ndarray) -> np.ndarray:
        h = pre_loop(tf.constant(x, tf.float32))
        return np.linalg.norm(h.numpy().reshape(len(x), -1), axis=1)

    @tf.function(autograph=False)  # the whole descent is one graph: eager steps would take seconds
    def descend(x: Any, steps: int = 250, lr: float = 0.1) -> Any:
        """Adam on the squared norm (smooth at 0, unlike the norm), written out to run in a tf.while_loop."""

        def body(i: Any, x: Any, m: Any, v: Any) -> tuple[Any, ...]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.square(probe.pre_loop(x)))
            g = tape.gradient(loss, x)
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            t = tf.cast(i + 1, tf.float32)
            step = lr * (m / (1 - 0.9**t)) / (tf.sqrt(v / (1 - 0.999**t)) + 1e-7)
            return i + 1, x - step, m, v

        zeros = tf.zeros_like(x)
        return tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), x, zeros, zeros))[1]

    lows = descend(tf.constant(rng.normal(size=(64, *width)).astype(np.float32))).numpy()
    low = lows[np.argmin(norms(lows))]
    high = (rng.normal(size=width) * 1e4).astype(np.float32)
    lo_norm, hi_norm = norms(np.stack([low, high]))

    # Bisect every reachable target at once: one batched forward pass per step.
    targets = {n: t for n, t in {**COVERAGE_TARGETS, **BOUNDARY_TARGETS}.items() if lo_norm < t < hi_norm}
    want = np.array(list(targets.values()))
    a, b = np.zeros(len(want)), np.ones(len(want))
    for _ in range(50):
        mid = (a + b) / 2
        x = (low + mid[:, None] * (high - low)).astype(np.float32)
        below = norms(x) < want
        a, b = np.where(below, mid, a), np.where(below, b, mid)
    found = {name: x[i : i + 1] for i, name in enumerate(targets)}
    return found
