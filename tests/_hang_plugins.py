"""Plugin models that run for ever, for the deadline and Ctrl-C tests (installed by tests through an entry point).

`capless`: Dense(4) with an all-ones kernel, then `tf.while_loop` halving while
max|h| > 1, with no `maximum_iterations` (legal Keras). Any finite input ends
(within ~150 halvings); one whose row sums overflow float32 (4 x 3e38) makes h
infinite, and infinity halved is infinity: the loop never ends, in any runtime.

`forever`: a builder that never returns, inside TensorFlow's C++ while loop.
"""

from tf_parity_export import ModelSpec, TensorSig

CAPLESS = ModelSpec(name="capless", builder="_hang_plugins:build_capless", summary="halves while max|h| > 1, no cap",
                    inputs=(TensorSig("x", (None, 4)),), outputs=(TensorSig("y", (None, 4)),), control_flow=("Loop",))
FOREVER = ModelSpec(name="forever", builder="_hang_plugins:build_forever", summary="a builder that never returns",
                    inputs=(TensorSig("x", (None, 4)),), outputs=(TensorSig("y", (None, 4)),))
OVERFLOWING = 3e38  # 4 of them sum to infinity in float32


def build_capless(seed):
    import tensorflow as tf
    import keras

    from tf_parity_export.models.seeding import build_seeded

    class Capless(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.proj = keras.layers.Dense(4, kernel_initializer="ones")

        def call(self, x):
            h = self.proj(x)
            (h,) = tf.while_loop(lambda h: tf.reduce_max(tf.abs(h)) > 1.0, lambda h: (h / 2.0,), (h,))
            return h

    return build_seeded(Capless, seed, input_dim=4)


def build_forever(seed):
    import tensorflow as tf

    spin = tf.function(lambda v: tf.while_loop(lambda v: v > -1.0, lambda v: (v + 1.0,), (v,)))
    return spin(tf.constant(0.0))  # v stops growing at 2**24 and stays > -1: never returns
