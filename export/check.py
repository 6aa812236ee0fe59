"""`export-models --check`: is an artifacts folder what this code exports?

Like a formatter's --check: export into a temporary folder and compare. The
model files (weights, SavedModel, ONNX, LiteRT) must be byte-identical. The
data TensorFlow computes for them (the test data sets' outputs, and the
coverage inputs the search finds by running the model) depend in their last
bits on the CPU's kernels (oneDNN picks AVX2 or AVX-512 code: the committed
outputs of `mlp` differ in the last bit between two 2-core machines of this
project), so those are compared within the model's tolerance, and card.json
and manifest.json up to the hashes of that data.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tf_parity_export.models import ModelSpec
from tf_parity_export.verify import layout
from tf_parity_export.verify.compare import compare_output

from .api import export_models
from .onnx_model import DEFAULT_OPSET

# What TensorFlow computes at export: TF eager's outputs, and the inputs the coverage search found.
COMPUTED = re.compile(r"^(test_data_set_\d+/(input|output)_\d+\.pb|cases\.npz)$")


def check_models(names: list[str], out: Path = Path("artifacts"), opset: int = DEFAULT_OPSET) -> list[str]:
    """Export into a temporary folder and compare with `out`.

    Returns:
        One line per difference (empty when `out` is current): a model file
        whose bytes differ, computed data beyond the model's tolerance, one
        this code writes that is missing from `out`, one in `out` this code
        does not write, or a stale manifest.json entry.
    """
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="export-check-") as tmp:
        fresh = Path(tmp)
        export_models(names, fresh, opset, verify=False)
        diffs = []
        cards_alike = {}
        for spec in [layout.resolve_spec(n) for n in names]:
            name = spec.name
            want, have = _files(fresh / name), _files(out / name)
            cards_alike[name] = True
            for rel in sorted(want.keys() | have.keys()):
                shown = f"{out / name / rel}"
                if rel not in have:
                    diffs.append(f"{shown}: missing (this code writes it)")
                elif rel not in want:
                    diffs.append(f"{shown}: not written by this code")
                elif want[rel] != have[rel] and not _alike(rel, fresh / name, out / name, spec):
                    diffs.append(f"{shown}: differs from a fresh export")
                    cards_alike[name] &= rel != layout.CARD
        want_index = json.loads((fresh / layout.INDEX).read_text())
        try:
            have_index = json.loads((out / layout.INDEX).read_text())
        except (OSError, ValueError):
            have_index = {}
        stale = [n for n in cards_alike if not _same_entry(have_index.get("models", {}).get(n), want_index["models"][n],
                                                     cards_alike[n])]
        if stale or have_index.get("versions") != want_index["versions"]:
            diffs.append(f"{out / layout.INDEX}: differs from a fresh export ({', '.join(stale) or 'versions'})")
        return diffs


def _files(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {**layout.hash_tree(folder), **({layout.CARD: layout.sha256(folder / layout.CARD)}
                                           if (folder / layout.CARD).is_file() else {})}


def _alike(rel: str, fresh: Path, have: Path, spec: ModelSpec) -> bool:
    """Files with different bytes that still say the same: computed data within tolerance,
    or a card that differs only there."""
    try:
        if rel == layout.CARD:
            return _same_card(json.loads((fresh / rel).read_text()), json.loads((have / rel).read_text()))
        if rel.endswith(".pb") and COMPUTED.match(rel):
            return _same_arrays(_read_pb(fresh / rel), _read_pb(have / rel), spec)
        if rel == layout.CASES and COMPUTED.match(rel):
            return _same_arrays(dict(np.load(fresh / rel)), dict(np.load(have / rel)), spec)
    except (OSError, ValueError, KeyError):
        return False
    return False


def _read_pb(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto.FromString(path.read_bytes())
    return {tensor.name: numpy_helper.to_array(tensor)}


def _same_arrays(want: dict[str, np.ndarray], have: dict[str, np.ndarray], spec: ModelSpec) -> bool:
    """The same names, dtypes and shapes, and values within the model's tolerance (as the verifier compares)."""
    if sorted(want) != sorted(have):
        return False
    return all(compare_output(k, want[k], have[k], spec.atol, spec.rtol).passed for k in want)


def _same_card(want: dict[str, Any], have: dict[str, Any]) -> bool:
    """Equal but for the hashes of computed data, and numbers in the recorded control-flow paths
    (the norm entering a loop, the margin to a threshold) that agree to 1e-4."""
    def strip(card: dict[str, Any]) -> dict[str, Any]:
        files = {k: v for k, v in card.get("files", {}).items() if not COMPUTED.match(k)}
        return {**card, "files": files}

    return _close(strip(want), strip(have))


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9)
    return type(a) is type(b) and a == b


def _same_entry(have: Any, want: dict[str, Any], card_alike: bool) -> bool:
    """A manifest entry equal to the fresh one, but for the card's hash where the cards are alike."""
    if not isinstance(have, dict):
        return False
    ignore = {"card_sha256"} if card_alike else set()
    return {k: v for k, v in have.items() if k not in ignore} == {k: v for k, v in want.items() if k not in ignore}
