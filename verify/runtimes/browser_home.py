"""The folder a run's browser lives in: its Chromium profile and its TMPDIR, owned by this tool.

Chromium writes a profile (about 1.2 MB) and temporary files
(`org.chromium.Chromium.*`), and Playwright's driver its own temporary
folders; left to themselves they land in $TMPDIR and stay there when a run
is killed. Here they all go into one folder, `$TMPDIR/tf-parity-browser-*/`
(`profile/`, and the rest as Chromium's and the driver's TMPDIR), which the run removes when it stops the browser, on
an error, on Ctrl-C and on SIGTERM. A run killed outright (SIGKILL) cannot;
so its folder holds `owner.lock`, locked (flock) for as long as its run
lives, and every later run removes the folders whose lock is free: those of
dead runs. Nothing else in $TMPDIR is ever touched: a folder is removed only
if its name has the prefix and its `owner.lock` says it is one of these.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

PREFIX = "tf-parity-browser-"
LOCK = "owner.lock"
REMOVE_PASSES = 5
# The lock file's whole content; written only once the lock is held, so a folder
# being set up (no content yet) is never taken for a dead run's.
SIGNATURE = b"tf-parity-export browser home; removed when its run ends\n"


def sweep(parent: Path | None = None) -> list[Path]:
    """Remove the folders of runs that are no longer alive; returns them."""
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    removed = []
    try:
        entries = [e for e in parent.iterdir() if e.name.startswith(PREFIX)]
    except OSError:
        return removed
    for folder in entries:
        lock = folder / LOCK
        try:
            if folder.is_symlink() or not folder.is_dir() or lock.is_symlink():
                continue
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if os.read(fd, len(SIGNATURE) + 1) != SIGNATURE:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its run is alive
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


# Chromium binds a Unix socket at $TMPDIR/.org.chromium.Chromium.XXXXXX/SingletonSocket, and a
# socket path holds at most 107 bytes: it does not start from a TMPDIR longer than this.
SOCKET_ROOM = 107 - len("/.org.chromium.Chromium.XXXXXX/SingletonSocket")


class BrowserHome:
    """A fresh folder for one browser, locked by this process until `remove()`."""

    def __init__(self) -> None:
        self._fd: int | None = None
        sweep()
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX))
        if len(os.fsencode(self.path)) > SOCKET_ROOM:
            self.path.rmdir()
            raise OSError(f"its temporary folder {self.path} would be {len(os.fsencode(self.path))} bytes long, and "
                          f"Chromium starts only in one of at most {SOCKET_ROOM} (its socket's path): set TMPDIR to "
                          "a shorter folder")
        try:
            self._fd = os.open(self.path / LOCK, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            os.write(self._fd, SIGNATURE)
            self.profile = self.path / "profile"
            self.profile.mkdir()
            self.tmp = self.path  # Chromium's TMPDIR: the folder itself, the shortest path (see SOCKET_ROOM)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise

    def remove(self) -> None:
        """Delete the folder (safe to call twice), its lock file last.

        A browser process that was still on its way out may write a file after a
        first pass; a few passes follow, and a folder that still will not go keeps
        a signed lock file (no longer locked), so the next run's sweep removes it."""
        if self._fd is None:
            return
        for _ in range(REMOVE_PASSES):
            try:
                rest = [p for p in self.path.iterdir() if p.name != LOCK]
            except FileNotFoundError:
                break
            for entry in rest:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            try:
                (self.path / LOCK).unlink(missing_ok=True)
                self.path.rmdir()
                break
            except OSError:  # a file came back: sign the folder again, and go round
                with contextlib.suppress(OSError):
                    (self.path / LOCK).write_bytes(SIGNATURE)
            time.sleep(0.1)
        os.close(self._fd)
        self._fd = None
