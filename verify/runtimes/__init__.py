"""Every runtime the verifier knows, in report order. The first is the reference."""

from __future__ import annotations

from . import node, onnx_reference, saved_model, tf_eager, tf_function, web
from .base import Loader, RunScope, Runtime, Subject, Unavailable
from .onnxruntime import LOADERS as ORT_LOADERS

REFERENCE = "tf_eager"

RUNTIMES: dict[str, Loader] = {
    REFERENCE: tf_eager.load,
    "tf_function": tf_function.load,
    "saved_model": saved_model.load,
    **ORT_LOADERS,
    "onnx_reference": onnx_reference.load,
    "ort_node": node.load,
    "ort_web": web.load,
}

__all__ = ["REFERENCE", "RUNTIMES", "RunScope", "Runtime", "Subject", "Unavailable"]
