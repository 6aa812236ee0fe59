"""The library API behind `export-models`: export, index, then verify."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from models import get_spec
from verify import Report, verify_models
from verify.verifier import environment

from .onnx_model import DEFAULT_OPSET
from .writer import ExportResult, export_model, write_index


def export_models(
    names: list[str],
    out: Path = Path("artifacts"),
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    progress: Callable[[str], None] = lambda line: None,
) -> tuple[list[ExportResult], Report | None]:
    """Export the named models to SavedModel and ONNX under `out`, then verify them.

    Args:
        names: registry names, in order.
        out: the artifacts folder; each model gets `out/<name>/`.
        opset: ONNX opset for tf2onnx.
        verify: run the verifier on what was written.
        progress: called with one line per finished model.

    Returns:
        The export results and the verification `Report` (None if not verified).
    """
    specs = [get_spec(n) for n in names]
    env = environment()
    results = []
    for i, spec in enumerate(specs, 1):
        r = export_model(spec, Path(out), opset, env)
        results.append(r)
        size = ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in r.sizes.items())
        progress(f"[{i}/{len(specs)}] {spec.name}: exported in {r.seconds:.1f} s ({size})")
    write_index(Path(out), results, opset, env)
    return results, (verify_models(names, Path(out)) if verify else None)
