"""Swap a finished folder into place atomically, and serialise concurrent exports.

On Linux, `renameat2(RENAME_EXCHANGE)` swaps the new folder and the old one
in one step: at every instant `<name>/` is either the complete old version or
the complete new one, even under `kill -9`. Elsewhere we fall back to two
renames, with a short window in which `<name>/` is missing.

Temporaries are removed by name only when this tool recorded the name: the
lock file (`.export.lock`) doubles as a ledger. Before a temporary is created
its path (relative to the locked folder) is appended to the lock file; the next
run that takes the lock removes the recorded paths that still exist (a run
killed mid-write left them) and empties the ledger. A user's own
`.something.tmp-1` is never touched: its name is not in the ledger.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Iterator

from tf_parity_export.models import UserError
from tf_parity_export.models.text import shown

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
LOCK = ".export.lock"
_held: dict[Path, IO[str]] = {}  # locked folder (resolved) -> its open lock file, while this process holds it


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


def claim(folder: Path, stem: str) -> Path:
    """A fresh temporary path `folder/.<stem>.tmp-<pid>-<random>` (not created).

    When this process holds the export lock of `folder` or of a folder above
    it, the path is first recorded in that lock file, so that if this run is
    killed the next export removes it, and nothing else.
    """
    path = Path(folder) / f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    here = path.resolve()
    roots = [root for root in _held if here.is_relative_to(root)]
    if roots:
        root = max(roots, key=lambda r: len(r.parts))  # the innermost lock held (exports can nest)
        _held[root].write(f"{here.relative_to(root)}\n")
        _held[root].flush()
    return path


def remove(path: Path) -> None:
    """Delete a file or a folder tree (a symlink itself, never what it points to); gone is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def swap_in(new: Path, dest: Path) -> None:
    """Make `new` appear at `dest`, replacing any old `dest` all at once, then delete the old one."""
    if not dest.exists():
        os.rename(new, dest)
        return
    if exchange(new, dest):
        shutil.rmtree(new)  # `new` now holds the old version (its name is already in the ledger)
        return
    old = claim(dest.parent, f"{dest.name}.old")
    os.rename(dest, old)
    os.rename(new, dest)
    shutil.rmtree(old)


def _sweep(out: Path, handle: IO[str]) -> None:
    """Remove what the ledger names (temporaries of a killed run), then empty it."""
    handle.seek(0)
    for line in handle.read().splitlines():
        rel = Path(line)
        # only what `claim` writes: a relative path below `out` to a `.….tmp-…` name
        if not line or rel.is_absolute() or ".." in rel.parts or not (rel.name.startswith(".") and ".tmp-" in rel.name):
            continue
        target = out / rel
        if target.parent.resolve().is_relative_to(out.resolve()):  # not through a symlink leading out
            remove(target)
    handle.truncate(0)


@contextlib.contextmanager
def exclusive(out: Path, wait: bool = True) -> Iterator[None]:
    """Hold `out/.export.lock` so two exports into one folder run one after the other.

    Under the lock no other export is writing, so the temporaries a killed run
    recorded in the lock file are removed. The kernel drops the lock when a
    process dies.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK, "a+")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise UserError(f"{shown(out)}: cannot write the artifacts folder here ({e.strerror})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UserError(f"{shown(out)}: another export-models run holds {LOCK}") from None
        root = out.resolve()
        _sweep(out, handle)
        _held[root] = handle
        try:
            yield
        finally:
            del _held[root]
            with contextlib.suppress(OSError):
                _sweep(out, handle)  # what a failed step left (normally nothing: each step cleans up)
