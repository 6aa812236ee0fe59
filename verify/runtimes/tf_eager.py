"""TF eager: the Keras model called directly. This is the reference."""

from __future__ import annotations

from tf_parity_export.models.spec import call_model, named_outputs

from .base import FnRuntime, Subject, require_model, to_numpy


def load(subject: Subject) -> FnRuntime:
    spec, model = subject.spec, require_model(subject)
    inputs = [t.name for t in spec.inputs]
    outputs = [t.name for t in spec.outputs]

    def infer(feed):
        return to_numpy(named_outputs(call_model(model, spec, [feed[n] for n in inputs]), outputs))

    return FnRuntime("tf_eager", infer)
