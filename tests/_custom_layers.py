"""A custom Keras layer, registered for saving: `--custom-module _custom_layers` makes a .keras file
that uses it loadable (tests/test_model_files.py)."""

from tf_parity_export.models.lazy_tf import import_tensorflow

import_tensorflow()
import keras  # noqa: E402


@keras.saving.register_keras_serializable(package="tests")
class Squash(keras.layers.Layer):
    """x / (1 + |x|), elementwise."""

    def call(self, x):
        return x / (1.0 + keras.ops.abs(x))
