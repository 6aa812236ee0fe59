"""TF eager: the Keras model called directly. This is the reference."""

from __future__ import annotations

from .base import FnRuntime, Subject, require_model, to_numpy


def load(subject: Subject) -> FnRuntime:
    spec, model = subject.spec, require_model(subject)
    inputs = [t.name for t in spec.inputs]
    outputs = [t.name for t in spec.outputs]

    def infer(feed):
        args = [feed[n] for n in inputs]
        result = model(args[0] if len(args) == 1 else args)
        result = result if isinstance(result, (list, tuple)) else [result]
        return to_numpy(dict(zip(outputs, result, strict=True)))

    return FnRuntime("tf_eager", infer)
