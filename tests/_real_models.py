"""Small real Keras models of every class the exporter must handle (tests/test_real_models.py).

Each builder takes a seed and returns a built model; each is small enough to export and verify
in a few seconds. They are registered for the tests as ModelSpecs (SPECS below).
"""

from __future__ import annotations

import numpy as np

from tf_parity_export import ModelSpec, TensorSig
from tf_parity_export.models.lazy_tf import import_tensorflow

tf = import_tensorflow()
import keras  # noqa: E402

M = "_real_models:"


def _fresh(seed: int) -> None:
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)


def build_rnn_stack(seed: int) -> keras.Model:
    """int32 ids -> Embedding(mask_zero) -> LSTM(seq) -> GRU(seq) -> Bidirectional(SimpleRNN) -> Dense."""
    _fresh(seed)
    ids = keras.Input((6,), dtype="int32", name="ids")
    h = keras.layers.Embedding(40, 8, mask_zero=True)(ids)
    h = keras.layers.LSTM(8, return_sequences=True)(h)
    h = keras.layers.GRU(6, return_sequences=True)(h)
    h = keras.layers.Bidirectional(keras.layers.SimpleRNN(4))(h)
    return keras.Model(ids, keras.layers.Dense(3)(h))


def build_attention(seed: int) -> keras.Model:
    """MultiHeadAttention + residual + LayerNorm + Dense(exact gelu), as a transformer block."""
    _fresh(seed)
    x = keras.Input((4, 8), name="tokens")
    h = keras.layers.LayerNormalization()(x + keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x))
    ff = keras.layers.Dense(8)(keras.layers.Dense(16, activation=lambda v: keras.activations.gelu(v, False))(h))
    return keras.Model(x, keras.layers.LayerNormalization()(h + ff))


def build_normalized(seed: int) -> keras.Model:
    """Normalization with adapted statistics and Rescaling: constants the layers close over."""
    _fresh(seed)
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(seed).normal(3.0, 2.0, size=(64, 5)).astype(np.float32))
    x = keras.Input((5,), name="features")
    h = keras.layers.Rescaling(0.5, offset=0.25)(norm(x))
    return keras.Model(x, keras.layers.Dense(2)(h))


def build_dict_io(seed: int) -> keras.Model:
    """Dict inputs (built in another order than the spec's) and dict outputs."""
    _fresh(seed)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    z = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([a, b]))
    return keras.Model({"b": b, "a": a}, {"score": keras.layers.Dense(1)(z), "probs": keras.layers.Dense(2)(z)})


class GrowWhileSmall(keras.layers.Layer):
    """Doubles h while max|h| < 10, at most 20 times: an input of zeros never ends on its own (the cap
    is far enough that no random case, max|h| of order 0.1 to 1, reaches it)."""

    def call(self, h):
        (h,) = tf.while_loop(lambda h: tf.reduce_max(tf.abs(h)) < 10.0, lambda h: (h * 2.0 + 0.0,), (h,),
                             maximum_iterations=20)
        return h


def build_capped_loop(seed: int) -> keras.Model:
    _fresh(seed)
    x = keras.Input((4,), name="x")
    return keras.Model(x, GrowWhileSmall()(keras.layers.Dense(4)(x)))


def build_determinant(seed: int) -> keras.Model:
    """tf.linalg.det: TFLite has no builtin for it (it needs TF Select ops)."""
    _fresh(seed)
    x = keras.Input((3, 3), name="m")
    h = keras.layers.Dense(3)(x)
    return keras.Model(x, keras.layers.Lambda(lambda v: tf.expand_dims(tf.linalg.det(v), -1))(h))


def build_broken(seed: int) -> keras.Model:
    raise RuntimeError("weights file /nowhere/w.h5 not found")


def build_unranged_ids(seed: int) -> keras.Model:
    """int32 ids that feed no Embedding: no range can be taken from the model."""
    _fresh(seed)
    ids = keras.Input((3,), dtype="int32", name="ids")
    return keras.Model(ids, keras.layers.Dense(1)(keras.ops.cast(ids, "float32")))


SPECS = {spec.name: spec for spec in (
    ModelSpec("rnn_stack", M + "build_rnn_stack", "Embedding(mask_zero) LSTM GRU Bidirectional(SimpleRNN)",
              (TensorSig("ids", (None, 6), "int32", range=(0, 40)),), (TensorSig("logits", (None, 3)),)),
    ModelSpec("attention", M + "build_attention", "MultiHeadAttention, LayerNorm, exact gelu",
              (TensorSig("tokens", (None, 4, 8)),), (TensorSig("encoded", (None, 4, 8)),)),
    ModelSpec("normalized", M + "build_normalized", "Normalization (adapted) and Rescaling",
              (TensorSig("features", (None, 5), range=(-3.0, 9.0)),), (TensorSig("y", (None, 2)),)),
    ModelSpec("dict_io", M + "build_dict_io", "dict inputs and outputs",
              (TensorSig("a", (None, 3)), TensorSig("b", (None, 2))),
              (TensorSig("probs", (None, 2)), TensorSig("score", (None, 1)))),
    ModelSpec("capped_loop", M + "build_capped_loop", "a tf.while_loop its cap can stop",
              (TensorSig("x", (None, 4)),), (TensorSig("y", (None, 4)),), control_flow=("Loop",)),
    ModelSpec("determinant", M + "build_determinant", "tf.linalg.det (no TFLite builtin)",
              (TensorSig("m", (None, 3, 3)),), (TensorSig("det", (None, 1)),)),
    ModelSpec("broken", M + "build_broken", "a builder that raises",
              (TensorSig("x", (None, 2)),), (TensorSig("y", (None, 1)),)),
    ModelSpec("unranged_ids", M + "build_unranged_ids", "int32 ids with no range",
              (TensorSig("ids", (None, 3), "int32"),), (TensorSig("y", (None, 1)),)),
)}


def _deep(seed: int) -> keras.Model:
    """Twelve Dense(16) + BatchNormalization blocks with small random kernels, then a softmax: at
    random init (moving mean 0, variance 1) each block shrinks its input about 12 times, so the
    logits end near 1e-14 and the softmax at 0.2 for every class and every input."""
    _fresh(seed)
    x = keras.Input((8,), name="x")
    h = x
    for _ in range(12):
        h = keras.layers.Dense(16, use_bias=False, kernel_initializer=keras.initializers.RandomNormal(stddev=0.02))(h)
        h = keras.layers.BatchNormalization()(h)
    return keras.Model(x, keras.layers.Dense(5, activation="softmax")(h))


def build_deep(seed: int) -> keras.Model:
    return _deep(seed)


def build_deep_calibrated(seed: int) -> keras.Model:
    """The same architecture with its BatchNormalization statistics taken from random inputs."""
    from tf_parity_export import calibrate_batch_norms

    model = _deep(seed)
    calibrate_batch_norms(model, seed=seed)
    return model


for _name, _builder in (("deep", "build_deep"), ("deep_calibrated", "build_deep_calibrated")):
    SPECS[_name] = ModelSpec(_name, M + _builder, "12 x (Dense(16) + BatchNormalization), softmax",
                             (TensorSig("x", (None, 8)),), (TensorSig("probs", (None, 5)),))
