"""`verify-models`: a thin CLI over `verify.verify_models`."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from tf_parity_export.models import MODELS, UserError

from .runtimes import RUNTIMES

RUNTIME_NAMES = list(RUNTIMES)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into one line on stderr and exit 1; bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            for line in str(e).splitlines():
                click.echo(f"error: {line}", err=True)
            sys.exit(1)

    return wrapper


def pick_names(names: tuple[str, ...], all_: bool) -> list[str]:
    if all_ and names:
        raise click.UsageError("give model names or --all, not both")
    if not all_ and not names:
        raise click.UsageError(f"name a model or pass --all (models: {', '.join(sorted(MODELS))})")
    return list(MODELS) if all_ else list(dict.fromkeys(names))


def finish(report: Any, json_path: Path | None, artifacts: Path | None) -> None:
    """Write the JSON reports, then print the table and its verdict, then raise
    once if anything failed, so the printed verdict and the exit status agree.

    The copy in `artifacts` is a courtesy: if it cannot be written (a
    read-only folder) that is a warning. `--json PATH` was asked for: if it
    cannot be written, the verdict printed is FAILED and the exit status 1.
    """
    from tf_parity_export.models import ParityError

    from .layout import REPORT
    from .render import table, write_report

    if artifacts is not None and artifacts.is_dir():
        try:
            write_report(report, artifacts / REPORT)
        except UserError as e:
            click.echo(f"warning: {e}; the report was not saved there", err=True)
    unwritten = None
    if json_path:
        try:
            write_report(report, json_path)
        except UserError as e:
            unwritten = e
    text = table(report)
    if unwritten is not None:
        # The table's last line is its verdict: replace it, since the run did not do what was asked.
        text = text.rsplit("\n", 1)[0] + "\nFAILED: --json report not written"
    click.echo(text)
    if unwritten is not None:
        raise unwritten
    if not report:
        raise ParityError("\n".join(report.failures()))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, type=click.Choice(sorted(MODELS)))
@click.option("--all", "all_", is_flag=True, help="Verify every registered model.")
@click.option("--artifacts", default=Path("artifacts"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder written by export-models.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON here.")
@click.option("--inputs", type=click.Path(dir_okay=False, path_type=Path),
              help="An .npz (keys = input names) to verify on instead of the built-in cases.")
@click.option("--providers", help=f"Comma-separated runtimes to run (default: all): {','.join(RUNTIME_NAMES)}. "
              "A runtime named here that is unavailable fails the run.")
@click.option("--bench", is_flag=True, help="Instead of verifying, time every runtime at batch 1 and 64 "
              "and print the speed-up over TF eager (with --json, also write it there).")
@user_errors
def main(names: tuple[str, ...], all_: bool, artifacts: Path, json_path: Path | None,
         inputs: Path | None, providers: str | None, bench: bool) -> None:
    """Prove the exported artifacts compute what the Keras models compute.

    Runs the same inputs through TF eager (the reference), the tf.function,
    the reloaded SavedModel and ONNX runtimes, and compares every output.
    Exit 0: all agreed; 1: a mismatch or a bad artifact/input; 2: usage.
    """
    chosen = pick_names(names, all_)
    runtimes = None
    if providers is not None:
        runtimes = list(dict.fromkeys(p.strip() for p in providers.split(",") if p.strip()))
        if not runtimes:
            raise click.BadParameter(f"names no runtime, so nothing would be compared; choose from {RUNTIME_NAMES}",
                                     param_hint="--providers")
        unknown = [p for p in runtimes if p not in RUNTIME_NAMES]
        if unknown:
            raise click.BadParameter(f"unknown runtime(s) {unknown}; choose from {RUNTIME_NAMES}",
                                     param_hint="--providers")
    if inputs is not None and not inputs.is_file():
        raise UserError(f"{inputs}: {'not a regular file' if inputs.exists() else 'no such file'}")
    if bench:
        from .bench import benchmark, table
        from .layout import write_json

        result = benchmark(chosen, artifacts, runtimes)
        if json_path:
            write_json(json_path, result)  # before the table: a failed write is the verdict
        click.echo(table(result))
        if result["failures"]:
            raise UserError("\n".join(result["failures"]))
        return
    from .verifier import verify_models

    finish(verify_models(chosen, artifacts, runtimes, inputs), json_path, artifacts)
