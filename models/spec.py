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

    `range`: (low, high), high exclusive: the values random cases draw from, for
    an input (uniform for floats, every integer in [low, high) for integer
    dtypes; float inputs default to [0, 1)). An integer input needs one (token
    ids beyond a vocabulary are no valid input); where it has none, the
    exporter takes it from an `Embedding` layer the input feeds
    ([0, input_dim)) and otherwise refuses the model in one line.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    sums_per_row: int = 0
    range: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        return {**data, "range": list(self.range)} if self.range is not None else data

    @property
    def integer(self) -> bool:
        """An integer (or boolean) tensor: its values are ids or counts, not measurements."""
        import numpy as np

        return np.dtype(self.dtype).kind in "biu"


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
        source: for a model read from a file (`models/from_file.py`), where it
            came from; its builder is then a callable that loads the file.
    """

    name: str
    builder: str | Callable[[int], Any]
    summary: str
    inputs: tuple[TensorSig, ...]
    outputs: tuple[TensorSig, ...]
    atol: float = 1e-5
    rtol: float = 1e-5
    control_flow: tuple[str, ...] = ()
    probe: str | None = None
    seed: int = 0
    source: Any = None

    def build(self, seed: int | None = None) -> Any:
        """Build the Keras model with deterministic weights (imports TensorFlow).

        Every build goes through here. The builder runs with a private Python
        `random` for this thread (models/randomness.py): Keras seeds weights
        through the global one, which other threads (the browser's warm-up)
        may draw from at the same time.
        """
        from .randomness import own_random

        builder = self.builder if callable(self.builder) else _resolve(self.builder)
        seed = self.seed if seed is None else seed
        with own_random(seed):
            return builder(seed)

    def input_signature(self, batch: int | None = None) -> list[Any]:
        """The `tf.TensorSpec`s of the serving signature (`batch`: a fixed batch size instead of None)."""
        from .lazy_tf import import_tensorflow

        tf = import_tensorflow()
        return [tf.TensorSpec((batch, *t.shape[1:]) if t.shape and t.shape[0] is None else t.shape, t.dtype,
                              name=t.name) for t in self.inputs]

    def serving_function(self, model: Any, batch: int | None = None) -> Any:
        """Wrap `model` in a `tf.function` with the fixed signature and named outputs.

        This one function is what the SavedModel serves and what tf2onnx
        converts, so both artifacts carry the same names. AutoGraph is off:
        the models write their control flow as `tf.while_loop`/`tf.cond`
        (Keras 3 builds layers symbolically without AutoGraph anyway), and
        AutoGraph would leave a temporary .py file per traced function.
        `batch` fixes the batch size (TFLite's converter needs one for RNNs).
        """
        from .lazy_tf import import_tensorflow

        tf = import_tensorflow()
        names = [t.name for t in self.outputs]

        def serve(*args: Any) -> dict[str, Any]:
            return named_outputs(call_model(model, self, list(args)), names)

        return tf.function(serve, input_signature=self.input_signature(batch), autograph=False)

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


def call_model(model: Any, spec: ModelSpec, values: list[Any]) -> Any:
    """Call `model` on the inputs in spec order, matched by name where the model names them.

    A functional Keras model takes a dict keyed by its `keras.Input` names
    (whatever order it was built with, and the only way into one built with a
    dict of inputs), so one whose input names are the spec's gets a dict. Any
    other model (a subclassed one) gets its one input, or a list in spec order.
    """
    names = [t.name for t in spec.inputs]
    struct = getattr(model, "_inputs_struct", None)  # Keras keeps it on functional models only
    if struct is not None and (len(names) > 1 or isinstance(struct, dict)):
        if sorted(getattr(t, "name", None) for t in model.inputs) == sorted(names):
            return model(dict(zip(names, values)))
    return model(values[0] if len(values) == 1 else values)


def named_outputs(result: Any, names: list[str]) -> dict[str, Any]:
    """The model's outputs by the spec's names: a dict matched by key, a list or tuple by position."""
    if isinstance(result, dict):
        if sorted(result) != sorted(names):
            raise ValueError(f"the model returns a dict with keys {sorted(result)}, the spec declares outputs {names}")
        return {n: result[n] for n in names}
    result = list(result) if isinstance(result, (list, tuple)) else [result]
    if len(result) != len(names):
        raise ValueError(f"the model returns {len(result)} outputs, the spec declares {len(names)}: {names}")
    return dict(zip(names, result))


def _resolve(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
