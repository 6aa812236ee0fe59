"""Who is waiting for a flock: read from /proc/locks, so lock tests need no sleeps.

A process blocked in flock(LOCK_EX) on a file shows in /proc/locks as a
"-> FLOCK ... WRITE <pid> <maj>:<min>:<inode>" line. A test that holds the
lock waits until the other party shows there: if the code under test forgot
to take the lock, it never does, and the test fails every time, not by luck.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable


def waiting_pids(path: Path) -> set[int]:
    """Pids blocked waiting for a flock on `path`."""
    inode = os.stat(path).st_ino
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields and fields[-3].split(":")[-1] == str(inode):
            pids.add(int(fields[-4]))
    return pids


def wait_until_blocked(path: Path, pid: int, finished: Callable[[], bool], timeout: float = 120.0) -> None:
    """Return once `pid` waits for the lock on `path`; fail if it finishes first (it took no lock)."""
    end = time.monotonic() + timeout
    while pid not in waiting_pids(path):
        assert not finished(), "finished while the lock was held: it never waited for the lock"
        assert time.monotonic() < end, "never started waiting for the lock"
        time.sleep(0.01)
