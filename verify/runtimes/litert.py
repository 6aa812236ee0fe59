"""LiteRT: `model.tflite` in the standalone `ai-edge-litert` interpreter (no TensorFlow needed)."""

from __future__ import annotations

import numpy as np

from tf_parity_export.models import ArtifactError
from tf_parity_export.models.lazy_tf import quiet_stderr

from ..deadline import OnThread
from ..layout import SERVING_SIGNATURE, TFLITE
from ..structure import tflite_checks
from .base import FnRuntime, Subject, Unavailable

INSTALL = "pip install 'tf-parity-export[litert]' (ai-edge-litert)"


def load(subject: Subject) -> FnRuntime:
    """Run the "serving_default" signature with LiteRT's default CPU setup (XNNPACK, float32)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise Unavailable(f"ai-edge-litert is not installed ({INSTALL})") from None
    spec = subject.spec
    try:
        interpreter = Interpreter(model_path=str(subject.folder / TFLITE))
        signatures = interpreter.get_signature_list()
    except (ValueError, RuntimeError) as e:
        raise ArtifactError(f"{spec.name}: {TFLITE} cannot be loaded by LiteRT ({str(e).strip().splitlines()[0]})") from None
    # LiteRT has no public call listing a model's ops; `_get_ops_details` is the one its own tools use.
    checks = tflite_checks(spec, signatures, {op["op_name"] for op in interpreter._get_ops_details()})
    if SERVING_SIGNATURE not in signatures:
        return FnRuntime("litert", _missing_signature, checks)
    runner = interpreter.get_signature_runner(SERVING_SIGNATURE)
    failed = None
    with quiet_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" on first run
        try:
            OnThread("litert")(lambda: runner(**{t.name: np.zeros((1, *t.shape[1:]), t.dtype) for t in spec.inputs}))
        except (ValueError, RuntimeError, KeyError, TypeError) as e:  # e.g. a signature that is not the spec's
            failed = e  # one line below; what LiteRT printed on the way is not replayed
    if failed is not None:
        first = str(failed).strip().splitlines()[0] if str(failed).strip() else type(failed).__name__
        raise ArtifactError(f"{spec.name}: {TFLITE} cannot run its {SERVING_SIGNATURE!r} signature on the "
                            f"declared inputs in LiteRT ({first})") from None

    def infer(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The runner resizes the dynamic batch itself; copy out of the interpreter's buffers.
        return {k: np.array(v) for k, v in runner(**feed).items()}

    return FnRuntime("litert", infer, checks)


def _missing_signature(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    raise RuntimeError(f"{TFLITE} has no {SERVING_SIGNATURE!r} signature")
