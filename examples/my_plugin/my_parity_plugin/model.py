"""GatedDecay: a data-dependent loop and branch of its own.

    h = Dense(8)(x)
    while max|h| > 4: h = h / 3        (runs 0, 1 or many times, by the input's magnitude)
    y = relu(-h) * 2 if mean(h) < 0 else tanh(h)

Uniform [0, 1) inputs keep max|h| under 4 (the loop never runs) and mostly
on one side of the branch; the exporter's coverage search finds inputs for
the other paths.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras


class GatedDecay(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.proj = keras.layers.Dense(8)

    def call(self, x):
        h = self.proj(x)
        (h,) = tf.while_loop(lambda h: tf.reduce_max(tf.abs(h)) > 4.0, lambda h: (h / 3.0,), (h,),
                             maximum_iterations=200)
        return tf.cond(tf.reduce_mean(h) < 0.0, lambda: tf.nn.relu(-h) * 2.0, lambda: tf.tanh(h))


def build_gated_decay(seed: int) -> keras.Model:
    """The same seed gives the same weights in every process."""
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)
    model = GatedDecay()
    model(np.zeros((1, 6), np.float32))  # build it
    return model
