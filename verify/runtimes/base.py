"""The one interface every runtime implements, and how runtimes are found."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

import numpy as np

from tf_parity_export.models import ModelSpec

from ..deadline import OnThread


class Runtime(Protocol):
    """Something that runs an artifact: named numpy inputs in, named numpy outputs out."""

    name: str

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


# Numeric modes. "fp32" is exact: held to the model's tolerance. The others
# are reduced (bfloat16, TF32 matrix products, float16, or whatever the device
# picks): measured and reported with the tightest tolerance they would pass,
# failing the run only when the user requires the runtime.
EXACT = "fp32"
REDUCED = ("bf16", "tf32", "fp16", "auto")


class Unavailable(Exception):
    """The runtime cannot run on this machine; the message says why."""


class Unsupported(Exception):
    """A deployment runtime (LiteRT, OpenVINO, Node, the browser) cannot take this model or case: its
    converter or compiler refused it (the message is the tool's reason), or a case is beyond what it can
    hold (the browser's page). Reported apart from mismatches; it fails the run only where the runtime is
    required."""


class Closable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=Closable)


class RunScope:
    """What the runtimes of one run share, and stop when the run ends.

    A loader that needs a costly service for every model of a run (a browser
    and its server) takes it from here with `shared(key, start)`: started on
    first use, the same object for every later model, closed by `close()`
    (newest first), also when the run ends with an exception or Ctrl-C. A
    service that failed to start fails the same way for every later model
    without being retried.
    """

    def __init__(self) -> None:
        self._services: dict[str, Any] = {}
        self._stack = contextlib.ExitStack()

    def shared(self, key: str, start: Callable[[], S]) -> S:
        """The service under `key`, started with `start()` on first use."""
        if key not in self._services:
            try:
                service = start()
            except Exception as e:  # remembered: a browser that did not start will not start for the next model
                self._services[key] = e
                raise
            self._services[key] = service
            self._stack.callback(service.close)
        found = self._services[key]
        if isinstance(found, Exception):
            raise found
        return found

    def environment(self) -> dict[str, Any]:
        """What the started services report about themselves (versions), for the report."""
        env: dict[str, Any] = {}
        for service in self._services.values():
            describe = getattr(service, "environment", None)
            if callable(describe):
                env.update(describe())
        return env

    def close(self) -> None:
        """Stop every service started in this scope."""
        self._services.clear()
        self._stack.close()

    def __enter__(self) -> "RunScope":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Subject:
    """What a runtime loader gets: the spec, the artifact folder, the
    reference Keras model rebuilt from the folder's weights, and the run's
    shared services."""

    spec: ModelSpec
    folder: Path
    model: Any  # None when TensorFlow is not installed
    scope: RunScope = field(default_factory=RunScope)
    card: dict[str, Any] = field(default_factory=dict)  # the folder's checked card.json


Loader = Callable[[Subject], Runtime]


@dataclass
class FnRuntime:
    """A runtime made of a name and an `infer` callable.

    `checks` are structure checks the loader made on what it loaded (the
    verifier adds them to the report); `precision` says what the device
    actually computes in, where the runtime's mode leaves it to the device.

    Every `infer` call is bounded by the deadline (verify/deadline.py):
    `bounded` is the call made with the runtime's own way to stop (onnxruntime's
    terminate flag, OpenVINO's cancel); without one, `fn` runs on a worker thread
    that is abandoned at the deadline. `fn` itself is the plain call, which
    `--bench` times once a bounded call has shown the input finishes.
    """

    name: str
    fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    checks: list[Any] = field(default_factory=list)
    precision: str = ""
    bounded: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        self._on_thread = OnThread(self.name) if self.bounded is None else None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.bounded is not None:
            return self.bounded(feed)
        return self._on_thread(lambda: self.fn(feed))

    def unbounded(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.fn(feed)


def require_model(subject: Subject) -> Any:
    """The reference model, or Unavailable when verifying without TensorFlow."""
    if subject.model is None:
        raise Unavailable("TensorFlow is not installed here; replaying the stored test data on ONNX runtimes only")
    return subject.model


def to_numpy(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in outputs.items()}
