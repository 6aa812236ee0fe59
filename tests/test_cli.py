"""Both CLIs through click's CliRunner (and a subprocess where the process matters)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from tf_parity_export.export.cli import main as export_main
from tf_parity_export.models import MODELS
from tf_parity_export.verify.cli import main as verify_main


def test_help_does_not_import_tensorflow():
    code = ("import sys; from tf_parity_export.export.cli import main; from tf_parity_export.verify.cli import main as v;"
            "print('tensorflow' in sys.modules, 'tf2onnx' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False False\n"


def test_list_shows_every_model():
    result = CliRunner().invoke(export_main, ["--list"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()] == list(MODELS)


def test_unknown_model_is_a_usage_error_listing_valid_names():
    result = CliRunner().invoke(export_main, ["resnet"])
    assert result.exit_code == 2
    assert "'resnet' is not one of 'chimera', 'fancy_mlp', 'mlp', 'nest_mlp', 'sequential_mlp'" in result.output


def test_nothing_asked_is_a_usage_error():
    assert CliRunner().invoke(export_main, []).exit_code == 2
    assert CliRunner().invoke(verify_main, ["--all", "mlp"]).exit_code == 2
    assert CliRunner().invoke(verify_main, ["--all", "--providers", "ort_gpu"]).exit_code == 2


def test_export_one_model_prints_table_and_exits_0(tmp_path):
    result = CliRunner().invoke(export_main, ["fancy_mlp", "--out", str(tmp_path), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "[1/1] fancy_mlp: exported in" in result.output
    assert "fancy_mlp control-flow coverage: loop ran 0 times" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("PASSED")
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    assert json.loads((tmp_path / "report.json").read_text())["passed"] is True


def test_verify_cli_all(artifacts, tmp_path):
    result = CliRunner().invoke(verify_main, ["--all", "--artifacts", str(artifacts), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header[:3] == ["model", "cases", "tf_eager"]
    report = json.loads((tmp_path / "r.json").read_text())
    for runtime, state in report["models"][0]["runtimes"].items():
        # a column for each runtime that ran; one unavailable for every model is a note saying why
        assert (runtime in header) == (state == "ran"), runtime
        assert state == "ran" or f"{runtime}: {state}" in result.output.splitlines()
    assert {line.split()[0] for line in result.output.splitlines()[2:7]} == set(MODELS)


def test_verify_cli_bad_input_is_one_line_exit_1(artifacts, tmp_path):
    np.savez(tmp_path / "inf.npz", x=np.full((1, 20), np.inf, np.float32))
    result = CliRunner().invoke(verify_main, ["fancy_mlp", "--artifacts", str(artifacts),
                                              "--inputs", str(tmp_path / "inf.npz")])
    assert result.exit_code == 1
    assert result.output == f"error: {tmp_path / 'inf.npz'}: 'x' contains infinity; inputs must be finite\n"


def test_verify_cli_missing_artifacts_exit_1(tmp_path):
    result = CliRunner().invoke(verify_main, ["mlp", "--artifacts", str(tmp_path)])
    assert result.exit_code == 1
    assert f"error: mlp: no artifact folder at {tmp_path / 'mlp'}; run `export-models mlp`" in result.output
    assert "Traceback" not in result.output
