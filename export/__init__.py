"""Exporters (SavedModel, ONNX), the atomic artifact writer and `export-models`."""

from .api import export_models

__all__ = ["export_models"]
