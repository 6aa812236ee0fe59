"""`export-models`: a thin CLI over `export.export_models`. TensorFlow loads only when work starts."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
from pathlib import Path

import click

from tf_parity_export.models import MODELS, UserError, load_plugins, seed_models
from tf_parity_export.models.text import shown, terminal_safe
from tf_parity_export.verify.cli import ModelName, broken_plugins, finish, pick_names, run_and_exit, user_errors


DEFAULT_OPSET = 17  # export/onnx_model.py's; repeated here so that --help does not import tf2onnx
EXPORTER = ("tensorflow", "keras", "tf2onnx", "h5py")  # what exporting needs and verifying does not


def require_exporter() -> None:
    """One line naming what to install when the exporting packages are missing
    (verify-models replays the stored test data without them)."""
    missing = [m for m in EXPORTER if importlib.util.find_spec(m) is None]
    if not missing:
        return
    try:  # the ranges pyproject.toml declares, as installed
        declared = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower(): r.split(";")[0].strip()
                    for r in importlib.metadata.requires("tf-parity-export") or []}
    except importlib.metadata.PackageNotFoundError:
        declared = {}
    install = " ".join(shlex.quote(declared.get(m, m)) for m in missing)
    raise UserError(f"export-models needs TensorFlow to export, and {', '.join(missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not installed here; install with: pip install {install} "
                    "(verify-models works without them)")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, type=ModelName())
@click.option("--all", "all_", is_flag=True, help="Export every registered model: the seed models and every "
              "installed plugin's (with --check: the seed models only).")
@click.option("--out", default=Path("artifacts"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Artifacts folder.")
@click.option("--list", "list_", is_flag=True, help="List the registered models (and where plugins come from) and exit.")
@click.option("--opset", default=DEFAULT_OPSET, show_default=True, type=int, help="ONNX opset (13..18).")
@click.option("--no-verify", is_flag=True, help="Skip the parity check after exporting.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the verification report as JSON here (and as a page beside it, .html).")
@click.option("--format", "format_", type=click.Choice(["artifacts", "triton", "tfserving"]), default="artifacts",
              show_default=True, help="artifacts: the verified artifact folder; triton / tfserving: a model "
              "repository for that server, built from verified artifacts.")
@click.option("--check", is_flag=True,
              help="Export to a temporary folder and compare with OUT; exit 1 listing what differs.")
@click.option("--demo", "demo", type=click.Path(file_okay=False, path_type=Path),
              help="Also write a static demo page into this folder: the models run in the visitor's browser "
              "(onnxruntime-web) next to TF's stored outputs. Serve it with: python -m http.server -d DEMO")
@click.option("--allow-uncovered", is_flag=True, help="Report control-flow paths no input was found for "
              "(an If branch, a Loop count 0/1/many) without failing on them.")
@user_errors
def main(names: tuple[str, ...], all_: bool, out: Path, list_: bool, opset: int, no_verify: bool,
         json_path: Path | None, format_: str, check: bool, demo: Path | None, allow_uncovered: bool) -> None:
    """Export models to SavedModel and ONNX, then prove the artifacts agree with TF eager.

    Writes OUT/<model>/ (saved_model/, model.onnx, model.weights.h5, card.json)
    and OUT/manifest.json, then runs the verifier (see verify-models) on them.
    """
    if list_:
        list_models()
        return
    if check and format_ != "artifacts":
        raise click.UsageError("--check compares an artifacts folder; it does not take --format")
    if demo is not None and (check or format_ != "artifacts"):
        raise click.UsageError("--demo is written from an artifacts folder; it does not take --check or --format")
    require_exporter()
    # --all --check: the committed artifacts/ hold the seed models only, whatever plugins are installed
    chosen = seed_models() if check and all_ and not names else pick_names(names, all_)
    if demo is not None:
        from .demo import check_demo_dest

        check_demo_dest(demo, out, chosen)  # before anything is exported
    if json_path and not check:
        from tf_parity_export.verify.render import check_report_path

        check_report_path(json_path)  # a symlink or FIFO there is refused before the export, not after
    if check:
        from tf_parity_export.models import ArtifactError

        from .api import check_models

        click.echo(f"checking {shown(out)}/ against a fresh export of {', '.join(chosen)}", err=True)
        diffs = check_models(chosen, out, opset)
        if diffs:
            fix = ["export-models", *(["--all"] if all_ else chosen), "--out", str(out),
                   *(["--opset", str(opset)] if opset != DEFAULT_OPSET else [])]
            raise ArtifactError("\n".join([*diffs, f"{shown(out)}/ is out of date; run: {shlex.join(fix)}"]))
        click.echo(f"{shown(out)}/ is current ({len(chosen)} models byte-identical to a fresh export)")
        return
    click.echo(f"exporting {', '.join(chosen)} to {shown(out)}/ (opset {opset}, format {format_})", err=True)
    progress = lambda line: click.echo(terminal_safe(line), err=True)  # noqa: E731
    broken = broken_plugins(all_)
    unwritten: list[tuple[str, UserError]] = []
    if format_ == "artifacts":
        from .api import export_models

        _, report = export_models(chosen, out, opset, verify=not no_verify, progress=progress,
                                  allow_uncovered=allow_uncovered)
        if demo is not None:
            from .demo import SERVE, write_demo

            try:
                page = write_demo(chosen, out, demo)
            except UserError as e:  # the export's verdict is still printed, as FAILED (see finish)
                unwritten.append(("--demo page", e))
            else:
                click.echo(terminal_safe(f"demo page: {page} (serve it: {SERVE.format(dest=shlex.quote(str(demo)))}, "
                                         "then open the address it prints)"), err=True)
    else:
        from .api import export_layout

        report = export_layout(chosen, format_, out, opset, verify=not no_verify, progress=progress,
                               allow_uncovered=allow_uncovered)
    if report is not None:
        finish(report, json_path, out if format_ == "artifacts" else None, broken, unwritten=unwritten)
    elif broken or unwritten:
        raise UserError("\n".join([*(line for _, line in broken), *(str(e) for _, e in unwritten)]))


def list_models() -> None:
    """Print every model with its summary and origin; broken plugins are error lines (exit 1)."""
    from tf_parity_export.models import plugins

    errors = load_plugins()
    for name, spec in MODELS.items():
        where = plugins.origin(name)
        source = f"  [plugin: {where.distribution}, entry point {where.entry_point}]" if where else ""
        # a plugin's summary is its text, not ours: an escape sequence or a newline in it is shown escaped
        click.echo(f"{name:16} {terminal_safe(spec.summary, keep_newlines=False)}{source}")
    if errors:
        raise UserError("\n".join(line for _, line in errors))


def entry() -> None:
    """`export-models`."""
    run_and_exit(main)
