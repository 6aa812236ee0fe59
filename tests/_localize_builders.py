"""Small real Keras models for the localization tests (imported by module:function).

A convolution (NHWC in TensorFlow, NCHW in ONNX: layouts to match), an attention
block (MultiHeadAttention and LayerNormalization: the ops tf2onnx writes as several
nodes), and a cancellation (an error within tolerance at one node, beyond it at the next).
"""

from __future__ import annotations


def _fresh(seed: int):
    from tf_parity_export.models.lazy_tf import import_tensorflow

    import_tensorflow()
    import keras

    keras.backend.clear_session(free_memory=False)  # the same layer names (TF tensor names) in every process
    keras.utils.set_random_seed(seed)
    return keras


def build_conv(seed: int):
    keras = _fresh(seed)
    image = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(4, 3, activation="relu")(image)
    h = keras.layers.Conv2D(6, 3)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(image, keras.layers.Dense(3)(h), name="conv")


def build_attention(seed: int):
    keras = _fresh(seed)
    tokens = keras.Input((4, 8), name="tokens")
    h = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(tokens, tokens)
    h = keras.layers.LayerNormalization()(tokens + h)
    return keras.Model(tokens, keras.layers.Dense(8)(h), name="attention")


def build_cancel(seed: int):
    """Dense with a bias of 1000, then minus 1000: a relative error of 1e-6 in the first
    (within tolerance) is a relative error of about 1e-3 in the second."""
    keras = _fresh(seed)
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(4, bias_initializer=keras.initializers.Constant(1000.0))(x)
    h = keras.layers.Rescaling(1.0, offset=-1000.0)(h)
    return keras.Model(x, keras.layers.Dense(2)(h), name="cancel")
