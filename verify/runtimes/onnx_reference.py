"""onnx's own reference evaluator (`onnx.reference`): a second, independent ONNX implementation."""

from __future__ import annotations

from tf_parity_export.models import ArtifactError

from ..layout import ONNX
from .base import FnRuntime, Subject, to_numpy


def load(subject: Subject) -> FnRuntime:
    import onnx
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(onnx.load(str(subject.folder / ONNX)))
    except Exception as e:  # onnx raises DecodeError and others for bad files
        raise ArtifactError(f"{subject.spec.name}: {ONNX} cannot be parsed ({type(e).__name__})") from None
    outputs = list(evaluator.output_names)
    return FnRuntime("onnx_reference", lambda feed: to_numpy(dict(zip(outputs, evaluator.run(None, feed), strict=True))))
