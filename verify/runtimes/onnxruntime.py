"""onnxruntime, one runtime per execution provider (and CPU without graph optimizations)."""

from __future__ import annotations

from functools import partial

from tf_parity_export.models import ArtifactError

from ..layout import ONNX
from .base import FnRuntime, Subject, Unavailable


def load(subject: Subject, provider: str, optimize: bool = True, name: str = "") -> FnRuntime:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider not in available:
        raise Unavailable(f"{provider} is not in this onnxruntime build (has {', '.join(available)})")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    level = ort.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    path = subject.folder / ONNX
    try:
        session = ort.InferenceSession(str(path), options, providers=[provider])
    except Exception as e:  # onnxruntime raises its own untyped errors for bad files
        first = str(e).strip().splitlines()[0]
        raise ArtifactError(f"{subject.spec.name}: {ONNX} cannot be loaded by onnxruntime ({first})") from None
    if session.get_providers()[0] != provider:
        raise Unavailable(f"{provider} could not be initialised (session fell back to {session.get_providers()})")
    outputs = [o.name for o in session.get_outputs()]
    return FnRuntime(name, lambda feed: dict(zip(outputs, session.run(outputs, feed), strict=True)))


LOADERS = {
    "ort_cpu": partial(load, provider="CPUExecutionProvider", name="ort_cpu"),
    "ort_cpu_noopt": partial(load, provider="CPUExecutionProvider", optimize=False, name="ort_cpu_noopt"),
    "ort_cuda": partial(load, provider="CUDAExecutionProvider", name="ort_cuda"),
    "ort_tensorrt": partial(load, provider="TensorrtExecutionProvider", name="ort_tensorrt"),
}
