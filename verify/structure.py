"""Structure checks: the artifacts expose exactly the signature, and control flow survived."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tf_parity_export.models import ArtifactError, ModelSpec

from .layout import ONNX, SERVING_SIGNATURE

_ONNX_DTYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "detail": self.detail}


def _dims(value_info: Any) -> tuple[Any, ...]:
    return tuple(d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim)


def _expected(sig: Any) -> tuple[str, str, tuple[Any, ...]]:
    return sig.name, sig.dtype, tuple("batch" if d is None else d for d in sig.shape)


def onnx_checks(spec: ModelSpec, folder: Path) -> list[Check]:
    """Inputs/outputs equal the signature (names, dtypes, dims with the batch
    dimension named "batch"; an extra input is a leaked captured constant),
    the model's control-flow ops are present (not unrolled), and onnx's
    full checker passes."""
    import onnx

    try:
        model = onnx.load(str(folder / ONNX))
    except Exception as e:  # DecodeError and friends on a corrupted file
        raise ArtifactError(f"{spec.name}: {ONNX} cannot be parsed ({type(e).__name__})") from None
    graph = model.graph

    def io(values: Any) -> list[tuple[str, str, tuple[Any, ...]]]:
        return [(v.name, _ONNX_DTYPES.get(v.type.tensor_type.elem_type, "?"), _dims(v)) for v in values]

    def same(name: str, want: list[Any], got: list[Any], hint: str = "") -> Check:
        return Check(name, True, f"{want}") if want == got else Check(name, False, f"expected {want}, found {got}{hint}")

    want_in = [_expected(t) for t in spec.inputs]
    got_in = io(graph.input)
    leaked = " (a captured constant leaked out as an input?)" if len(got_in) > len(want_in) else ""
    ops = {n.op_type for n in graph.node}
    missing = [op for op in spec.control_flow if op not in ops]
    checks = [
        same("onnx_inputs", want_in, got_in, leaked),
        same("onnx_outputs", [_expected(t) for t in spec.outputs], io(graph.output)),
        Check("onnx_control_flow", not missing,
              f"missing {missing}" if missing else f"has {list(spec.control_flow) or 'no control flow (none expected)'}"),
    ]
    try:
        onnx.checker.check_model(model, full_check=True)
        checks.append(Check("onnx_checker", True, "onnx.checker full_check passed"))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:  # full_check infers types
        checks.append(Check("onnx_checker", False, str(e).splitlines()[0]))
    return checks


def saved_model_checks(spec: ModelSpec, signature: Any) -> list[Check]:
    """The serving signature's input and output keys equal the spec's names."""
    _, kwargs = signature.structured_input_signature
    got_in = sorted(kwargs)
    got_out = sorted(signature.structured_outputs)
    want_in = sorted(t.name for t in spec.inputs)
    want_out = sorted(t.name for t in spec.outputs)
    return [
        Check("saved_model_inputs", got_in == want_in, f"expected {want_in}, found {got_in}"),
        Check("saved_model_outputs", got_out == want_out, f"expected {want_out}, found {got_out}"),
    ]


# The ONNX control-flow op each TFLite op stands for (the converter keeps tf.while_loop/tf.cond as WHILE/IF).
TFLITE_CONTROL_FLOW = {"Loop": "WHILE", "If": "IF"}


def tflite_checks(spec: ModelSpec, signatures: dict[str, Any], ops: set[str]) -> list[Check]:
    """`model.tflite` serves "serving_default" with the spec's input and output names, and keeps
    the model's control flow as WHILE/IF ops (not unrolled).

    Args:
        signatures: LiteRT's `get_signature_list()`: {key: {"inputs": [...], "outputs": [...]}}.
        ops: the op names in the model's graphs.
    """
    sig = signatures.get(SERVING_SIGNATURE)
    want_in = sorted(t.name for t in spec.inputs)
    want_out = sorted(t.name for t in spec.outputs)
    want_ops = [TFLITE_CONTROL_FLOW.get(op, op) for op in spec.control_flow]
    missing = [op for op in want_ops if op not in ops]
    if sig is None:
        return [Check("tflite_signature", False, f"no {SERVING_SIGNATURE!r} signature (has {sorted(signatures)})")]
    got_in, got_out = sorted(sig["inputs"]), sorted(sig["outputs"])
    return [
        Check("tflite_inputs", got_in == want_in, f"expected {want_in}, found {got_in}"),
        Check("tflite_outputs", got_out == want_out, f"expected {want_out}, found {got_out}"),
        Check("tflite_control_flow", not missing,
              f"missing {missing}" if missing else f"has {want_ops or 'no control flow (none expected)'}"),
    ]
