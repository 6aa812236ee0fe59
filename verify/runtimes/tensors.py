"""Tensors as raw bytes with their onnxruntime type name, for the runtimes in other processes (Node, the browser).

Bytes are little-endian and exactly the array's, so a runtime's output is
compared bit for bit, whatever its dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# onnxruntime-node's / onnxruntime-web's tensor type name -> numpy dtype
DTYPES = {
    "float32": np.dtype("<f4"), "float64": np.dtype("<f8"), "float16": np.dtype("<f2"),
    "int8": np.dtype("i1"), "uint8": np.dtype("u1"), "int16": np.dtype("<i2"), "uint16": np.dtype("<u2"),
    "int32": np.dtype("<i4"), "uint32": np.dtype("<u4"), "int64": np.dtype("<i8"), "uint64": np.dtype("<u8"),
    "bool": np.dtype("?"),
}
_NAMES = {dtype.newbyteorder("="): name for name, dtype in DTYPES.items()}


def type_name(array: np.ndarray) -> str:
    """The onnxruntime type name of `array`'s dtype; a TypeError for one the JavaScript runtimes cannot take."""
    name = _NAMES.get(array.dtype.newbyteorder("="))
    if name is None:
        raise TypeError(f"a {array.dtype} tensor cannot be passed to onnxruntime in JavaScript "
                        f"(types: {', '.join(DTYPES)})")
    return name


def to_wire(array: np.ndarray) -> tuple[dict[str, Any], memoryview]:
    """(type and dims, the little-endian bytes) of `array`, without a copy where it is already so laid out."""
    name = type_name(array)
    data = np.ascontiguousarray(array, DTYPES[name])
    return {"type": name, "dims": list(array.shape)}, memoryview(data.reshape(-1).view(np.uint8))


def from_wire(type_: str, dims: list[int], data: bytes | bytearray | memoryview) -> np.ndarray:
    """The array a runtime sent back: its own dtype, its own shape."""
    if type_ not in DTYPES:
        raise TypeError(f"the runtime returned a tensor of type {type_!r}, which cannot be compared here")
    return np.frombuffer(data, DTYPES[type_]).reshape(dims).astype(DTYPES[type_].newbyteorder("="), copy=False)
