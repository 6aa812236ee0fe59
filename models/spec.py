"""ModelSpec: the one description of a model that everything else reads.

The registry must stay importable without TensorFlow (so that `--help` and
`--list` are instant), so a spec names its builder as "module:function" and
describes tensors with plain tuples; TensorFlow objects are made on demand.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class TensorSig:
    """A named tensor. `None` in `shape` is the dynamic batch dimension.

    `sums_per_row`: for an output that sums over the whole batch (no batch
    dimension), how many float32 terms each input row adds to every element;
    the verifier's relative tolerance grows with the number of terms summed
    (verify/compare.py). 0 for an output computed row by row: a model whose
    inputs and outputs all keep the batch dimension is taken to compute each
    row alone, so the verifier may feed a very large batch in chunks.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    sums_per_row: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class ModelSpec:
    """Everything the exporters, the verifier, the CLIs and the tests need.

    Attributes:
        name: registry key, CLI choice and artifact folder name.
        builder: "module:function"; the function takes a seed and returns a
            built Keras model with deterministic weights.
        summary: one line for `--list`.
        inputs / outputs: the serving signature; output names become the
            SavedModel signature keys and the ONNX output names.
        atol / rtol: an element fails parity only if it exceeds both.
        control_flow: ONNX op types the exported graph must contain (the
            model's data-dependent loop/branch must not be unrolled).
        probe: optional "module:function" that takes the built model and
            returns a probe measuring which control-flow path an input takes.
        seed: the default weight seed.
    """

    name: str
    builder: str
    summary: str
    inputs: tuple[TensorSig, ...]
    outputs: tuple[TensorSig, ...]
    atol: float = 1e-5
    rtol: float = 1e-5
    control_flow: tuple[str, ...] = ()
    probe: str | None = None
    seed: int = 0

    def build(self, seed: int | None = None) -> Any:
        """Build the Keras model with deterministic weights (imports TensorFlow).

        Every build goes through here. The builder runs with a private Python
        `random` for this thread (models/randomness.py): Keras seeds weights
        through the global one, which other threads (the browser's warm-up)
        may draw from at the same time.
        """
        from .randomness import own_random

        seed = self.seed if seed is None else seed
        with own_random(seed):
            return _resolve(self.builder)(seed)

    def input_signature(self) -> list[Any]:
        """The `tf.TensorSpec`s of the serving signature."""
        from .lazy_tf import import_tensorflow

        tf = import_tensorflow()
        return [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in self.inputs]

    def serving_function(self, model: Any) -> Any:
        """Wrap `model` in a `tf.function` with the fixed signature and named outputs.

        This one function is what the SavedModel serves and what tf2onnx
        converts, so both artifacts carry the same names. AutoGraph is off:
        the models write their control flow as `tf.while_loop`/`tf.cond`
        (Keras 3 builds layers symbolically without AutoGraph anyway), and
        AutoGraph would leave a temporary .py file per traced function.
        """
        from .lazy_tf import import_tensorflow

        tf = import_tensorflow()
        names = [t.name for t in self.outputs]

        def serve(*args: Any) -> dict[str, Any]:
            result = model(args[0] if len(args) == 1 else list(args))
            result = result if isinstance(result, (list, tuple)) else [result]
            return dict(zip(names, result, strict=True))

        return tf.function(serve, input_signature=self.input_signature(), autograph=False)

    def make_probe(self, model: Any) -> Any | None:
        """The model's control-flow probe, or None for a model without control flow."""
        return _resolve(self.probe)(model) if self.probe else None

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "atol": self.atol,
            "rtol": self.rtol,
            "control_flow": list(self.control_flow),
        }


def _resolve(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
