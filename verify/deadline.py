"""A deadline on every runtime call that could run without end.

A model may loop for ever on some input (a `tf.while_loop` without
`maximum_iterations` fed activations that overflow to infinity never stops,
in any runtime), so no call into a runtime is left unbounded:

- onnxruntime: the call's `RunOptions.terminate` is set when the deadline
  passes (onnxruntime checks it between nodes, inside loop bodies too);
- OpenVINO: the request runs asynchronously and is cancelled;
- Node and the browser: their process is killed (their modules do that);
- everything else (TensorFlow, LiteRT, onnx's reference evaluator): the call
  runs on a worker thread and is abandoned; a thread cannot be stopped, so
  the runtime refuses further calls (`Stuck`) rather than run two at once.

The deadline is `DEFAULT_S` seconds per call, or `$TF_PARITY_DEADLINE`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

from tf_parity_export.models import UserError

ENV = "TF_PARITY_DEADLINE"
# The slowest legitimate calls measured here at the --inputs limit (1,000,000 x 20 float32
# through chimera, whose batch cannot be split: TF eager and onnx's reference evaluator)
# took 5.4 s on this 2-core machine; the default leaves ten times that.
DEFAULT_S = 60.0

T = TypeVar("T")


def seconds() -> float:
    """The deadline of one runtime call, in seconds."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise UserError(f"{ENV}={text!r} is not a number of seconds > 0 (the deadline of one runtime call; "
                        f"default {DEFAULT_S:g})")
    return value


class DeadlineExceeded(RuntimeError):
    """A runtime call did not finish within the deadline."""

    def __init__(self, what: str, limit: float, then: str = "") -> None:
        super().__init__(f"{what} did not finish within the deadline of {limit:g} s{'; ' + then if then else ''} "
                         f"(set {ENV}=SECONDS to change it)")
        self.limit = limit


class Stuck(RuntimeError):
    """A runtime whose earlier call ran past the deadline and may still be running."""


_abandoned: list[Any] = []


def abandon(*objects: Any) -> None:
    """Keep `objects` alive for the rest of the process.

    A native call that could not be stopped still runs on its objects (an
    OpenVINO request whose loop ignores `cancel`); their destructors would wait
    for it, that is for ever, wherever the last reference went away. An extra
    reference that is never released keeps the destructors from running; the
    console scripts end with `os._exit`, which runs none.
    """
    import ctypes

    for obj in objects:
        _abandoned.append(obj)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


class _Watchdog:
    """One thread that calls each armed callback when its time comes (unless disarmed first).

    Cheaper per call than a `threading.Timer` (a thread each): the coverage
    search runs thousands of bounded onnxruntime calls.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[list[Any]] = []  # [when, seq, callback or None]
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, after: float, callback: Callable[[], None]) -> list[Any]:
        entry = [time.monotonic() + after, next(self._seq), callback]
        with self._cv:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0] is entry:
                self._cv.notify()
        return entry

    def disarm(self, entry: list[Any]) -> None:
        with self._cv:
            entry[2] = None

    def _run(self) -> None:
        with self._cv:
            while True:
                while self._heap and self._heap[0][2] is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cv.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cv.wait(delay)
                    continue
                entry = heapq.heappop(self._heap)
                callback, entry[2] = entry[2], None
                self._cv.release()
                try:
                    callback()
                except Exception:  # a callback that fails must not stop every later deadline
                    pass
                finally:
                    self._cv.acquire()


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def bounded(what: str, on_deadline: Callable[[], None], limit: float | None = None) -> Iterator[None]:
    """Run the block; if it is still running after the deadline, call `on_deadline` (from another
    thread) to make it stop. A block that then fails raises DeadlineExceeded instead."""
    limit = seconds() if limit is None else limit
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        on_deadline()

    entry = _WATCHDOG.arm(limit, fire)
    try:
        yield
    except Exception:
        if fired.is_set():
            raise DeadlineExceeded(what, limit) from None
        raise
    finally:
        _WATCHDOG.disarm(entry)


def ort_run(session: Any, outputs: list[str] | None, feed: dict[str, Any], what: str) -> list[Any]:
    """`session.run(outputs, feed)`, terminated by onnxruntime itself at the deadline."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 4  # a terminated run is reported once, by the caller, not also as a log line
    with bounded(what, lambda: setattr(options, "terminate", True)):
        return session.run(outputs, feed, options)


class OnThread:
    """Calls made on a worker thread and waited for until the deadline (for runtimes that cannot be stopped).

    After a call ran past the deadline it may still be running (and holding the
    interpreter or model it was called on), so every later call raises Stuck.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.stuck = ""

    def __call__(self, fn: Callable[[], T]) -> T:
        if self.stuck:
            raise Stuck(self.stuck)
        limit = seconds()
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["result"] = fn()
            except BaseException as e:  # handed to the caller's thread
                box["error"] = e
            finally:
                done.set()

        threading.Thread(target=work, name=f"{self.what}-call", daemon=True).start()
        if not done.wait(limit):
            error = DeadlineExceeded(self.what, limit)
            self.stuck = f"{self.what} is still running a call that ran past the deadline of {limit:g} s; not called again"
            raise error
        if "error" in box:
            raise box["error"]
        return box["result"]
