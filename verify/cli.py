"""`verify-models`: a thin CLI over `verify.verify_models`."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from tf_parity_export.models import MODELS, UserError, all_models, get_spec, load_plugins
from tf_parity_export.models.text import shown, terminal_safe

from .runtimes import RUNTIMES

RUNTIME_NAMES = list(RUNTIMES)

PROVIDERS_HELP = (f"Comma-separated runtimes to run (default: all): {','.join(RUNTIME_NAMES)}. "
                  "A runtime named here that is unavailable or unsupported fails the run.")
INSENSITIVE_HELP = ("Report outputs that never move over the cases (every value within the tolerance of one "
                    "constant: parity on them proves nothing) without failing on them.")
REQUIRE_HELP = ("Runtimes that must run and agree even in a reduced-precision mode (e.g. openvino_default, "
                "ort_cuda_tf32), held to the model's tolerance or to ATOL; a deployment runtime named here "
                "that cannot take a model fails the run. Without it a reduced mode is measured, not failed.")


def run_and_exit(command: click.Command) -> None:
    """The console scripts' entry: run `command`, then end the process at once.

    The command runs on a worker thread (verify/interrupt.py), so that
    Ctrl-C and SIGTERM are taken at once whatever it is blocked in: the
    browser, Node and every process the run started are stopped, and the
    process exits with 130 (SIGINT) or 143 (SIGTERM).

    Once a run is over, Python's own finalization of TensorFlow, onnxruntime
    and OpenVINO (module teardown, C++ destructors) takes 0.8 s on this
    machine and does nothing a user needs. So after the command has finished
    (its files are written and closed, the browser is stopped) the exit
    handlers run and the streams are flushed here, and the process ends with
    `os._exit` and the command's status. A bug still ends with its traceback:
    only the command's own exit is taken this way.
    """
    import atexit
    import os

    from . import interrupt

    def status() -> int:
        try:
            command()
        except SystemExit as e:  # click always ends this way, with the status
            code = e.code
        else:
            code = 0
        if isinstance(code, str):
            click.echo(code, err=True)
            code = 1
        return code or 0

    code = interrupt.run(status)
    atexit._run_exitfuncs()  # what normal exit would run: the Node server's close, logging's flush
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    os._exit(code or 0)


def entry() -> None:
    """`verify-models`."""
    run_and_exit(main)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into one line on stderr and exit 1; bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            # One line per problem; a name inside a message is `shown` (a newline in it cannot
            # split the line), and control characters left in any message are escaped here.
            for line in str(e).splitlines():
                click.echo(f"error: {terminal_safe(line)}", err=True)
            sys.exit(1)

    return wrapper


class ModelName(click.ParamType):
    """A registered model name. Plugins load only when a name is not a seed
    model, so `--help` (and `export-models mlp`) never import them.

    `files`: also a model file or SavedModel folder (export-models), or the name
    of a model exported from one, which the artifacts folder resolves later
    (verify-models: `resolve_names`)."""

    name = "model"

    def __init__(self, files: str = "") -> None:
        self.files = files  # "export": paths too; "verify": names checked against --artifacts later

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "MODEL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from tf_parity_export.models import plugins
        from tf_parity_export.models.from_file import file_format

        if value not in MODELS:
            load_plugins()
        if value in plugins.AMBIGUOUS:
            return value  # registered by two plugins: `pick_names` refuses it in one line naming both
        later = self.files == "verify" and "/" not in value
        if value not in MODELS and not later and not (self.files == "export" and file_format(value) is not None):
            known = ", ".join(repr(n) for n in sorted(MODELS))
            self.fail(f"{value!r} is not one of {known} (export-models --list shows them; a model file is a "
                      "path to a .keras or .h5 file or a SavedModel folder)", param, ctx)
        return value


def pick_names(names: tuple[str, ...], all_: bool) -> list[str]:
    """The models asked for; `--all` is every registered model, plugins' included."""
    if all_ and names:
        raise click.UsageError("give model names or --all, not both")
    if not all_ and not names:
        raise click.UsageError(f"name a model or pass --all (models: {', '.join(sorted(MODELS))}; "
                               "export-models --list shows plugins too)")
    if all_:
        return all_models()
    from tf_parity_export.models import plugins

    chosen = list(dict.fromkeys(names))
    for name in chosen:
        if name in plugins.AMBIGUOUS:
            get_spec(name)  # a name two plugins register is one line naming both (PluginError)
    return chosen


def broken_plugins(all_: bool) -> list[tuple[str, str]]:
    """(entry point, line) for each plugin that failed to load, when --all asked for every model."""
    from tf_parity_export.models import plugins

    return list(plugins.ERRORS) if all_ else []


