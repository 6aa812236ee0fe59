"""`nest_mlp`: a Sequential nested inside a subclassed Model."""

from __future__ import annotations

from typing import Any

from .lazy_tf import import_tensorflow
from .seeding import build_seeded

import_tensorflow()
import keras  # noqa: E402


class NestMLP(keras.Model):
    """Sequential(Flatten, Dense(64, relu), Dense(32, relu)), then Dense(16, relu)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = keras.Sequential([
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
        ])
        self.dense = keras.layers.Dense(16, activation="relu")

    def call(self, inputs: Any) -> Any:
        return self.dense(self.net(inputs))


def build_nest_mlp(seed: int) -> keras.Model:
    return build_seeded(NestMLP, seed)
