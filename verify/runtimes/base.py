"""The one interface every runtime implements, and how runtimes are found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from tf_parity_export.models import ModelSpec


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


@dataclass
class Subject:
    """What a runtime loader gets: the spec, the artifact folder and the
    reference Keras model rebuilt from the folder's weights."""

    spec: ModelSpec
    folder: Path
    model: Any  # None when TensorFlow is not installed


Loader = Callable[[Subject], Runtime]


@dataclass
class FnRuntime:
    """A runtime made of a name and an `infer` callable.

    `checks` are structure checks the loader made on what it loaded (the
    verifier adds them to the report); `precision` says what the device
    actually computes in, where the runtime's mode leaves it to the device.
    """

    name: str
    fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    checks: list[Any] = field(default_factory=list)
    precision: str = ""

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.fn(feed)


def require_model(subject: Subject) -> Any:
    """The reference model, or Unavailable when verifying without TensorFlow."""
    if subject.model is None:
        raise Unavailable("TensorFlow is not installed here; replaying the stored test data on ONNX runtimes only")
    return subject.model


def to_numpy(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in outputs.items()}
