"""A runtime's or a plugin's fault is one line about it, never the end of the run."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from conftest import resign_folder
from test_plugins import SPEC_HEAD, fake_distribution, run
from tf_parity_export.models import MODELS, get_spec, plugins
from tf_parity_export.models.errors import ExportError
from tf_parity_export.verify import layout, verify_models


def _tflite(path: Path, name: str, width: int) -> None:
    """A real LiteRT model whose "serving_default" signature takes one input `name` of `width` columns
    (a SavedModel through TF's converter, as the exporter makes them)."""
    from tf_parity_export.models.lazy_tf import import_tensorflow

    tf = import_tensorflow()
    module = tf.Module()
    module.serve = tf.function(lambda t: {"logits": tf.matmul(t, tf.ones((width, 10)))},
                               input_signature=[tf.TensorSpec((None, width), tf.float32, name=name)])
    saved = path.parent.parent / f"saved-{name}-{width}"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serving_default"])
    path.write_bytes(converter.convert())


@pytest.mark.parametrize("name,width", [("y", 20), ("x", 7)], ids=["other-input-name", "other-width"])
def test_a_resigned_tflite_that_litert_cannot_run_is_that_runtimes_error(copy_of, name, width):
    """LiteRT's first call (in its loader) raises on a model.tflite whose signature is not the spec's: one
    line for litert on that model; every other runtime and model still reports."""
    copy_of("nest_mlp")
    root = copy_of("mlp")
    _tflite(root / "mlp" / layout.TFLITE, name, width)
    resign_folder(root / "mlp")
    rep = verify_models(["mlp", "nest_mlp"], root, runtimes=["litert", "ort_cpu"])
    mlp, nest = rep.models
    state = mlp.runtimes["litert"]
    assert state.startswith("error: mlp: model.tflite cannot run its 'serving_default' signature on the declared "
                            "inputs in LiteRT (") and "\n" not in state, state
    assert mlp.runtimes["ort_cpu"] == "ran" and nest.runtimes == {"litert": "ran", "ort_cpu": "ran"}
    assert f"mlp/litert: {state}" in rep.failures()
    assert not [line for line in rep.failures() if line.startswith("nest_mlp")]


def test_bench_with_a_runtime_failing_at_inference_is_a_row(copy_of):
    """A model.onnx that loads but fails on every batch (a Reshape to rows of 7 of 256 columns, re-signed):
    the runtimes that fail are ERROR rows and FAILED lines, the others are timed, no traceback."""
    from tf_parity_export.verify.cli import main

    root = copy_of("mlp")
    path = root / "mlp" / layout.ONNX
    model = onnx.load(str(path))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    hidden = relu.output[0]
    relu.output[0] = "hidden_raw"
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.array([-1, 7], np.int64), "rows_of_7"),
                                    onnx.numpy_helper.from_array(np.array([-1, 256], np.int64), "rows_of_256")])
    at = list(model.graph.node).index(relu) + 1
    model.graph.node.insert(at, onnx.helper.make_node("Reshape", ["hidden_raw", "rows_of_7"], ["hidden_7"]))
    model.graph.node.insert(at + 1, onnx.helper.make_node("Reshape", ["hidden_7", "rows_of_256"], [hidden]))
    onnx.save(model, str(path))
    resign_folder(root / "mlp")
    result = CliRunner().invoke(main, ["mlp", "--artifacts", str(root), "--bench", "--providers",
                                       "ort_cpu_noopt,onnx_reference,litert"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    rows = {line.split()[1]: line.split()[2] for line in result.stdout.splitlines() if line.startswith("mlp ")}
    assert rows["ort_cpu_noopt"] == "ERROR" and rows["onnx_reference"] == "ERROR"
    assert rows["litert"] != "ERROR" and rows["tf_eager"] != "ERROR"  # its model.tflite is intact: timed
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED: ")]
    assert [line.split(" (")[0] for line in failed] == ["FAILED: mlp/ort_cpu_noopt: fails at inference on batch 1",
                                                        "FAILED: mlp/onnx_reference: fails at inference on batch 1"]


PLUGIN_FAULTS = {
    "exit": "import sys\nsys.exit(5)\n",
    "interrupt": "raise KeyboardInterrupt\n",
}


@pytest.mark.parametrize("fault", list(PLUGIN_FAULTS))
def test_a_plugin_whose_import_exits_or_interrupts_is_one_line(tmp_path, fault):
    """`sys.exit(5)` or KeyboardInterrupt raised by a plugin's module is that plugin's failure (one line);
    the real Ctrl-C is a signal, taken apart. Every other model still lists."""
    site = tmp_path / "site"
    fake_distribution(site, "faulty-plugin", {"faulty": "faulty_spec:SPEC"}, {"faulty_spec": PLUGIN_FAULTS[fault]})
    result = run("export", ["--list"], site)
    assert result.returncode == 1, (result.returncode, result.stderr)
    kind = "SystemExit: 5" if fault == "exit" else "KeyboardInterrupt: (no message)"
    assert result.stderr.splitlines() == [
        f"error: plugin entry point 'faulty' (faulty_spec:SPEC) of distribution faulty-plugin 1.0: cannot be loaded "
        f"({kind})"]
    assert [line.split()[0] for line in result.stdout.splitlines()] == list(MODELS)


@pytest.mark.parametrize("builder,kind", [("_plugin_builders:exits", "SystemExit: 5"),
                                          ("_plugin_builders:interrupts", "KeyboardInterrupt: (no message)")])
def test_a_plugin_builder_that_exits_or_interrupts_is_one_line(monkeypatch, tmp_path, builder, kind):
    from tf_parity_export.export import export_models

    spec = dataclasses.replace(get_spec("mlp"), name="quits", builder=builder)
    monkeypatch.setitem(MODELS, spec.name, spec)
    monkeypatch.setitem(plugins.ORIGINS, spec.name, plugins.Origin(spec.name, "tests:SPEC", "test-plugin 1.0"))
    with pytest.raises(ExportError) as e:
        export_models(["quits"], tmp_path / "a", verify=False)
    assert str(e.value) == (f"quits (plugin entry point 'quits' (tests:SPEC) of distribution test-plugin 1.0): "
                            f"builder {builder} raised {kind}")
