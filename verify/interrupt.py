"""What Ctrl-C and SIGTERM do to a run: stop its services, kill what is left, exit at once.

The console scripts run their command on a worker thread, so the main
thread is always free to take SIGINT and SIGTERM: a command blocked in
onnxruntime, TensorFlow or a read from the browser would otherwise hold the
signal for as long as it runs (for ever, on a loop that never ends). On a
signal every live service (the browser, Node) is killed and its folders
removed, every process this one started is killed, and the process exits
at once with 128 + the signal: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Protocol

PROC = Path("/proc")
# Playwright's driver (a Node process) removes its own temporary folders when it is
# asked to stop; SIGKILL would leave them. It gets SIGTERM and this long first.
DRIVER_GRACE_S = 1.0


class Killable(Protocol):
    def kill(self) -> None:
        """Stop at once, from any thread, without waiting for anything that may hang."""


_live: set[Killable] = set()
_lock = threading.Lock()


def register(service: Killable) -> None:
    """`service.kill()` is called if the process is interrupted while the service is live."""
    with _lock:
        _live.add(service)


def unregister(service: Killable) -> None:
    with _lock:
        _live.discard(service)


def _processes() -> list[Path]:
    """Every process's /proc folder (none where there is no /proc)."""
    try:
        return [entry for entry in PROC.iterdir() if entry.name.isdigit()]
    except OSError:
        return []


def _table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, from /proc (empty where there is no /proc)."""
    found = {}
    for entry in _processes():
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        found[int(entry.name)] = (int(ppid), state)
    return found


def descendants(root: int | None = None) -> list[int]:
    """Every living process below `root` (this process by default), parents first."""
    return family([os.getpid() if root is None else root])[1:]


def family(roots: list[int]) -> list[int]:
    """`roots` and every living process below them, parents first, from one look at the process table
    (so that killing a parent first cannot hide its children, whom it would leave to init)."""
    table = _table()
    order, frontier = list(roots), set(roots)
    while frontier:
        kids = [pid for pid, (ppid, state) in table.items() if ppid in frontier and state != "Z"]
        order += kids
        frontier = set(kids)
    return order


def cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def mentioning(text: str) -> list[int]:
    """Processes (of this user) whose command line or environment contains `text`.

    Both: Chromium passes its profile folder to every child on the command line
    but starts them with a clean environment, and rewrites its own process
    title over its environment; a helper it forks (crashpad) keeps the environment."""
    wanted = os.fsencode(text)
    found = []
    for entry in _processes():
        for part in ("cmdline", "environ"):
            try:
                if wanted in (entry / part).read_bytes():
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return found


def kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def alive(pids: list[int]) -> list[int]:
    table = _table()
    return [pid for pid in pids if pid in table and table[pid][1] != "Z"]


def stop_everything() -> None:
    """Kill every live service and every process this one started; wait briefly for them to go."""
    started = descendants()
    drivers = [pid for pid in started if "run-driver" in cmdline(pid)]  # Playwright's
    kill(drivers, signal.SIGTERM)
    with _lock:
        services = list(_live)
    for service in services:
        try:
            service.kill()
        except Exception:  # one service failing to die must not keep the others alive
            pass
    kill([pid for pid in started if pid not in drivers])
    deadline = time.monotonic() + DRIVER_GRACE_S
    while alive(drivers) and time.monotonic() < deadline:
        time.sleep(0.02)
    kill(descendants() + started)


class _Signalled(BaseException):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def run(command: Callable[[], int]) -> int:
    """`command()` on a worker thread; its exit status. On SIGINT/SIGTERM: stop everything, exit 128 + signal.

    An exception the command lets out (a bug) prints its traceback and is status 1.
    """
    box: dict[str, int] = {}

    def work() -> None:
        try:
            box["code"] = command()
        except BaseException:  # a bug: its traceback, as Python would print it
            traceback.print_exc()
            box["code"] = 1

    def on_signal(signum: int, frame: object) -> None:
        raise _Signalled(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    worker = threading.Thread(target=work, name="command", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.25)
    except _Signalled as s:
        for sig in previous:  # a second Ctrl-C while stopping changes nothing
            signal.signal(sig, signal.SIG_IGN)
        name = signal.Signals(s.signum).name
        try:
            sys.stderr.write(f"interrupted ({name}): stopping the browser, Node and every process this run started\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        stop_everything()
        os._exit(128 + s.signum)
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, handler)
    return box.get("code", 1)
