"""The serving function's frozen TensorFlow graph, as tf2onnx converts it.

The exporter converts this graph to ONNX, and the localizer fetches its
tensors by name (tf2onnx names each ONNX tensor after the TF tensor it came
from), so both must see the same graph: one function builds it for both.
It lives in `verify` because `export` may import `verify`, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tf_parity_export.models import ModelSpec
from tf_parity_export.models.lazy_tf import import_tensorflow, quiet_stderr


@dataclass
class FrozenGraph:
    """A frozen, grappler-optimised GraphDef and the names tf2onnx needs to convert it."""

    graph_def: Any
    inputs: list[str]  # TF tensor names of the signature's inputs, in spec order
    outputs: list[str]  # TF tensor names of the outputs
    renames: dict[str, str]  # TF tensor name -> signature name (inputs and outputs)


def freeze_serving_function(fn: Any, spec: ModelSpec) -> FrozenGraph:
    """Freeze `fn` (the serving `tf.function`) the way tf2onnx's `from_function` does, but
    with only the signature's own arguments as inputs.

    A concrete function lists the tensors it closes over (a `tf.constant`, the
    mean and variance Keras' `Normalization` keeps as plain tensors) after its
    arguments, as extra inputs. tf2onnx's public `from_function` passes all of
    them on as graph inputs, so each captured constant became an ONNX input
    the user must feed; freezing turns them into constants anyway, so only the
    arguments are inputs here (as tf2onnx's own SavedModel route does, which
    filters the captures out, but without loading the SavedModel back: 4 s
    instead of 13 s on EfficientNetB0).
    """
    tf = import_tensorflow()
    from tf2onnx import tf_loader
    from tf2onnx.convert import tensor_names_from_structed

    concrete = fn.get_concrete_function()
    inputs = [t.name for t in concrete.inputs[: len(spec.inputs)]]
    outputs = [t.name for t in concrete.outputs if t.dtype != tf.resource]
    renames = tensor_names_from_structed(concrete, inputs, outputs)
    with quiet_stderr(), tf.device("/cpu:0"):  # grappler logs from C++ on every run
        graph_def = _frozen_graph_def(concrete)
        with tf.Graph().as_default() as graph, tf_loader.tf_session(graph=graph) as session:
            tf.import_graph_def(graph_def, name="")
            inputs = tf_loader.inputs_without_resource(session, inputs)
            graph_def = tf_loader.tf_optimize(inputs, outputs, graph_def)
    return FrozenGraph(graph_def, inputs, outputs, renames)


def _frozen_graph_def(concrete: Any) -> Any:
    """The function's GraphDef with its variables as constants, as tf2onnx's `tf_loader.from_function`
    freezes it (`convert_variables_to_constants_v2`, control flow kept, functions inlined).

    That public call also builds a new concrete function from the frozen GraphDef, only for
    tf2onnx to take the GraphDef back out of it: 12 of the 20 s it takes on ResNet50. The two
    steps it is made of are called here directly, without that round trip.
    """
    from tensorflow.python.framework import convert_to_constants
    from tf2onnx import tf_loader

    data = convert_to_constants._FunctionConverterDataInEager(  # noqa: SLF001 (see the docstring)
        func=concrete, lower_control_flow=False, aggressive_inlining=True)
    graph_def, _ = convert_to_constants._replace_variables_by_constants(converter_data=data)  # noqa: SLF001
    return tf_loader.fix_freezing_errors_part2(graph_def)
