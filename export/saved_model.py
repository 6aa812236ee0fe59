"""SavedModel export: the serving function under the signature name "serving_default"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verify.layout import SERVING_SIGNATURE


def export_saved_model(model: Any, fn: Any, path: Path) -> None:
    """Write `fn` (a `tf.function` with a fixed input signature) as a SavedModel.

    Args:
        model: the Keras model whose variables `fn` reads; tracked so the
            weights (FancyMLP's constant included) are saved with it.
        fn: the serving function; its dict keys become the signature's outputs.
        path: the SavedModel directory to create.
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVING_SIGNATURE, fn)
    archive.write_out(str(path), verbose=False)
