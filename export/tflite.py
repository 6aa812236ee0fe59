"""LiteRT (`.tflite`) export: TF's converter on the SavedModel's serving signature.

LiteRT is a deployment format: a model the converter cannot take is still
exported (SavedModel and ONNX are the core), and its card says why
(`formats.litert`: `unsupported` with the converter's reason).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

from tf_parity_export.models import ModelSpec
from tf_parity_export.models.errors import first_reason
from tf_parity_export.models.lazy_tf import import_tensorflow, quiet_stderr
from tf_parity_export.verify.layout import SERVING_SIGNATURE


def export_tflite(saved_model: Path, path: Path, spec: ModelSpec | None = None,
                  save_fixed_batch: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Convert the SavedModel's "serving_default" signature to a `.tflite` file.

    Converting the SavedModel (not the Keras model) keeps one function behind
    every artifact: the signature, input "x", the named outputs and the
    dynamic batch carry over, and `tf.while_loop`/`tf.cond` stay WHILE/IF ops.
    No optimizations are asked for, so the weights and the arithmetic stay
    float32. The bytes are the same in every process (checked by the tests).

    Where the converter cannot take the dynamic batch (Keras' LSTM/GRU/SimpleRNN
    loops keep a TensorList whose element shape holds the batch: "TensorListReserve
    op requires element_shape to be static") and the model computes each row
    alone (`spec`: every input and output keeps the batch dimension),
    `save_fixed_batch(dir)` writes the same function with a batch of one row
    as a SavedModel, and that is converted: the LiteRT runtime then runs one
    row at a time. TF Select ops would convert too, but the standalone LiteRT
    interpreter cannot run them.

    Args:
        saved_model: the SavedModel directory written by `export_saved_model`.
        path: the `.tflite` file to write (only when the conversion succeeds).
        spec, save_fixed_batch: for the fixed-batch fallback (none without them).

    Returns:
        The card's `formats.litert` entry: {"status": "ok"}, {"status": "ok",
        "static_batch": 1, "reason": why the dynamic batch failed}, or
        {"status": "unsupported", "reason": the converter's reason}.
    """
    try:
        Path(path).write_bytes(_convert(saved_model))
        return {"status": "ok"}
    except Exception as e:  # the converter's own errors (ConverterError, ValueError, ...) are its reason
        reason = first_reason(e)
    if spec is None or save_fixed_batch is None or not _row_wise(spec):
        return {"status": "unsupported", "reason": reason}
    fixed = Path(path).with_name(f".{Path(path).name}.fixed-batch")
    try:
        save_fixed_batch(fixed)
        Path(path).write_bytes(_convert(fixed))
    except Exception as e:
        return {"status": "unsupported", "reason": f"{reason}; with a fixed batch of one row: {first_reason(e)}"}
    finally:
        shutil.rmtree(fixed, ignore_errors=True)
    return {"status": "ok", "static_batch": 1, "reason": reason}


def _row_wise(spec: ModelSpec) -> bool:
    return all(t.shape[:1] == (None,) for t in (*spec.inputs, *spec.outputs))


def _convert(saved_model: Path) -> bytes:
    tf = import_tensorflow()
    from tensorflow.lite.python import lite

    # After loading the SavedModel the converter drops it and calls gc.collect()
    # to free a large model's memory at once. In a process that holds TensorFlow,
    # Keras and five models that one full collection costs 0.15-0.3 s a model,
    # half the conversion; ordinary garbage collection frees the same memory.
    # The converter logs every pass from C++; on failure its exception says why,
    # and the pages of MLIR locations it printed are not replayed.
    with quiet_stderr(replay=False), _without_full_collection(lite):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SERVING_SIGNATURE])
        data = converter.convert()
    _check_runs(data)
    return data


def _check_runs(data: bytes) -> None:
    """Raise LiteRT's reason when it cannot prepare the model (ops it lacks), where LiteRT is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return  # the verifier's litert runtime is then unavailable anyway
    with quiet_stderr(replay=False):
        Interpreter(model_content=data).allocate_tensors()


@contextlib.contextmanager
def _without_full_collection(module: Any) -> Iterator[None]:
    """Within the block, `module`'s own `gc.collect()` does nothing (the real `gc` is untouched)."""

    class NoFullCollection:
        @staticmethod
        def collect(*args: object) -> int:
            return 0

    saved = module.gc
    module.gc = NoFullCollection
    try:
        yield
    finally:
        module.gc = saved
