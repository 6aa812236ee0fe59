"""Every runtime the verifier knows, in report order, and its numeric mode. The first is the reference."""

from __future__ import annotations

from . import litert, node, onnx_reference, saved_model, tf_eager, tf_function, web
from .base import EXACT, REDUCED, Loader, RunScope, Runtime, Subject, Unavailable, Unsupported
from .onnxruntime import LOADERS as ORT_LOADERS
from .onnxruntime import MODES as ORT_MODES
from .openvino import LOADERS as OPENVINO_LOADERS
from .openvino import MODES as OPENVINO_MODES

REFERENCE = "tf_eager"

RUNTIMES: dict[str, Loader] = {
    REFERENCE: tf_eager.load,
    "tf_function": tf_function.load,
    "saved_model": saved_model.load,
    **ORT_LOADERS,
    "onnx_reference": onnx_reference.load,
    "ort_node": node.load,
    "ort_web": web.load,
    "litert": litert.load,
    **OPENVINO_LOADERS,
}

# Runtimes that do not compute in float32 by default; every other one is exact ("fp32").
MODES: dict[str, str] = {**ORT_MODES, **OPENVINO_MODES}
assert set(MODES) <= set(RUNTIMES) and set(MODES.values()) <= set(REDUCED)


# Runtimes whose costly service can start in the background before the first model needs it.
WARM_UPS = {"ort_node": node.warm_up, "ort_web": web.warm_up}


def warm_up(scope: RunScope, names: list[str]) -> None:
    """Start the shared services of the named runtimes now, in the background (the browser takes a second)."""
    for name in names:
        if name in WARM_UPS:
            WARM_UPS[name](scope)


def mode(name: str) -> str:
    """The numeric mode of a runtime: "fp32" (exact) or a reduced one ("bf16", "tf32", "fp16", "auto")."""
    return MODES.get(name, EXACT)


__all__ = ["EXACT", "MODES", "REDUCED", "REFERENCE", "RUNTIMES", "RunScope", "Runtime", "Subject", "Unavailable",
           "Unsupported", "mode", "warm_up"]
