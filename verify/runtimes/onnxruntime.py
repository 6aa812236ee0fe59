"""onnxruntime, one runtime per execution provider and numeric mode (and CPU without graph optimizations).

GPU providers do not compute in float32 by default: the CUDA provider's
`use_tf32` defaults to on (TF32 rounds matrix-product inputs to 10 mantissa
bits on Ampere and newer), and TensorRT is commonly run in fp16. So each
gets two runtimes: the exact one (`ort_cuda`: `use_tf32=0`; `ort_tensorrt`:
`trt_fp16_enable=False`) and the fast one, measured as reduced precision.
TensorRT hands the nodes it cannot build to CUDA, with TF32 off.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from tf_parity_export.models import ArtifactError

from ..deadline import ort_run
from ..layout import ONNX
from .base import FnRuntime, Subject, Unavailable

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
CUDA_FP32 = (CUDA, {"use_tf32": "0"})
CUDA_TF32 = (CUDA, {"use_tf32": "1"})
TENSORRT_FP32 = (TENSORRT, {"trt_fp16_enable": "False"})
TENSORRT_FP16 = (TENSORRT, {"trt_fp16_enable": "True"})


# onnxruntime's logger prints a coloured, timestamped line to stderr for every failed
# run ("[E:onnxruntime:, sequential_executor.cc ...] Non-zero status code"), beside
# the one `error:` line that reports the same failure with the exception's text.
# FATAL (4) keeps only what would end the process; everything else reaches the
# report through the exception.
QUIET = 4


def session_options(optimize: bool = True) -> Any:
    """SessionOptions that log nothing below FATAL, with all or no graph optimizations;
    silences onnxruntime's default (process-wide) logger too, which sessions start with."""
    import onnxruntime as ort

    ort.set_default_logger_severity(QUIET)
    options = ort.SessionOptions()
    options.log_severity_level = QUIET
    level = ort.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    return options


def load(subject: Subject, providers: list[tuple[str, dict[str, str]]], optimize: bool = True,
         name: str = "") -> FnRuntime:
    """An InferenceSession on `providers` (name, provider options), the first of which must run the graph."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    provider = providers[0][0]
    if provider not in available:
        raise Unavailable(f"{provider} is not in this onnxruntime build (has {', '.join(available)})")
    options = session_options(optimize)
    path = subject.folder / ONNX
    try:
        session = ort.InferenceSession(str(path), options, providers=[p for p, _ in providers],
                                       provider_options=[o for _, o in providers])
    except Exception as e:  # onnxruntime raises its own untyped errors for bad files
        first = str(e).strip().splitlines()[0]
        raise ArtifactError(f"{subject.spec.name}: {ONNX} cannot be loaded by onnxruntime ({first})") from None
    if session.get_providers()[0] != provider:
        raise Unavailable(f"{provider} could not be initialised (session fell back to {session.get_providers()})")
    outputs = [o.name for o in session.get_outputs()]
    return FnRuntime(name, lambda feed: dict(zip(outputs, session.run(outputs, feed), strict=True)),
                     bounded=lambda feed: dict(zip(outputs, ort_run(session, outputs, feed, name), strict=True)))


def _entry(name: str, *providers: tuple[str, dict[str, str]], optimize: bool = True) -> tuple[str, Any]:
    return name, partial(load, providers=list(providers), optimize=optimize, name=name)


LOADERS = dict([
    _entry("ort_cpu", (CPU, {})),
    _entry("ort_cpu_noopt", (CPU, {}), optimize=False),
    _entry("ort_cuda", CUDA_FP32),
    _entry("ort_cuda_tf32", CUDA_TF32),
    _entry("ort_tensorrt", TENSORRT_FP32, CUDA_FP32),
    _entry("ort_tensorrt_fp16", TENSORRT_FP16, CUDA_FP32),
])
MODES = {"ort_cuda_tf32": "tf32", "ort_tensorrt_fp16": "fp16"}
