"""Flags that must not loosen or vanish (issue 20, item 5): an exact runtime is never held to less
than the model's own tolerance, a runtime named twice in --require is refused, and --bench refuses
what only verification uses instead of ignoring it."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from tf_parity_export.models import UserError
from tf_parity_export.verify import layout, verify_models
from tf_parity_export.verify.cli import main


@pytest.fixture
def swapped(copy_of, resign, artifacts):
    """chimera's folder with fancy_mlp's model.onnx in it (the same signature, other weights), re-signed
    as an attacker with write access to everything would."""
    root = copy_of("chimera")
    shutil.copyfile(artifacts / "fancy_mlp" / layout.ONNX, root / "chimera" / layout.ONNX)
    resign(root / "chimera")
    return root


def test_an_exact_runtime_is_never_held_to_a_looser_atol(swapped):
    args = ["chimera", "--artifacts", str(swapped), "--providers", "ort_cpu"]
    caught = CliRunner().invoke(main, args)
    assert caught.exit_code == 1 and "chimera/ort_cpu: case" in caught.output  # the wrong model is caught...
    for require in ("ort_cpu:1000", "ort_cpu:1e-9", "openvino_default:0.2,ort_cpu:1000"):
        result = CliRunner().invoke(main, [*args, "--require", require])  # ...and no ATOL lets it pass
        assert result.exit_code == 2, result.output
        assert ("Invalid value for --require: ort_cpu:" in result.output
                and "ort_cpu is exact (fp32), always held to the model's own tolerance; an ATOL is for a "
                    "reduced-precision runtime (" in result.output)
        assert "PASSED" not in result.output
    with pytest.raises(UserError, match="ort_cpu is exact"):  # the library refuses it too
        verify_models(["chimera"], swapped, runtimes=["ort_cpu"], require={"ort_cpu": 1000.0})
    required = CliRunner().invoke(main, [*args, "--require", "ort_cpu"])  # required, at the model's tolerance
    assert required.exit_code == 1 and "chimera/ort_cpu: case" in required.output


def test_a_runtime_named_twice_in_require_is_refused(artifacts):
    for require in ("openvino_default:0.2,openvino_default:0.5", "ort_cpu,ort_cpu", "litert, litert:"):
        result = CliRunner().invoke(main, ["mlp", "--artifacts", str(artifacts), "--require", require])
        assert result.exit_code == 2
        assert f"Invalid value for --require: names {require.split(',')[0].split(':')[0]} twice; name each " \
               "runtime once" in result.output


@pytest.mark.parametrize("flag", [["--inputs", "mine.npz"], ["--require", "openvino_default:0.2"], ["--tolerances"],
                                  ["--allow-uncovered"]], ids=lambda f: f[0])
def test_bench_refuses_what_it_would_ignore(tmp_path, flag):
    (tmp_path / "mine.npz").write_bytes(b"")
    result = CliRunner().invoke(main, ["mlp", "--artifacts", str(tmp_path / "none"), "--bench", *flag],
                                catch_exceptions=False)
    assert result.exit_code == 2
    assert (f"Error: --bench times the runtimes at batch 1 and 64 on random inputs and compares nothing; it does not "
            f"take {flag[0]}") in result.output