def finish(report: Any, json_path: Path | None, artifacts: Path | None, broken: list[tuple[str, str]] = (),
           tolerances: bool = False, unwritten: list[tuple[str, UserError]] = ()) -> None:
    """Write the reports (JSON and, beside it, the same data as a page), then
    print the table and its verdict, then raise once if anything failed, so
    the printed verdict and the exit status agree. A broken plugin (`broken`)
    is a failed row: --all asked for it.

    The copy in `artifacts` is a courtesy: if it cannot be written (a
    read-only folder) that is a warning. `--json PATH` was asked for: if it
    cannot be written, the verdict printed is FAILED and the exit status 1;
    so for any other file the user asked for that could not be written
    (`unwritten`: what it is, e.g. "--demo page", and the error).
    """
    from tf_parity_export.models import ParityError

    from .layout import REPORT
    from .render import table, write_report
    from .verifier import ModelReport

    report.models += [ModelReport(name, error=line) for name, line in broken]
    unwritten = list(unwritten)
    if artifacts is not None and artifacts.is_dir():
        try:
            write_report(report, artifacts / REPORT)
        except UserError as e:
            click.echo(terminal_safe(f"warning: {e}; the report was not saved there"), err=True)
    if json_path:
        try:
            write_report(report, json_path)
        except UserError as e:
            unwritten.append(("--json report", e))
    text = table(report, tolerances)
    if unwritten:
        # The table's last line is its verdict: replace it, since the run did not do what was asked.
        text = text.rsplit("\n", 1)[0] + f"\nFAILED: {', '.join(what for what, _ in unwritten)} not written"
    click.echo(terminal_safe(text))
    if unwritten:
        raise UserError("\n".join([*report.failures(), *(str(e) for _, e in unwritten)]))
    if not report:
        raise ParityError("\n".join(report.failures()))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, type=ModelName(files="verify"))
@click.option("--all", "all_", is_flag=True, help="Verify every registered model (plugins' included) and every "
              "model in the artifacts folder exported from a model file.")
