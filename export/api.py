"""The library API behind `export-models`: export, index, verify, or check what is on disk."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Callable

from tf_parity_export.models import PluginError, UserError, get_spec
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
) -> tuple[list[ExportResult], Report | None]:
    """Export the named models to SavedModel and ONNX under `out`, then verify them.

    Two runs into the same `out` take turns (a lock file); each model folder
    is swapped in atomically when complete.

    Args:
        names: registry names, in order.
        out: the artifacts folder; each model gets `out/<name>/`.
        opset: ONNX opset for tf2onnx.
        verify: run the verifier on what was written.
        progress: called with one line per finished model.
        allow_uncovered: control-flow paths no input reaches are reported
            without failing the verification.

    A plugin model whose builder fails (or whose outputs do not match its
    spec) does not stop the others: it is a failed row of the report, or,
    without verification, a PluginError raised after the others are written.

    Returns:
        The export results and the verification `Report` (None if not verified).
    """
    specs = [get_spec(n) for n in names]
    out = Path(out)
    check_opset(opset)  # before anything is written
    deadline.seconds()  # so is a bad $TF_PARITY_DEADLINE
    env = environment()
    results = []
    failed: dict[str, str] = {}
    with exclusive(out), RunScope() as scope:
        if verify:  # the browser (ort_web) starts in the background while the models export
            warm_up(scope, list(RUNTIMES))
        for i, spec in enumerate(specs, 1):
            try:
                r = export_model(spec, out, opset, env)
            except PluginError as e:
                failed[spec.name] = str(e)
                progress(f"[{i}/{len(specs)}] {spec.name}: not exported: {e}")
                continue
            results.append(r)
            size = ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in r.sizes.items())
            progress(f"[{i}/{len(specs)}] {spec.name}: exported in {r.seconds:.1f} s ({size})")
            for path in r.uncovered:
                progress(f"      {spec.name}: coverage search found no input for '{path}'")
        if results:
            write_index(out, results, opset, env)
        if not verify:
            if failed:
                raise PluginError("\n".join(failed.values()))
            return results, None
        models = {r.name: r.model for r in results}
        report = verify_models([r.name for r in results], out, models=models, allow_uncovered=allow_uncovered,
                               scope=scope)
        return results, _with_failed(report, failed)


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
) -> Report | None:
    """Export and verify in a temporary folder, then lay the models out for a server.

    Args:
        layout_name: a key of `export.serving.LAYOUTS` ("triton", "tfserving").
        out: the model repository to write.

    Returns:
        The verification report of the artifacts the layout was built from.
    """
    from .serving import LAYOUTS

    write = LAYOUTS[layout_name]
    out = Path(out)
    with exclusive(out):  # two runs into one repository take turns; a killed run's temporaries are swept
        # The artifacts are built inside the repository (not in /tmp, which a killed run would litter),
        # in a hidden, non-numeric folder of the first model's entry: no server takes it for a model or a version.
        entry = out / names[0]
        made = not entry.exists()
        tmp = claim(entry, "artifacts")
        try:
            entry.mkdir(parents=True, exist_ok=True)
            _, report = export_models(names, tmp, opset, verify, progress, allow_uncovered)
            if report is None or report:
                for name in names:
                    write(get_spec(name), tmp / name, out)
                progress(f"wrote a {layout_name} model repository for {len(names)} models to {out}/")
        except OSError as e:
            raise UserError(f"{e.filename or out}: cannot write the model repository here ({e.strerror})") from None
        finally:
            remove(tmp)
            if made:
                with contextlib.suppress(OSError):
                    entry.rmdir()  # only if still empty: nothing was written for it
        return report


def check_models(names: list[str], out: Path = Path("artifacts"), opset: int = DEFAULT_OPSET) -> list[str]:
    """Export into a temporary folder and compare with `out`, like a formatter's --check.

    Returns:
        One line per difference (empty when `out` is current): a file whose
        bytes differ, one this code writes that is missing from `out`, one in
        `out` this code does not write, or a stale manifest.json entry.
    """
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="export-check-") as tmp:
        fresh = Path(tmp)
        export_models(names, fresh, opset, verify=False)
        diffs = []
        for name in names:
            want = _files(fresh / name)
            have = _files(out / name)
            for rel in sorted(want.keys() | have.keys()):
                shown = f"{out / name / rel}"
                if rel not in have:
                    diffs.append(f"{shown}: missing (this code writes it)")
                elif rel not in want:
                    diffs.append(f"{shown}: not written by this code")
                elif want[rel] != have[rel]:
                    diffs.append(f"{shown}: differs from a fresh export")
        want_index = json.loads((fresh / layout.INDEX).read_text())
        try:
            have_index = json.loads((out / layout.INDEX).read_text())
        except (OSError, ValueError):
            have_index = {}
        stale = [n for n in names if have_index.get("models", {}).get(n) != want_index["models"][n]]
        if stale or have_index.get("versions") != want_index["versions"]:
            diffs.append(f"{out / layout.INDEX}: differs from a fresh export ({', '.join(stale) or 'versions'})")
        return diffs


def _files(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {**layout.hash_tree(folder), **({layout.CARD: layout.sha256(folder / layout.CARD)}
                                           if (folder / layout.CARD).is_file() else {})}
