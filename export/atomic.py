"""Swap a finished folder into place atomically, and serialise concurrent exports.

On Linux, `renameat2(RENAME_EXCHANGE)` swaps the new folder and the old one
in one step: at every instant `<name>/` is either the complete old version or
the complete new one, even under `kill -9`. Elsewhere we fall back to two
renames, with a short window in which `<name>/` is missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import shutil
from pathlib import Path
from typing import Iterator

from tf_parity_export.models import UserError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
LOCK = ".export.lock"
TEMP_MARKERS = (".tmp-", ".old-")


def _renameat2() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError):
        return None


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the OS cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: filesystem or kernel lacks it
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: Path, dest: Path) -> None:
    """Make `new` appear at `dest`, replacing any old `dest` all at once, then delete the old one."""
    if not dest.exists():
        os.rename(new, dest)
        return
    if exchange(new, dest):
        shutil.rmtree(new)  # `new` now holds the old version
        return
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    os.rename(dest, old)
    os.rename(new, dest)
    shutil.rmtree(old)


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and any(m in path.name for m in TEMP_MARKERS)


@contextlib.contextmanager
def exclusive(out: Path, wait: bool = True) -> Iterator[None]:
    """Hold `out/.export.lock` so two exports into one folder run one after the other.

    Under the lock no other export is writing, so temporary folders left by a
    killed run are removed. The kernel drops the lock when a process dies.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK, "a")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise UserError(f"{out}: cannot write the artifacts folder here ({e.strerror})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UserError(f"{out}: another export-models run holds {LOCK}") from None
        for stale in out.iterdir():
            if is_temporary(stale):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        yield
