"""`mlp` and `sequential_mlp`: the seed's first two examples (same network)."""

from __future__ import annotations

from typing import Any

from .lazy_tf import import_tensorflow
from .seeding import build_seeded

import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)


class MLP(keras.Model):
    """Flatten, Dense(256, relu), Dense(10), written as a subclassed Model."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.dense1 = keras.layers.Dense(256, activation="relu")
        self.dense2 = keras.layers.Dense(10)

    def call(self, inputs: Any) -> Any:
        return self.dense2(self.dense1(self.flatten(inputs)))


def build_mlp(seed: int) -> keras.Model:
    return build_seeded(MLP, seed)


def build_sequential_mlp(seed: int) -> keras.Model:
    return build_seeded(lambda: keras.Sequential([
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10),
    ]), seed)
