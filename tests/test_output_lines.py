"""What reaches the terminal (issue 20, item 6): one line per error whatever a file name holds,
no onnxruntime log lines beside them, a plugin's escape sequences shown escaped; a plugin probe's
malformed path and a declared input too wide to store are one line each, not a traceback."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from test_plugins import SPEC_HEAD, fake_distribution, run
from tf_parity_export.models import TensorSig, get_spec
from tf_parity_export.models.errors import ExportError
from tf_parity_export.verify import layout, verify_models
from tf_parity_export.verify.cli import main as verify_main


def test_onnxruntime_logs_nothing_beside_the_error_lines(copy_of, resign, capfd):
    """fancy_mlp with a Reshape no batch of 20 inputs divides into ([3, -1]) feeding its output: the model
    loads, every run fails, in ort_cpu's session and in the coverage measurement's. onnxruntime's own
    logger printed a coloured line to stderr for each; the failures are in the report, once each."""
    root = copy_of("fancy_mlp")
    folder = root / "fancy_mlp"
    model = onnx.load(str(folder / layout.ONNX))
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = ["pre_" + o if o == out else o for o in node.output]
    model.graph.initializer.extend([numpy_helper.from_array(np.array([3, -1], np.int64), "odd_shape"),
                                    numpy_helper.from_array(np.array(0, np.float32), "zero")])
    model.graph.node.extend([helper.make_node("Reshape", ["x", "odd_shape"], ["odd"]),
                             helper.make_node("ReduceSum", ["odd"], ["odd_sum"], keepdims=0),
                             helper.make_node("Mul", ["odd_sum", "zero"], ["nothing"]),
                             helper.make_node("Add", ["pre_" + out, "nothing"], [out])])
    onnx.save(model, str(folder / layout.ONNX))
    resign(folder)
    capfd.readouterr()
    report = verify_models(["fancy_mlp"], root, runtimes=["ort_cpu"])
    err = capfd.readouterr().err
    assert {r.status for r in report.models[0].results} == {"error"}  # it did fail, on every case
    assert "onnxruntime" not in err and "\x1b[" not in err, err[:500]


def test_a_newline_in_a_path_stays_on_one_line(tmp_path):
    inputs = tmp_path / "mine\nerror: all good.npz"
    result = CliRunner().invoke(verify_main, ["mlp", "--inputs", str(inputs)])
    assert result.exit_code == 1 and result.output.splitlines() == [f"error: {str(inputs)!r}: no such file"]
    artifacts = tmp_path / "art\nfacts"
    result = CliRunner().invoke(verify_main, ["mlp", "--artifacts", str(artifacts), "--providers", "ort_cpu"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: mlp: no artifact folder at {str(artifacts / 'mlp')!r}; "
                                          "run `export-models mlp`"]


def test_a_plugins_escape_sequences_never_reach_the_terminal_raw(tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "loud-plugin", {"loud": "loud_spec:SPEC", "boom": "boom_spec:SPEC"}, {
        "loud_spec": SPEC_HEAD + ("SPEC = ModelSpec(name='loud', builder='tf_parity_export.models.mlp:build_mlp', "
                                  "summary='\\x1b[2J\\x1b[31mred\\nline two\\r', inputs=X, "
                                  "outputs=(TensorSig('logits', (None, 10)),))\n"),
        "boom_spec": "raise RuntimeError('\\x1b[31mred alert\\x07')\n"})
    result = run("export", ["--list"], site)
    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stderr and "\r" not in result.stdout
    assert re.search(r"^loud +\\x1b\[2J\\x1b\[31mred\\nline two\\r  \[plugin: loud-plugin 1\.0", result.stdout,
                     re.MULTILINE), result.stdout  # the column is as wide as the longest name
    assert result.stderr.splitlines() == ["error: plugin entry point 'boom' (boom_spec:SPEC) of distribution "
                                          "loud-plugin 1.0: cannot be loaded (RuntimeError: \\x1b[31mred alert\\x07)"]


MALFORMED = ("probe _plugin_builders:malformed_probe returned a malformed path (iterations='many'); trace(x).to_json() "
             "must give {'iterations': int >= 0")


def test_a_probe_returning_a_malformed_path_is_one_line(as_plugin, copy_of, tmp_path):
    from tf_parity_export.export.cli import main as export_main

    root = copy_of("mlp")  # verify: mlp's folder, its spec now a plugin's with that probe
    as_plugin(dataclasses.replace(get_spec("mlp"), probe="_plugin_builders:malformed_probe"))
    [line] = verify_models(["mlp"], root, runtimes=["ort_cpu"]).failures()
    assert line.startswith("mlp (plugin entry point 'mlp' (tests:SPEC) of distribution test-plugin 1.0): ")
    assert MALFORMED in line and "\n" not in line
    # export: the probe's paths are stored with the test data
    as_plugin(dataclasses.replace(get_spec("mlp"), name="probed", probe="_plugin_builders:malformed_probe"))
    result = CliRunner().invoke(export_main, ["probed", "--out", str(tmp_path / "art")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1].startswith("error: probed (plugin entry point 'probed'")
    assert MALFORMED in result.stderr.splitlines()[-1]
    assert not (tmp_path / "art" / "probed").exists()


def test_a_declared_input_too_wide_to_store_is_one_line(as_plugin, tmp_path):
    """2e7 float32 per row: the random cases alone (10 rows) would store 763 MiB."""
    from tf_parity_export.export.cli import main as export_main

    as_plugin(dataclasses.replace(get_spec("mlp"), name="wide", builder="_plugin_builders:raises",
                                  inputs=(TensorSig("x", (None, 20_000_000)),)))
    result = CliRunner().invoke(export_main, ["wide", "--out", str(tmp_path / "art"), "--no-verify"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: wide: the random test inputs alone would take 762.9 MiB, over the cap of 64.0 MiB on a model's "
        "stored test data (inputs [[None, 20000000]]); declare smaller inputs")
    assert not (tmp_path / "art" / "wide").exists()


def test_the_cap_holds_for_every_set_written(monkeypatch, tmp_path):
    """Outputs and coverage cases count too: with the cap set under mlp's 1200 bytes of test data (its
    800 bytes of random inputs pass the first check), the export stops at the set that crosses it."""
    from tf_parity_export.export import export_models
    from tf_parity_export.verify import test_data

    monkeypatch.setattr(test_data, "MAX_TEST_DATA_BYTES", 1000)
    with pytest.raises(ExportError) as info:  # this model's failure: the others would go on
        export_models(["mlp"], tmp_path / "art", verify=False)
    assert str(info.value) == ("mlp: the test data sets up to case 'random_b7' would take 1200 bytes, over the cap of "
                               "1000 bytes on a model's stored test data (inputs [[None, 20]]); declare smaller inputs")
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == [".export.lock"]


def test_escape_sequences_in_a_models_own_names_never_reach_the_table_raw(copy_of, resign):
    """The table's coverage columns and notes name the ONNX graph's nodes, which a plugin's model chooses."""
    root = copy_of("fancy_mlp")
    folder = root / "fancy_mlp"
    model = onnx.load(str(folder / layout.ONNX))
    node = next(n for n in model.graph.node if n.op_type == "If")
    node.name = "If\x1b[2J\x1b[31mred"
    onnx.save(model, str(folder / layout.ONNX))
    resign(folder)
    result = CliRunner().invoke(verify_main, ["fancy_mlp", "--artifacts", str(root), "--providers", "ort_cpu"])
    assert result.exit_code == 0, result.output
    assert "If If\\x1b[2J\\x1b[31mred" in result.stdout and "\x1b" not in result.output
