"""The entry point: a ModelSpec. This module imports no TensorFlow, so listing
models stays fast; the builder ("module:function") is imported only to build."""

from tf_parity_export import ModelSpec, TensorSig

SPEC = ModelSpec(
    name="gated_decay",
    builder="my_parity_plugin.model:build_gated_decay",
    summary="Dense(8), divide by 3 while max|h| > 4, then a sign-gated branch",
    inputs=(TensorSig("x", (None, 6)),),
    outputs=(TensorSig("y", (None, 8)),),
    control_flow=("Loop", "If"),  # the ONNX graph must keep them (not unrolled)
    # no probe: tf-parity-export measures the control flow on the exported graph
)
