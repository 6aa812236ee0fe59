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


class _Path:
    def __init__(self, data):
        self.data = data

    def to_json(self):
        return self.data


class MalformedProbe:
    """A probe whose paths lack what the verifier reads: `iterations` is not a count."""

    def __init__(self, model):
        self.pre_loop = lambda x: x  # the export's coverage search descends on the input's own norm

    def trace(self, inputs):
        return _Path({"iterations": "many", "branch": "kept", "margin": 0.5})


def malformed_probe(model):
    return MalformedProbe(model)


def exits(seed):
    import sys

    sys.exit(5)


def interrupts(seed):
    raise KeyboardInterrupt
