"""The process table (from /proc) and a real command interrupted by a real signal, for the tests that stop runs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HAS_PROC = Path("/proc/self/stat").exists()
# What a browser leaves in $TMPDIR when nobody removes it: our home folders, Chromium's
# temporary files and profiles, Playwright's profiles and artifacts.
LITTER = ("tf-parity-browser-", "org.chromium.", ".org.chromium.", "playwright")


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, name), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            found[int(entry.name)] = (int(ppid), state, name)
    return found


def descendants(root: int) -> dict[int, str]:
    table = processes()
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in family and pid not in family:
                family.add(pid)
                grew = True
    return {pid: table[pid][2] for pid in family - {root} if pid in table}


def alive(pids: set[int]) -> dict[int, str]:
    """Those of `pids` still running (a zombie has exited: it only waits for its parent to read its status)."""
    table = processes()
    return {pid: table[pid][2] for pid in pids if pid in table and table[pid][1] != "Z"}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def litter(tmpdir: Path) -> list[str]:
    """What a browser left in `tmpdir`."""
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith(LITTER))


@dataclass
class Interrupted:
    returncode: int
    seconds: float  # from the signal to the process's exit
    out: str
    err: str
    seen: dict[int, str] = field(default_factory=dict)  # every process seen below it
    left: dict[int, str] = field(default_factory=dict)  # those still running 10 s after it exited


def interrupt(command: list[str], env: dict[str, str], ready: Callable[[dict[int, str]], bool], settle: float,
              send: Callable[[subprocess.Popen], None], cwd: Path | None = None, timeout: float = 180) -> Interrupted:
    """Start `command` in a new process group; once `ready(its descendants)` holds, wait `settle` seconds,
    `send` it a signal, and measure how long it takes to exit and what it leaves running."""
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=cwd)
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not ready(seen):
            assert proc.poll() is None, proc.communicate()
            seen.update(descendants(proc.pid))
            time.sleep(0.05)
        assert ready(seen), f"never ready; saw {seen}"
        end = time.monotonic() + settle
        while time.monotonic() < end:
            assert proc.poll() is None, proc.communicate()
            seen.update(descendants(proc.pid))
            time.sleep(0.05)
        signalled = time.monotonic()
        send(proc)
        out, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    end = time.monotonic() + 10  # the browser's own children exit a moment after it
    while alive(set(seen)) and time.monotonic() < end:
        time.sleep(0.1)
    return Interrupted(proc.returncode, seconds, out, err, seen, alive(set(seen)))
