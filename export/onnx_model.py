"""ONNX export through tf2onnx's public API, then small canonicalising fixes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from models import ModelSpec, UserError
from models.lazy_tf import quiet_stderr

DEFAULT_OPSET = 17
BATCH = "batch"


def supported_opsets() -> list[int]:
    from tf2onnx.constants import OPSET_TO_IR_VERSION

    return [v for v in sorted(OPSET_TO_IR_VERSION) if v >= 13]


def export_onnx(fn: Any, spec: ModelSpec, path: Path, opset: int = DEFAULT_OPSET) -> Any:
    """Convert the serving `tf.function` to ONNX and write it to `path`.

    Converting the same `tf.function` the SavedModel serves keeps both
    artifacts one function. The input names come from the signature and the
    output names from the function's dict keys; tf2onnx names the dynamic
    batch dimension `unk__N`, which we rename to "batch".

    Returns:
        The `onnx.ModelProto` written.
    """
    import onnx
    import tf2onnx

    if opset not in supported_opsets():
        raise UserError(f"opset {opset} is not supported; tf2onnx {tf2onnx.__version__} "
                        f"converts opsets {supported_opsets()[0]}..{supported_opsets()[-1]}")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    with quiet_stderr():  # grappler logs "Starting new session" from C++ on every conversion
        model, _ = tf2onnx.convert.from_function(fn, input_signature=spec.input_signature(), opset=opset)
    _name_batch_dims(model, spec)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


def _name_batch_dims(model: Any, spec: ModelSpec) -> None:
    """Give every dynamic batch dimension the same readable name."""
    graph = model.graph
    renames = {}
    for values, sigs in ((graph.input, spec.inputs), (graph.output, spec.outputs)):
        for value, sig in zip(values, sigs, strict=True):
            for dim, want in zip(value.type.tensor_type.shape.dim, sig.shape):
                if want is None and dim.dim_param:
                    renames[dim.dim_param] = BATCH
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]
