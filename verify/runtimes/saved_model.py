"""The SavedModel reloaded from disk, called through its serving signature."""

from __future__ import annotations

from tf_parity_export.models import ArtifactError
from tf_parity_export.models.lazy_tf import import_tensorflow

from ..layout import SAVED_MODEL, SERVING_SIGNATURE
from ..structure import saved_model_checks
from .base import FnRuntime, Subject, require_model, to_numpy


def load(subject: Subject) -> FnRuntime:
    require_model(subject)
    tf = import_tensorflow()
    path = subject.folder / SAVED_MODEL
    try:
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures[SERVING_SIGNATURE]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{subject.spec.name}: {SAVED_MODEL}/ cannot be loaded ({first})") from None

    def infer(feed):
        return to_numpy(signature(**{k: tf.constant(v) for k, v in feed.items()}))

    return FnRuntime("saved_model", infer, saved_model_checks(subject.spec, signature))
