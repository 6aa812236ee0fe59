"""OpenVINO on the CPU, reading `model.onnx`: once in float32, once with the device's defaults.

On a CPU with AVX512_BF16 or AMX, OpenVINO's `INFERENCE_PRECISION_HINT`
defaults to bf16: the default is fast and visibly inexact (0.17 absolute on
chimera here). `openvino` asks for f32 and is held to the model's tolerance;
`openvino_default` keeps whatever the device picks and is measured.
"""

from __future__ import annotations

import functools
from functools import partial

import numpy as np

from tf_parity_export.models.errors import first_reason

from .. import deadline
from ..deadline import Stuck
from ..layout import ONNX
from .base import FnRuntime, Subject, Unavailable, Unsupported

INSTALL = "pip install 'tf-parity-export[openvino]'"
DEVICE = "CPU"
# OpenVINO's element type names, in the report's words
_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


@functools.cache
def _core():  # one Core per process: creating it scans for devices and plugins
    import openvino

    return openvino.Core()


def load(subject: Subject, name: str, hint: str | None) -> FnRuntime:
    """Compile `model.onnx` for the CPU; `hint` is the inference precision to ask for (None: the device's default)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise Unavailable(f"openvino is not installed ({INSTALL})") from None
    config = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
    try:
        compiled = _core().compile_model(str(subject.folder / ONNX), DEVICE, config)
    except RuntimeError as e:  # e.g. a tf2onnx Loop it cannot compile: the file is valid, OpenVINO lacks it
        raise Unsupported(f"OpenVINO cannot compile {ONNX}: {first_reason(e)}") from None
    chosen = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "f32", "bf16", "f16"
    chosen = _PRECISIONS.get(chosen, chosen)
    request = compiled.create_infer_request()
    outputs = [(o.get_any_name(), o) for o in compiled.outputs]

    def infer(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = request.infer(feed)
        return {n: np.array(result[o]) for n, o in outputs}  # copy: the request reuses its buffers

    stuck = []

    def bounded(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if stuck:
            raise Stuck(stuck[0])
        limit = deadline.seconds()
        request.start_async(feed)
        if not request.wait_for(int(limit * 1000)):
            request.cancel()  # taken between nodes: a loop that never ends may not notice
            if not request.wait_for(1000):
                stuck.append(f"{name}: a request that ran past the deadline of {limit:g} s is still running")
                deadline.abandon(request, compiled)
            raise deadline.DeadlineExceeded(name, limit)
        return {n: np.array(request.get_tensor(o).data) for n, o in outputs}

    return FnRuntime(name, infer, precision=chosen, bounded=bounded)


LOADERS = {
    "openvino": partial(load, name="openvino", hint="f32"),
    "openvino_default": partial(load, name="openvino_default", hint=None),
}
MODES = {"openvino_default": "auto"}
