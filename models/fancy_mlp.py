"""`fancy_mlp`: a constant weight, a data-dependent while loop and an if.

The seed writes `while tf.norm(x) > 1:` and `if tf.norm(x) < 0.8:` in Python.
Keras 3 runs `call` without AutoGraph when it builds a layer symbolically
(inside a Sequential, or in `model.export`), where a Python `while` on a
tensor raises OperatorNotAllowedInGraphError. So the loop and the branch are
written as `tf.while_loop` and `tf.cond`: they work eagerly, symbolically and
in a `tf.function`, and tf2onnx turns them into ONNX `Loop` and `If`.

The seed makes `rand_weight` with `tf.constant`; `tf2onnx.convert.from_function`
would turn that captured constant into a second graph input. A non-trainable
weight keeps it inside the model: it is saved with the weights, becomes a
variable in the SavedModel and an initializer in ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .lazy_tf import import_tensorflow
from .seeding import build_seeded

tf = import_tensorflow()
import keras  # noqa: E402

# Halving stops any finite float32 tensor within ~150 steps; the cap only
# matters when the norm itself is infinite, where the seed's loop never ends.
MAX_ITERATIONS = 1000
UPPER, LOWER = 1.0, 0.8  # the loop runs while norm > UPPER; scale by 10 if norm < LOWER


class FancyMLP(keras.Model):
    """relu(x @ rand_weight + 1) -> Dense(20, relu) -> halve while norm > 1 -> x10 if norm < 0.8 -> sum."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.rand_weight = self.add_weight(
            shape=(20, 20),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            trainable=False,
            name="rand_weight",
        )
        self.dense = keras.layers.Dense(20, activation="relu")

    def hidden(self, inputs: Any) -> Any:
        x = self.flatten(inputs)
        x = tf.nn.relu(tf.matmul(x, self.rand_weight) + 1)
        return self.dense(x)

    def call(self, inputs: Any) -> Any:
        x = self.hidden(inputs)
        (x,) = tf.while_loop(
            lambda x: tf.norm(x) > UPPER,
            lambda x: (x / 2,),
            (x,),
            maximum_iterations=MAX_ITERATIONS,
        )
        x = tf.cond(tf.norm(x) < LOWER, lambda: x * 10, lambda: x)
        return tf.reduce_sum(x)


@dataclass(frozen=True)
class ControlPath:
    """Which way an input went through FancyMLP's loop and branch, as measured."""

    iterations: int
    scaled: bool  # True: the `if` multiplied by 10
    norm: float  # the norm entering the loop
    margin: float  # smallest relative distance of any tested norm to its threshold
    capped: bool = False  # the loop stopped at MAX_ITERATIONS, not at its condition

    def to_json(self) -> dict[str, Any]:
        path = {"iterations": self.iterations, "branch": "scaled" if self.scaled else "kept",
                "norm_before_loop": self.norm, "margin": self.margin}
        # Only when it happened: a capped input is one on which the seed's loop never ends.
        return {**path, "capped": True} if self.capped else path


class LoopProbe:
    """Measures FancyMLP's control-flow path for an input of the whole model.

    `pre_loop` maps the model's input to the activations entering the loop
    (for chimera that includes the layers in front of FancyMLP); it is
    differentiable, which lets the verifier search for inputs that take a
    given path.
    """

    def __init__(self, pre_loop: Callable[[Any], Any]) -> None:
        self.pre_loop = pre_loop

    def trace(self, inputs: Any) -> ControlPath:
        """Run the loop and branch step by step in eager TF and record the path.

        Uses the same float32 `tf.norm` as `call` and counts every loop test,
        so the count is observed rather than derived from a formula.
        """
        x = self.pre_loop(tf.convert_to_tensor(inputs))
        first = norm = float(tf.norm(x))
        iterations, margin = 0, np.inf
        while True:
            margin = min(margin, abs(norm - UPPER) / UPPER)
            if not norm > UPPER or iterations == MAX_ITERATIONS:
                break
            x, iterations = x / 2, iterations + 1
            norm = float(tf.norm(x))
        capped = iterations == MAX_ITERATIONS and norm > UPPER
        margin = min(margin, abs(norm - LOWER) / LOWER)
        return ControlPath(iterations, norm < LOWER, first, margin, capped)


def build_fancy_mlp(seed: int) -> keras.Model:
    return build_seeded(FancyMLP, seed)


def probe_fancy_mlp(model: FancyMLP) -> LoopProbe:
    return LoopProbe(model.hidden)
