"""The `tf.function` that the SavedModel serves and tf2onnx converts, traced in this process."""

from __future__ import annotations

from .base import FnRuntime, Subject, require_model, to_numpy


def load(subject: Subject) -> FnRuntime:
    fn = subject.spec.serving_function(require_model(subject))
    names = [t.name for t in subject.spec.inputs]
    return FnRuntime("tf_function", lambda feed: to_numpy(fn(*[feed[n] for n in names])))
