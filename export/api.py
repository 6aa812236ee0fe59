"""The library API behind `export-models`: export, index, verify, or check what is on disk."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

from tf_parity_export.models import UserError
from tf_parity_export.models.errors import ExportError
from tf_parity_export.models.text import shown
from tf_parity_export.verify import Report, deadline, layout, verify_models
from tf_parity_export.verify.verifier import environment
from tf_parity_export.verify.runtimes import RUNTIMES, RunScope, warm_up

from .atomic import claim, exclusive, remove
from .onnx_model import DEFAULT_OPSET, check_opset
from .writer import ExportResult, export_model, write_index


def export_models(
    names: list[str],
    out: Path = Path("artifacts"),
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    progress: Callable[[str], None] = lambda line: None,
    allow_uncovered: bool = False,
    runtimes: list[str] | None = None,
    require: dict[str, float | None] | None = None,
    allow_insensitive: bool = False,
) -> tuple[list[ExportResult], Report | None]:
    """Export the named models to SavedModel, ONNX and LiteRT under `out`, then verify them.

    Two runs into the same `out` take turns (a lock file); each model folder
    is swapped in atomically when complete.

    Args:
        names: registry names or ModelSpecs (a model file's, `models.from_file`), in order.
        out: the artifacts folder; each model gets `out/<name>/`.
        opset: ONNX opset for tf2onnx.
        verify: run the verifier on what was written.
        progress: called with one line per finished model.
        allow_uncovered: control-flow paths no input reaches are reported
            without failing the verification.
        runtimes, require, allow_insensitive: as `verify_models`' (None: every runtime, none required).

    One model's failure is that model's: a builder that raises, a converter
    that fails or a write that is refused becomes one line naming the model,
    the step and the reason, and every other model is still exported and
    verified. The failed ones are failed rows of the report, or, without
    verification, one ExportError listing them raised after the others are written.

    Returns:
        The export results and the verification `Report` (None if not verified).
    """
    specs = [layout.resolve_spec(n) for n in names]
    out = Path(out)
    check_opset(opset)  # before anything is written
    deadline.seconds()  # so is a bad $TF_PARITY_DEADLINE
    env = environment()
    results = []
    failed: dict[str, str] = {}
    with exclusive(out), RunScope() as scope:
        if verify:  # the browser (ort_web) starts in the background while the models export
            warm_up(scope, list(RUNTIMES) if runtimes is None else [*runtimes, *(require or {})])
        for i, spec in enumerate(specs, 1):
            try:
                r = export_model(spec, out, opset, env)
            except UserError as e:  # ExportError, PluginError, a refused write: this model's failure
                failed[spec.name] = str(e)
                progress(f"[{i}/{len(specs)}] {spec.name}: not exported: {e}")
                continue
            results.append(r)
            size = ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in r.sizes.items())
            progress(f"[{i}/{len(specs)}] {spec.name}: exported in {r.seconds:.1f} s ({size})")
            for note in r.notes:
                progress(f"      {spec.name}: {note}")
            litert = r.formats.get("litert", {})
            if litert.get("status") == "unsupported":
                progress(f"      {spec.name}: litert: unsupported: {litert['reason']}")
            elif litert.get("static_batch"):
                progress(f"      {spec.name}: litert: converted with a fixed batch of one row "
                         f"(the dynamic batch failed: {litert['reason']})")
            for path in r.uncovered:
                progress(f"      {spec.name}: coverage search found no input for '{path}'")
        if results:
            write_index(out, results, opset, env)
        if not verify:
            if failed:  # one line per model, and a count when there were several
                raise ExportError("\n".join([*failed.values(), *([_summary(failed, len(specs))] if len(specs) > 1 else [])]))
            return results, None
        models = {r.name: r.model for r in results}
        exported = {r.name for r in results}
        report = verify_models([s for s in specs if s.name in exported], out, runtimes=runtimes, models=models,
                               require=require, allow_uncovered=allow_uncovered, scope=scope,
                               allow_insensitive=allow_insensitive) if results else \
            Report([], set(require or {}) | set(runtimes or []), 0.0, env)
        return results, _with_failed(report, failed)


def _summary(failed: dict[str, str], total: int) -> str:
    return f"{len(failed)} of {total} models not exported: {', '.join(failed)}"


def _with_failed(report: Report, failed: dict[str, str]) -> Report:
    """The report with one failed row per model that could not be exported."""
    from tf_parity_export.verify.verifier import ModelReport

    report.models += [ModelReport(name, error=line) for name, line in failed.items()]
    return report


def export_layout(
    names: list[str],
    layout_name: str,
    out: Path,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    progress: Callable[[str], None] = lambda line: None,
    allow_uncovered: bool = False,
    runtimes: list[str] | None = None,
    require: dict[str, float | None] | None = None,
    allow_insensitive: bool = False,
) -> Report | None:
    """Export and verify in a temporary folder, then lay the models out for a server.

    Args:
        layout_name: a key of `export.serving.LAYOUTS` ("triton", "tfserving").
        out: the model repository to write.

    Returns:
        The verification report of the artifacts the layout was built from.
    """
    from .serving import LAYOUTS, NAME_CHECKS

    write = LAYOUTS[layout_name]
    NAME_CHECKS[layout_name](names)  # before anything is exported
    out = Path(out)
    with exclusive(out):  # two runs into one repository take turns; a killed run's temporaries are swept
        # The artifacts are built inside the repository (not in /tmp, which a killed run would litter),
        # in a hidden, non-numeric folder of the first model's entry: no server takes it for a model or a version.
        specs = [layout.resolve_spec(n) for n in names]
        entry = out / specs[0].name
        made = not entry.exists()
        tmp = claim(entry, "artifacts")
        try:
            entry.mkdir(parents=True, exist_ok=True)
            _, report = export_models(names, tmp, opset, verify, progress, allow_uncovered, runtimes, require,
                                      allow_insensitive)
            if report is None or report:
                for spec in specs:
                    write(spec, tmp / spec.name, out)
                progress(f"wrote a {layout_name} model repository for {len(names)} models to {shown(out)}/")
        except OSError as e:
            raise UserError(f"{shown(e.filename or out)}: cannot write the model repository here ({e.strerror})") from None
        finally:
            remove(tmp)
            if made:
                with contextlib.suppress(OSError):
                    entry.rmdir()  # only if still empty: nothing was written for it
        return report