@click.option("--artifacts", default=Path("artifacts"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder written by export-models.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON here (and as a page beside it, .html).")
@click.option("--inputs", type=click.Path(dir_okay=False, path_type=Path),
              help="An .npz (keys = input names) to verify on instead of the built-in cases.")
@click.option("--providers", help=PROVIDERS_HELP)
@click.option("--require", "require_", metavar="RUNTIME[:ATOL],...", help=REQUIRE_HELP)
@click.option("--tolerances", is_flag=True,
              help="Also print each runtime's tightest passing atol and rtol (they are always in the JSON).")
@click.option("--install-node", is_flag=True, help="Install the Node project of the ort_node and ort_web runtimes "
              "(onnxruntime-node and onnxruntime-web, pinned) into a per-user folder with npm, then exit: what a "
              "non-editable install needs for them. Needs Node.js 18+ and npm.")
@click.option("--bench", is_flag=True, help="Instead of verifying, time every runtime at batch 1 and 64 "
              "and print the speed-up over TF eager (with --json, also write it there).")
@click.option("--allow-insensitive", is_flag=True, help=INSENSITIVE_HELP)
@click.option("--allow-uncovered", is_flag=True, help="Report control-flow paths no case reaches "
              "(an If branch, a Loop count 0/1/many) without failing on them.")
@click.option("--localize", "localize_", is_flag=False, flag_value="", default=None, metavar="[RUNTIME,...]",
              help="Also localize these runtimes (every one that ran, when none is named) even if they agree: "
              "compare every tensor with TensorFlow's, name the first that diverges, write a minimal repro "
              "under ARTIFACTS/repro/. Runtimes outside the tolerance are always localized.")
@user_errors
def main(names: tuple[str, ...], all_: bool, artifacts: Path, json_path: Path | None,
         inputs: Path | None, providers: str | None, require_: str | None, tolerances: bool, bench: bool,
         install_node: bool, allow_insensitive: bool, allow_uncovered: bool, localize_: str | None) -> None:
    """Prove the exported artifacts compute what the Keras models compute.

    Runs the same inputs through TF eager (the reference), the tf.function,
    the reloaded SavedModel and ONNX runtimes, and compares every output.
    Exit 0: all agreed; 1: a mismatch or a bad artifact/input; 2: usage.
    """
    if install_node:
        from .runtimes.node_project import install

        if names or all_:
            raise click.UsageError("--install-node installs the Node project and exits; name no model with it")
        click.echo(f"onnxruntime-node and onnxruntime-web installed in {install(lambda line: click.echo(line, err=True))}")
        return
    chosen = resolve_names(pick_names(names, all_), artifacts, all_)
    runtimes = parse_providers(providers)
    require = parse_require(require_) if require_ else None
    localize = None if localize_ is None else list(dict.fromkeys(p.strip() for p in localize_.split(",") if p.strip()))
    unknown = [p for p in localize or [] if p not in RUNTIME_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown runtime(s) {unknown}; choose from {RUNTIME_NAMES}", param_hint="--localize")
    if bench and localize is not None:
        raise click.UsageError("--localize compares a verification's tensors; it does not apply to --bench")
    if bench:
        # --bench times the runtimes on its own batches; what only verification uses is refused, not ignored
        ignored = [flag for flag, given in (("--inputs", inputs is not None), ("--require", require_ is not None),
                                            ("--tolerances", tolerances), ("--allow-uncovered", allow_uncovered),
                                            ("--allow-insensitive", allow_insensitive))
                   if given]
        if ignored:
            from .bench import BATCHES

            raise click.UsageError(f"--bench times the runtimes at batch {' and '.join(map(str, BATCHES))} "
                                   f"on random inputs and compares nothing; it does not take {', '.join(ignored)}")
    if inputs is not None and not inputs.is_file():
        raise UserError(f"{shown(inputs)}: {'not a regular file' if inputs.exists() else 'no such file'}")
    if json_path:  # a symlink or FIFO there is refused before the run, not after (--bench writes no page)
        from .layout import check_target
        from .render import check_report_path

        if bench:
            check_target(json_path)
        else:
            check_report_path(json_path)
    if bench:
        from .bench import benchmark, table
        from .layout import write_json

        result = benchmark(chosen, artifacts, runtimes)
        if json_path:
            write_json(json_path, result)  # before the table: a failed write is the verdict
        click.echo(terminal_safe(table(result)))
        if result["failures"]:
            raise UserError("\n".join(result["failures"]))
        return
    from .verifier import verify_models

    finish(verify_models(chosen, artifacts, runtimes, inputs, require=require, allow_uncovered=allow_uncovered,
                         allow_insensitive=allow_insensitive, localize=localize),
           json_path, artifacts, broken_plugins(all_), tolerances)


def resolve_names(names: list[str], artifacts: Path, all_: bool) -> list[str]:
    """The names to verify: registered ones, and models in `artifacts` exported from a model file
    (with --all, every one of those too); any other name is a usage error listing the known ones."""
    from .layout import file_models

    from_files = file_models(artifacts)
    unknown = [n for n in names if n not in MODELS and n not in from_files]
    if unknown:
        known = ", ".join(repr(n) for n in sorted({*MODELS, *from_files}))
        raise click.BadParameter(f"{unknown[0]!r} is not one of {known} (export-models --list shows the registered "
                                 f"ones; models exported from a file are the folders in {artifacts}/)",
                                 param_hint="'NAMES...'")
    return [*names, *(n for n in from_files if n not in names)] if all_ else names


def parse_providers(text: str | None) -> list[str] | None:
    """"ort_cpu,litert" -> ["ort_cpu", "litert"]; None (the option not given) means every runtime."""
    if text is None:
        return None
    runtimes = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not runtimes:
        raise click.BadParameter(f"names no runtime, so nothing would be compared; choose from {RUNTIME_NAMES}",
                                 param_hint="--providers")
    unknown = [p for p in runtimes if p not in RUNTIME_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown runtime(s) {unknown}; choose from {RUNTIME_NAMES}", param_hint="--providers")
    return runtimes


def parse_require(text: str) -> dict[str, float | None]:
    """"openvino_default:0.2,ort_cuda_tf32" -> {"openvino_default": 0.2, "ort_cuda_tf32": None}."""
    require: dict[str, float | None] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, atol = item.partition(":")
        if name not in RUNTIME_NAMES:
            raise click.BadParameter(f"unknown runtime {name!r}; choose from {RUNTIME_NAMES}", param_hint="--require")
        if name in require:
            raise click.BadParameter(f"names {name} twice; name each runtime once", param_hint="--require")
        try:
            value = float(atol) if atol else None
        except ValueError:
            value = -1.0
        if value is not None and not (value > 0 and value < float("inf")):
            raise click.BadParameter(f"{item!r}: ATOL must be a positive number, e.g. {name}:0.01",
                                     param_hint="--require")
        require[name] = value
    if not require:
        raise click.BadParameter("names no runtime; e.g. --require openvino_default:0.2", param_hint="--require")
    from .verifier import check_require

    try:
        check_require(require)
    except UserError as e:
        raise click.BadParameter(str(e).removeprefix("--require "), param_hint="--require") from None
    return require
