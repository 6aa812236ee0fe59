"""LiteRT (`.tflite`) export: TF's converter on the SavedModel's serving signature."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from tf_parity_export.models.lazy_tf import import_tensorflow, quiet_stderr
from tf_parity_export.verify.layout import SERVING_SIGNATURE


def export_tflite(saved_model: Path, path: Path) -> None:
    """Convert the SavedModel's "serving_default" signature to a `.tflite` file.

    Converting the SavedModel (not the Keras model) keeps one function behind
    every artifact: the signature, input "x", the named outputs and the
    dynamic batch carry over, and `tf.while_loop`/`tf.cond` stay WHILE/IF ops.
    No optimizations are asked for, so the weights and the arithmetic stay
    float32. The bytes are the same in every process (checked by the tests).

    Args:
        saved_model: the SavedModel directory written by `export_saved_model`.
        path: the `.tflite` file to write.
    """
    tf = import_tensorflow()
    from tensorflow.lite.python import lite

    # After loading the SavedModel the converter drops it and calls gc.collect()
    # to free a large model's memory at once. In a process that holds TensorFlow,
    # Keras and five models that one full collection costs 0.15-0.3 s a model,
    # half the conversion; ordinary garbage collection frees the same memory.
    with quiet_stderr(), _without_full_collection(lite):  # the converter logs every pass from C++
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SERVING_SIGNATURE])
        data = converter.convert()
    Path(path).write_bytes(data)


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
