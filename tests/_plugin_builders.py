"""Builders for the plugin tests' misbehaving models (imported by module:function)."""

from __future__ import annotations


def raises(seed):
    raise RuntimeError("no weights file at /nowhere")


def not_a_model(seed):
    return 42


def unbuilt(seed):
    from tf_parity_export.models.lazy_tf import import_tensorflow

    import_tensorflow()
    import keras

    return keras.Sequential([keras.layers.Dense(3)])


def exits(seed):
    import sys

    sys.exit(5)


def interrupts(seed):
    raise KeyboardInterrupt
