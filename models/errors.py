"""The exception hierarchy shared by both CLIs.

It lives in the lowest layer so that `export` and `verify` raise, and their
CLIs catch, one base type. A `UserError` is something the user can fix (a bad
name, a bad file, a parity mismatch): the CLI prints its message on one line
and exits 1. Any other exception is a bug and keeps its traceback.
"""

import re


class UserError(Exception):
    """A failure the user can act on; rendered as one line, exit status 1."""


class UnknownModelError(UserError):
    """A model name that is not in the registry."""


class InputError(UserError):
    """User-supplied input data that cannot be fed to a model."""


class ArtifactError(UserError):
    """A missing, truncated, tampered or otherwise unreadable artifact."""


class ParityError(UserError):
    """Runtimes disagree beyond tolerance (or a structure check failed)."""


class PluginError(UserError):
    """A model from another distribution's entry point that cannot be used as registered."""


class ExportError(UserError):
    """A model that could not be exported (a builder that raised, a converter that
    failed): one line naming the model, the stage and the tool's reason."""


# Lines tools print before the one that says why: OpenVINO's "Exception from src/...cpp:132:"
# chain and "Check '...' failed at src/...:", Python's "Traceback"/'File "..."' lines, blank lines.
_BANNER = re.compile(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?|Traceback \(most recent call last\):"
                     r"|File \".*\", line \d+.*|\^+|~+)$")
def first_reason(e: BaseException) -> str:
    """The first line of `e`'s message that says why, without file:line banners.

    TF's converters put an MLIR diagnostic per line (`<file>:<line>: error: <why>`,
    the location before `error:` often a page long); OpenVINO puts a chain of
    `Exception from <file>:<line>:` lines before the reason. The reason is the
    text after the first line's last `error:`, else the first line that is
    not a banner.
    """
    text = str(getattr(e, "message", "") or e).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            reason = line[line.rindex("error:") + len("error:"):].strip()
            if reason.startswith("loc(") and "): " in reason:  # "<unknown>:0: error: loc(...): why"
                reason = reason[reason.rindex("): ") + 3:]
            if reason:
                return _one_line(reason)
    subject = ""
    for line in lines:  # headers end with ':' ("FrontEnd API failed with OpConversionFailure:"); skip them
        if _BANNER.match(line):
            continue
        op = re.match(r"^-- (\S+) with a message:$", line)  # OpenVINO names the op it failed on so
        if op:
            subject = f"{op.group(1)}: "
        elif line.startswith("Model wasn't fully converted"):  # OpenVINO's header; its summary says why
            continue
        elif line.startswith("-- ") and not line.endswith(":"):  # "-- No conversion rule found for operations: Det-17"
            return _one_line(subject + line[3:])
        elif not line.endswith(":"):
            return _one_line(subject + line)
    header = next((line for line in lines if not _BANNER.match(line)), "")
    return _one_line(header.rstrip(":")) if header else type(e).__name__


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
