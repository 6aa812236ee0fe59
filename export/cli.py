"""`export-models`: a thin CLI over `export.export_models`. TensorFlow loads only when work starts."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
from pathlib import Path

import click

from tf_parity_export.models import MODELS, UserError, load_plugins, seed_models
from tf_parity_export.verify.cli import (INSENSITIVE_HELP, PROVIDERS_HELP, REQUIRE_HELP, ModelName, broken_plugins, finish, parse_providers,
                                        parse_require, pick_names, run_and_exit, user_errors)


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
@click.argument("names", nargs=-1, type=ModelName(files="export"))
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
@click.option("--allow-insensitive", is_flag=True, help=INSENSITIVE_HELP)
@click.option("--name", "file_name", help="For a model file: the model's name (its folder under OUT); default: "
              "the file's name without its suffix.")
@click.option("--input-range", "input_ranges", multiple=True, metavar="NAME=LOW:HIGH",
              help="For a model file: the values an input's random cases take, high exclusive (integer inputs "
              "need one unless they feed an Embedding). Repeat for several inputs.")
@click.option("--atol", type=click.FloatRange(min=0), help="For a model file: absolute tolerance (default 1e-5).")
@click.option("--rtol", type=click.FloatRange(min=0), help="For a model file: relative tolerance (default 1e-5).")
@click.option("--custom-module", "custom_modules", multiple=True, metavar="MODULE",
              help="For a model file: a module to import first, which registers the model's custom layers "
              "(keras.saving.register_keras_serializable). Repeatable.")
@click.option("--providers", help=PROVIDERS_HELP + " (for the verification after the export)")
@click.option("--require", "require_", metavar="RUNTIME[:ATOL],...", help=REQUIRE_HELP)
@user_errors
def main(names: tuple[str, ...], all_: bool, out: Path, list_: bool, opset: int, no_verify: bool,
         json_path: Path | None, format_: str, check: bool, demo: Path | None, allow_uncovered: bool,
         allow_insensitive: bool, file_name: str | None, input_ranges: tuple[str, ...], atol: float | None,
         rtol: float | None, custom_modules: tuple[str, ...], providers: str | None, require_: str | None) -> None:
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
    if demo is not None:
        from .demo import check_demo_dest

        check_demo_dest(demo)  # before anything is exported
    runtimes = parse_providers(providers)
    require = parse_require(require_) if require_ else None
    if no_verify and (runtimes or require or allow_uncovered or allow_insensitive):
        raise click.UsageError("--providers, --require, --allow-uncovered and --allow-insensitive choose what the "
                               "verification checks; they do not go with --no-verify")
    require_exporter()
    # --all --check: the committed artifacts/ hold the seed models only, whatever plugins are installed
    chosen = seed_models() if check and all_ and not names else pick_names(names, all_)
    chosen = model_files(chosen, file_name, input_ranges, atol, rtol, custom_modules)
    if check:
        from tf_parity_export.models import ArtifactError

        from .check import check_models

        click.echo(f"checking {out}/ against a fresh export of {', '.join(_names(chosen))}", err=True)
        diffs = check_models(chosen, out, opset)
        if diffs:
            fix = ["export-models", *(["--all"] if all_ else names), "--out", str(out),
                   *(["--opset", str(opset)] if opset != DEFAULT_OPSET else [])]
            raise ArtifactError("\n".join([*diffs, f"{out}/ is out of date; run: {shlex.join(fix)}"]))
        click.echo(f"{out}/ is current ({len(chosen)} models: model files byte-identical to a fresh export, "
                   "the data TensorFlow computed within each model's tolerance)")
        return
    click.echo(f"exporting {', '.join(_names(chosen))} to {out}/ (opset {opset}, format {format_})", err=True)
    progress = lambda line: click.echo(line, err=True)  # noqa: E731
    broken = broken_plugins(all_)
    if format_ == "artifacts":
        from .api import export_models

        _, report = export_models(chosen, out, opset, verify=not no_verify, progress=progress,
                                  allow_uncovered=allow_uncovered, runtimes=runtimes, require=require,
                                  allow_insensitive=allow_insensitive)
        if demo is not None:
            from .demo import SERVE, write_demo

            page = write_demo(_names(chosen), out, demo)
            click.echo(f"demo page: {page} (serve it: {SERVE.format(dest=demo)}, then open the address it prints)",
                       err=True)
    else:
        from .api import export_layout

        report = export_layout(chosen, format_, out, opset, verify=not no_verify, progress=progress,
                               allow_uncovered=allow_uncovered, runtimes=runtimes, require=require,
                               allow_insensitive=allow_insensitive)
    if report is not None:
        finish(report, json_path, out if format_ == "artifacts" else None, broken)
    elif broken:
        raise UserError("\n".join(line for _, line in broken))


def model_files(chosen: list[str], name: str | None, ranges: tuple[str, ...], atol: float | None,
                rtol: float | None, modules: tuple[str, ...]) -> list:
    """Each model file or SavedModel folder among `chosen` as a ModelSpec read from it (registered names
    stay names); the file options without a file to apply to are a usage error."""
    from tf_parity_export.models.from_file import file_format, parse_ranges, spec_from_file

    files = [c for c in chosen if c not in MODELS and file_format(c) is not None]
    given = {"--name": name, "--input-range": ranges, "--atol": atol, "--rtol": rtol, "--custom-module": modules}
    used = [flag for flag, value in given.items() if value not in (None, ())]
    if used and not files:
        raise click.UsageError(f"{', '.join(used)} describe a model file; name one (a .keras or .h5 file, or a "
                               "SavedModel folder)")
    if name is not None and len(files) > 1:
        raise click.UsageError("--name names one model file; give one file with it")
    parsed = parse_ranges(ranges)
    return [spec_from_file(c, name, parsed, 1e-5 if atol is None else atol, 1e-5 if rtol is None else rtol, modules)
            if c in files else c for c in chosen]


def _names(chosen: list) -> list[str]:
    return [c if isinstance(c, str) else c.name for c in chosen]


def list_models() -> None:
    """Print every model with its summary and origin; broken plugins are error lines (exit 1)."""
    from tf_parity_export.models import plugins

    errors = load_plugins()
    width = max(map(len, MODELS), default=0)  # the summaries line up whatever the longest name
    for name, spec in MODELS.items():
        where = plugins.origin(name)
        source = f"  [plugin: {where.distribution}, entry point {where.entry_point}]" if where else ""
        click.echo(f"{name:{width}}  {spec.summary}{source}")
    if errors:
        raise UserError("\n".join(line for _, line in errors))


def entry() -> None:
    """`export-models`."""
    run_and_exit(main)
