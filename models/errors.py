"""The exception hierarchy shared by both CLIs.

It lives in the lowest layer so that `export` and `verify` raise, and their
CLIs catch, one base type. A `UserError` is something the user can fix (a bad
name, a bad file, a parity mismatch): the CLI prints its message on one line
and exits 1. Any other exception is a bug and keeps its traceback.
"""


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
