"""models/errors.py: the one line a failing tool's exception becomes (export stages, runtime loaders)."""

from __future__ import annotations

import pytest

from tf_parity_export.models.errors import first_reason
from tf_parity_export.models.spec import named_outputs

TFLITE = ("""loc(callsite(fused["TensorListReserve:", callsite("m/lstm/TensorArrayV2_1@__inference_serve_273"("/a/b.py":20:1)"""
          """ at "/k/rnn.py":268:1)]))): error: 'tf.TensorListReserve' op requires element_shape to be static during """
          """TF Lite transformation pass\n<unknown>:0: note: loc(fused["StatefulPartitionedCall:"]): called from\n"""
          """<unknown>:0: error: Lowering tensor list ops is failed.""")
OPENVINO = ("Exception from src/inference/src/cpp/core.cpp:132:\nException from src/inference/src/dev/plugin.cpp:59:\n"
            "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
            "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted. Failed operations detailed log:\n"
            "-- Loop-17 with a message:\nCheck '(a >= b)' failed at src/frontends/onnx/frontend/src/op/loop.cpp:310:\n"
            "While validating ONNX node '<Node(Loop): t20>':\nThe provided loop body graph canonical inputs size (7), "
            "does not match the sum of loop carried dependencies and two mandatory inputs (5)\n\nSummary:\n")


@pytest.mark.parametrize("message,want", [
    (TFLITE, "'tf.TensorListReserve' op requires element_shape to be static during TF Lite transformation pass"),
    ("<unknown>:0: error: loc(\"x\"): 'tf.MatrixDeterminant' op is neither a custom op nor a flex op",
     "'tf.MatrixDeterminant' op is neither a custom op nor a flex op"),
    (OPENVINO, "Loop-17: The provided loop body graph canonical inputs size (7), does not match the sum of loop "
               "carried dependencies and two mandatory inputs (5)"),
    ("Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed at src/frontends/common_translators/"
     "src/unconverted_ops_report.cpp:151:\nFrontEnd API failed with OpConversionFailure:\nModel wasn't fully "
     "converted.\nSummary:\n-- No conversion rule found for operations: Det-17\n",
     "No conversion rule found for operations: Det-17"),
    ("Traceback (most recent call last):\n  File \"x.py\", line 3, in f\nValueError: bad", "ValueError: bad"),
    ("all of it is a header:", "all of it is a header"),
    ("  spread\n over   lines  ", "spread"),
])
def test_the_first_line_that_says_why(message, want):
    assert first_reason(RuntimeError(message)) == want


def test_no_message_names_the_exception_and_long_ones_are_cut():
    assert first_reason(KeyError()) == "KeyError"
    assert first_reason(RuntimeError("Exception from a.cpp:1:")) == "RuntimeError"
    long = first_reason(RuntimeError("x" * 1000))
    assert len(long) == 400 and long.endswith("...")
    assert first_reason(RuntimeError("a\tb   c\rnext")) == "a b c"  # one line, whatever the tool printed


def test_outputs_are_matched_by_name_or_by_position():
    assert named_outputs({"b": 2, "a": 1}, ["a", "b"]) == {"a": 1, "b": 2}
    assert named_outputs([1, 2], ["a", "b"]) == {"a": 1, "b": 2}
    assert named_outputs((1, 2), ["a", "b"]) == {"a": 1, "b": 2}
    assert named_outputs(7, ["y"]) == {"y": 7}
    with pytest.raises(ValueError, match=r"returns a dict with keys \['a', 'c'\], the spec declares outputs \['a', 'b'\]"):
        named_outputs({"a": 1, "c": 2}, ["a", "b"])
    with pytest.raises(ValueError, match=r"returns 1 outputs, the spec declares 2: \['a', 'b'\]"):
        named_outputs([1], ["a", "b"])
