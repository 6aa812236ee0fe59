"""LiteRT: `model.tflite` in the standalone `ai-edge-litert` interpreter (no TensorFlow needed)."""

from __future__ import annotations

import warnings

import numpy as np

from tf_parity_export.models import ArtifactError
from tf_parity_export.models.errors import first_reason
from tf_parity_export.models.lazy_tf import quiet_stderr

from ..deadline import OnThread
from ..layout import SERVING_SIGNATURE, TFLITE, format_state
from ..structure import tflite_checks
from .base import FnRuntime, Subject, Unavailable, Unsupported

INSTALL = "pip install 'tf-parity-export[litert]' (ai-edge-litert)"


def load(subject: Subject, preserve_all_tensors: bool = False) -> FnRuntime:
    """Run the "serving_default" signature with LiteRT's default CPU setup (XNNPACK, float32).

    A model whose `.tflite` could not be made (card.json `formats.litert`) is
    `Unsupported` with the converter's reason; one converted with a fixed
    batch of one row (Keras RNNs) is run one row at a time.
    `preserve_all_tensors` keeps every intermediate tensor readable after a run
    (`runtime.interpreter.get_tensor`), for localization; it costs memory.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise Unavailable(f"ai-edge-litert is not installed ({INSTALL})") from None
    spec = subject.spec
    state = format_state(subject.card, "litert")
    if state["status"] != "ok":
        raise Unsupported(f"the TFLite converter could not convert this model: {state['reason']}")
    try:
        with quiet_stderr(replay=False), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # preserving warns "for debugging purposes only": it is
            interpreter = Interpreter(model_path=str(subject.folder / TFLITE),
                                      experimental_preserve_all_tensors=preserve_all_tensors)
            signatures = interpreter.get_signature_list()
    except (ValueError, RuntimeError) as e:  # ops this interpreter lacks (TF Select ops), and the like
        raise Unsupported(f"LiteRT cannot load {TFLITE}: {first_reason(e)}") from None
    # LiteRT has no public call listing a model's ops; `_get_ops_details` is the one its own tools use.
    checks = tflite_checks(spec, signatures, {op["op_name"] for op in interpreter._get_ops_details()})
    if SERVING_SIGNATURE not in signatures:
        return FnRuntime("litert", _missing_signature, checks)
    runner = interpreter.get_signature_runner(SERVING_SIGNATURE)
    try:  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" on first run; a failure is one line below
        with quiet_stderr(replay=False):
            OnThread("litert")(lambda: runner(**{t.name: np.zeros((1, *t.shape[1:]), t.dtype) for t in spec.inputs}))
    except (ValueError, RuntimeError, KeyError, TypeError) as e:  # e.g. a signature that is not the spec's
        raise ArtifactError(f"{spec.name}: {TFLITE} cannot run its {SERVING_SIGNATURE!r} signature on the "
                            f"declared inputs in LiteRT ({first_reason(e)})") from None

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The runner resizes the dynamic batch itself; copy out of the interpreter's buffers.
        return {k: np.array(v) for k, v in runner(**feed).items()}

    if state.get("static_batch"):
        def infer(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            rows = [run({k: v[i:i + 1] for k, v in feed.items()}) for i in range(len(next(iter(feed.values()))))]
            return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    else:
        infer = run
    runtime = FnRuntime("litert", infer, checks)
    runtime.interpreter = interpreter  # type: ignore[attr-defined]  (localization reads its tensors)
    return runtime


def _missing_signature(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    raise RuntimeError(f"{TFLITE} has no {SERVING_SIGNATURE!r} signature")
