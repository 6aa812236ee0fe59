"""Passes that mean something (issue 17): an output that never moves over the cases fails, naming
itself and its spread against the tolerance, unless accepted; the calibration helper makes an
untrained architecture's outputs move."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from _real_models import SPECS
from tf_parity_export.export.cli import main as export_main
from tf_parity_export.models import MODELS
from tf_parity_export.verify.cli import main as verify_main


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        for name in ("deep", "deep_calibrated"):
            patch.setitem(MODELS, name, SPECS[name])
        out = tmp_path_factory.mktemp("deep")
        result = CliRunner().invoke(export_main, ["deep", "deep_calibrated", "--out", str(out), "--json",
                                                  str(out / "r.json"), "--providers", "tf_eager,ort_cpu"])
        yield out, result


def test_an_output_that_never_moves_fails_naming_itself(deep):
    out, result = deep
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: deep: output 'probs' does not move: over 10 rows every element stays within atol=1e-05 / "
        "rtol=1e-05 of one value (largest spread "), errors
    assert errors[0].endswith("so any runtime returning that constant would pass; parity on it proves nothing "
                              "(--allow-insensitive to accept)")
    report = json.loads((out / "r.json").read_text())
    by = {m["model"]: m for m in report["models"]}
    info = by["deep"]["insensitive"]["probs"]
    assert info["rows"] == 10 and info["spread"] < 1e-5 and not by["deep"]["passed"]
    assert by["deep_calibrated"]["insensitive"] == {} and by["deep_calibrated"]["passed"]
    page = (out / "r.html").read_text()
    assert "output &#x27;probs&#x27; does not move" in page


def test_the_calibrated_architecture_moves_and_agrees(deep):
    out, _ = deep
    report = json.loads((out / "r.json").read_text())
    model = next(m for m in report["models"] if m["model"] == "deep_calibrated")
    assert all(r["status"] == "passed" for r in model["results"])
    precision = model["precision"]["ort_cpu"]
    assert precision["min_cosine"] > 0.999999 and precision["min_snr_db"] > 60  # scale-aware metrics recorded


def test_insensitive_outputs_can_be_accepted_and_are_still_reported(deep):
    out, _ = deep
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MODELS, "deep", SPECS["deep"])
        result = CliRunner().invoke(verify_main, ["deep", "--artifacts", str(out), "--providers", "ort_cpu",
                                                  "--allow-insensitive"])
    assert result.exit_code == 0, result.output
    assert "deep: output 'probs' does not move" in result.output and "accepted (--allow-insensitive)" in result.output


def test_user_inputs_alone_do_not_decide_sensitivity(deep, tmp_path):
    """One row of the user's own cannot show movement; the stored test data count toward the spread."""
    out, _ = deep
    np.savez(tmp_path / "one.npz", x=np.full((1, 8), 0.5, np.float32))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MODELS, "deep_calibrated", SPECS["deep_calibrated"])
        result = CliRunner().invoke(verify_main, ["deep_calibrated", "--artifacts", str(out), "--providers",
                                                  "ort_cpu", "--inputs", str(tmp_path / "one.npz")])
    assert result.exit_code == 0, result.output
