"""A hostile pass, kept: what a careful adversarial user tried, on real files and processes.

Each class of the issue "Verdicts you can bet on" has its cases here:
integrity holes, false verdicts, extreme finite inputs, tolerance at scale,
memory, malformed files. Every case asserts the exit status, the one line
it prints, and that no traceback escaped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import resign_folder
from tf_parity_export.models import get_spec
from tf_parity_export.verify import layout, verify_models
from tf_parity_export.verify.cli import main as verify_main
from tf_parity_export.verify.compare import compare_output, summed_rtol
from tf_parity_export.verify.inputs import MAX_INPUT_BYTES

VERIFY = [sys.executable, "-c", "from tf_parity_export.verify.cli import entry; entry()"]


def verify(*args: str) -> tuple[int, str]:
    """verify-models in-process (CliRunner): exit status and everything it printed."""
    result = CliRunner().invoke(verify_main, list(args))
    assert "Traceback" not in result.output and not isinstance(result.exception, (AssertionError, TypeError)), (
        result.output, result.exception)
    return result.exit_code, result.output


def errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


def edit_card(folder: Path, edit) -> None:
    """Change card.json and re-sign it in manifest.json (an attacker who can write both)."""
    card = json.loads((folder / layout.CARD).read_text())
    edit(card)
    (folder / layout.CARD).write_text(json.dumps(card))
    index = json.loads((folder.parent / layout.INDEX).read_text())
    index["models"][folder.name]["card_sha256"] = layout.sha256(folder / layout.CARD)
    (folder.parent / layout.INDEX).write_text(json.dumps(index))


def strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


# 1. Integrity: every path confined, every file hashed, every card in the manifest.

@pytest.mark.parametrize("bad", ["../../../etc", "/etc", "test_data_set_0/../../mlp", "x"])
def test_test_data_paths_are_confined(copy_of, bad):
    root = copy_of("mlp")
    edit_card(root / "mlp", lambda card: card["test_data"][0].__setitem__("set", bad))
    code, out = verify("mlp", "--artifacts", str(root), "--providers", "ort_cpu")
    assert code == 1
    assert errors(out) == [f"error: mlp: card.json names test data set {bad!r}, not a test_data_set_N folder "
                           "inside the model folder; refusing it"]


def test_test_data_set_named_but_not_hashed_is_refused(copy_of):
    root = copy_of("mlp")
    folder = root / "mlp"
    card = json.loads((folder / layout.CARD).read_text())
    entry = dict(card["test_data"][0], set="test_data_set_99")
    edit_card(folder, lambda card: card["test_data"].append(entry))
    code, out = verify("mlp", "--artifacts", str(root), "--providers", "ort_cpu")
    assert code == 1
    assert errors(out) == ["error: mlp: card.json names test data 'test_data_set_99/input_0.pb' but does not "
                           "list (hash) it; re-export with `export-models mlp`"]


def test_unlisted_file_is_refused_even_if_the_card_line_was_deleted(copy_of):
    """Delete a file's line from card.json, then change that file: refused, naming it."""
    root = copy_of("mlp")
    folder = root / "mlp"
    edit_card(folder, lambda card: card["files"].pop("test_data_set_0/output_0.pb"))
    (folder / "test_data_set_0" / "output_0.pb").write_bytes(b"changed")
    code, out = verify("mlp", "--artifacts", str(root))
    assert code == 1
    assert errors(out) == ["error: mlp: test_data_set_0/output_0.pb is in the model folder but not listed in "
                           "card.json (unhashed); remove it or re-export with `export-models mlp`"]


def test_extra_file_is_refused_by_name(copy_of):
    root = copy_of("mlp")
    (root / "mlp" / "saved_model" / "assets").mkdir(exist_ok=True)
    (root / "mlp" / "saved_model" / "assets" / "vocab.txt").write_text("extra")
    assert verify_models(["mlp"], root).failures() == [
        "mlp: saved_model/assets/vocab.txt is in the model folder but not listed in card.json (unhashed); "
        "remove it or re-export with `export-models mlp`"]


def test_symlink_leading_out_is_refused(copy_of, tmp_path):
    root = copy_of("mlp")
    target = root / "mlp" / "test_data_set_0" / "input_0.pb"
    outside = tmp_path / "outside.pb"
    outside.write_bytes(target.read_bytes())  # same bytes: the hash alone would pass
    target.unlink()
    target.symlink_to(outside)
    assert verify_models(["mlp"], root).failures() == [
        "mlp: test_data_set_0/input_0.pb is a symlink; a model folder holds only regular files; refusing it"]


def test_fifo_in_the_folder_is_refused_without_hanging(copy_of):
    root = copy_of("mlp")
    os.mkfifo(root / "mlp" / "pipe")
    assert verify_models(["mlp"], root).failures() == ["mlp: pipe is not a regular file; refusing it"]


def test_resigned_card_is_caught_by_the_manifest(copy_of):
    """Change the ONNX file and re-sign card.json, but not manifest.json."""
    root = copy_of("mlp")
    folder = root / "mlp"
    data = bytearray((folder / layout.ONNX).read_bytes())
    data[-1] ^= 1
    (folder / layout.ONNX).write_bytes(bytes(data))
    card = json.loads((folder / layout.CARD).read_text())
    card["files"] = layout.hash_tree(folder)
    (folder / layout.CARD).write_text(json.dumps(card))
    code, out = verify("mlp", "--artifacts", str(root))
    assert code == 1
    assert errors(out) == ["error: mlp: card.json does not match manifest.json (sha256 mismatch: the card "
                           "changed since export); re-export with `export-models mlp`"]


@pytest.mark.parametrize("manifest", [None, "", "[]", '{"models": {}}', "[" * 100000])
def test_missing_or_bad_manifest_is_one_line(copy_of, manifest):
    root = copy_of("mlp")
    if manifest is None:
        (root / layout.INDEX).unlink()
    else:
        (root / layout.INDEX).write_text(manifest)
    code, out = verify("mlp", "--artifacts", str(root))
    assert code == 1 and len(errors(out)) == 1
    assert "manifest.json" in errors(out)[0] and errors(out)[0].startswith("error: mlp: ")


# 2. False verdicts: the printed verdict and the exit status agree.

@pytest.mark.parametrize("providers", [",", "", " , "])
def test_comparing_nothing_is_a_usage_error(providers):
    code, out = verify("--all", "--providers", providers)
    assert code == 2 and "names no runtime, so nothing would be compared" in out


def test_bench_comparing_nothing_is_a_usage_error():
    code, out = verify("mlp", "--bench", "--providers", ",")
    assert code == 2


def test_report_that_cannot_be_saved_beside_the_artifacts_is_a_warning(copy_of, tmp_path):
    """A folder in the way of artifacts/report.json (as a read-only folder would be): the run
    still passes, says so, and --json is still written."""
    root = copy_of("mlp")
    (root / layout.REPORT).mkdir()
    code, out = verify("mlp", "--artifacts", str(root), "--providers", "ort_cpu", "--json", str(tmp_path / "r.json"))
    assert code == 0, out
    assert out.splitlines()[-1].startswith("PASSED")
    assert f"warning: {root / layout.REPORT}: cannot write here" in out
    assert strict_json(tmp_path / "r.json")["passed"] is True
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]  # no temporary file left behind


def test_report_that_cannot_be_written_where_asked_fails_the_verdict(copy_of, tmp_path):
    """The verification passes, but the report asked for cannot be written (a file
    where its folder should be): the verdict printed is FAILED, exit 1."""
    root = copy_of("mlp")
    (tmp_path / "reports").write_text("a file, not a folder")
    target = tmp_path / "reports" / "r.json"
    code, out = verify("mlp", "--artifacts", str(root), "--providers", "ort_cpu", "--json", str(target))
    assert code == 1
    assert "PASSED" not in out and "FAILED: --json report not written" in out
    assert errors(out) == [f"error: {target}: cannot write here (File exists)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "reports"]  # nothing left behind


def test_report_path_that_is_a_folder_is_a_usage_error_before_running(copy_of, tmp_path):
    root = copy_of("mlp")
    (tmp_path / "r.json").mkdir()
    code, out = verify("mlp", "--artifacts", str(root), "--json", str(tmp_path / "r.json"))
    assert code == 2 and "PASSED" not in out


def test_bench_fails_on_a_named_unavailable_runtime(copy_of, tmp_path):
    root = copy_of("mlp")
    code, out = verify("mlp", "--artifacts", str(root), "--bench", "--providers", "ort_cuda",
                       "--json", str(tmp_path / "b.json"))
    assert code == 1
    assert "FAILED: mlp/ort_cuda: unavailable:" in out
    assert errors(out)[0].startswith("error: mlp/ort_cuda: unavailable: CUDAExecutionProvider")
    assert strict_json(tmp_path / "b.json")["failures"]


@pytest.mark.parametrize("damage", ["weights", "onnx"])
def test_bench_refuses_damaged_artifacts_in_one_line(copy_of, damage):
    root = copy_of("mlp")
    folder = root / "mlp"
    path = folder / (layout.WEIGHTS if damage == "weights" else layout.ONNX)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    resign_folder(folder)
    code, out = verify("mlp", "--artifacts", str(root), "--bench", "--providers", "ort_cpu")
    assert code == 1 and len(errors(out)) == 1
    assert "cannot be loaded" in errors(out)[0] or "cannot be parsed" in errors(out)[0]


# 3. Extreme finite inputs: strict JSON always; a loop driven to its cap is reported as such.

@pytest.mark.parametrize("name", ["mlp", "fancy_mlp", "chimera"])
def test_extreme_finite_inputs_give_strict_json_and_a_consistent_verdict(artifacts, tmp_path, name):
    """float32's extremes: norms that overflow, huge negatives, subnormals. Whatever the
    runtimes make of them (inf, NaN), the report is strict JSON and agrees with the exit status."""
    big = np.finfo(np.float32).max
    tiny = np.finfo(np.float32).smallest_subnormal
    x = np.array([[big] * 20, [-big] * 20, [tiny, -tiny] * 10, [1e30, 1e-45] * 10, [1e19] * 20], np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    code, out = verify(name, "--artifacts", str(artifacts), "--inputs", str(tmp_path / "x.npz"),
                       "--providers", "ort_cpu,onnx_reference", "--json", str(tmp_path / "r.json"))
    report = strict_json(tmp_path / "r.json")
    verdict = [line for line in out.splitlines() if line.startswith(("PASSED", "FAILED"))][-1]
    assert (code == 0) == report["passed"] == verdict.startswith("PASSED"), out


def test_input_driving_the_loop_to_its_cap_is_reported_as_such(artifacts, tmp_path):
    """One finite value, 3e38, makes fancy_mlp's activations infinite: the seed's
    `while norm > 1: x /= 2` would never end, the exported loop stops at its cap."""
    x = np.zeros((1, 20), np.float32)
    x[0, 1] = 3e38
    np.savez(tmp_path / "x.npz", x=x)
    code, out = verify("fancy_mlp", "--artifacts", str(artifacts), "--inputs", str(tmp_path / "x.npz"),
                       "--providers", "ort_cpu,onnx_reference", "--json", str(tmp_path / "r.json"))
    report = strict_json(tmp_path / "r.json")
    [case] = report["models"][0]["cases"]
    assert case["kind"] == "capped" and case["path"]["capped"] is True and case["path"]["iterations"] == 1000
    assert case["path"]["norm_before_loop"] == "Infinity"  # spelled out: strict JSON has no inf
    assert {r["status"] for r in report["models"][0]["results"]} == {"loop_cap"}
    assert code == 1 and report["passed"] is False and "FAILED" in out
    assert errors(out) == ["error: fancy_mlp: no case was compared: all 1 are loop_cap cases, reported but not "
                           "counted; give inputs away from the thresholds"]
    assert "fancy_mlp loop-cap case user:x.npz: the norm entering the loop is inf" in out
    assert "ok" not in out.splitlines()[2] and "none +1c" in out.splitlines()[2]


def test_non_finite_numbers_are_spelled_out(tmp_path):
    layout.write_json(tmp_path / "r.json", {"a": [float("nan"), float("inf"), -np.float32("inf"), 1.5]})
    assert strict_json(tmp_path / "r.json") == {"a": ["NaN", "Infinity", "-Infinity", 1.5]}


def test_equal_infinities_agree_and_opposite_ones_do_not():
    inf = np.array([np.inf, -np.inf, 1.0], np.float32)
    assert compare_output("y", inf, inf.copy(), 1e-5, 1e-5)
    assert not compare_output("y", inf, -inf, 1e-5, 1e-5)


# 4. Tolerance at scale.

def test_summed_rtol_grows_with_sqrt_of_the_terms():
    assert summed_rtol(1e-5, 1) == 1e-5
    assert summed_rtol(1e-5, 20) == pytest.approx(1e-5 + 2 * 20**0.5 * 2**-24)
    assert summed_rtol(1e-5, 20_000_000) == pytest.approx(5.43e-4, rel=0.01)


def test_one_weight_moved_by_1e_3_is_still_caught(copy_of):
    """fancy_mlp's Dense kernel with one entry moved by 1e-3, exported again and re-signed:
    the built-in cases move `total` by 3e-4 to 5e-4 relative, far above the tolerance at their scale."""
    from tf_parity_export.export.onnx_model import export_onnx

    root = copy_of("fancy_mlp")
    spec = get_spec("fancy_mlp")
    model = spec.build()
    weight = model.dense.kernel.numpy()
    weight[3, 5] += 1e-3
    model.dense.kernel.assign(weight)
    export_onnx(spec.serving_function(model), spec, root / "fancy_mlp" / layout.ONNX)
    resign_folder(root / "fancy_mlp")
    failures = verify_models(["fancy_mlp"], root, runtimes=["ort_cpu"]).failures()
    assert failures and all(line.startswith("fancy_mlp/ort_cpu: case ") for line in failures)


def _peak_child_rss_mib(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run a real verify-models process; its peak resident memory, from the kernel's rusage."""
    code = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)")
    result = subprocess.run([sys.executable, "-c", code, *VERIFY, *args], capture_output=True, text=True)
    return result, int(result.stderr.strip().splitlines()[-1]) / 1024


@pytest.fixture(scope="module")
def million_rows(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "x.npz"
    np.savez(path, x=np.random.default_rng(0).random((1_000_000, 20), dtype=np.float32))
    return path


@pytest.mark.scale  # a million rows: with the other scale tests, after the plain suite
@pytest.mark.parametrize("name, runtime", [("fancy_mlp", "ort_cpu"), ("mlp", "onnx_reference")])
def test_a_million_rows_pass_within_2_gb(artifacts, million_rows, name, runtime):
    """fancy_mlp sums 20 million float32 terms: onnxruntime adds them one by one (1e-4 from the
    exact sum), still a pass under the rule at scale; mlp runs in chunks. Peak RSS under 2 GB."""
    result, peak_mib = _peak_child_rss_mib([name, "--artifacts", str(artifacts), "--inputs", str(million_rows),
                                            "--providers", runtime])
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout
    assert peak_mib < 2000, f"peak RSS {peak_mib:.0f} MiB"


# 5. Memory: inputs are sized from their headers before anything is decompressed.

def test_decompression_bomb_is_refused_before_inflating(artifacts, tmp_path):
    bomb = tmp_path / "bomb.npz"
    header = np.lib.format
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("x.npy", "w", force_zip64=True) as f:
        header.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (4_000_000, 20)})
        zeros = bytes(1 << 22)
        for _ in range(4_000_000 * 20 * 4 // len(zeros)):
            f.write(zeros)
    assert bomb.stat().st_size < 1_000_000
    result, peak_mib = _peak_child_rss_mib(["mlp", "--artifacts", str(artifacts), "--inputs", str(bomb)])
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {bomb}: inflates to ")
    assert "MiB; inputs are limited to 80 MiB" in result.stderr
    assert peak_mib < 1000  # refused before TensorFlow, let alone decompression


def test_lying_npy_header_is_refused_by_its_shape(tmp_path):
    """A small member whose .npy header claims a huge array."""
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("x.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 20)})
    code, out = verify("mlp", "--inputs", str(path))
    [line] = errors(out)
    assert code == 1 and line.startswith(f"error: {path}: holds ")
    assert line.endswith("MiB of array data; inputs are limited to 80 MiB (about 1,048,576 rows of 20 float32)")


def test_limit_is_just_above_a_million_rows(tmp_path):
    ok, over = tmp_path / "ok.npz", tmp_path / "over.npz"
    np.savez(ok, x=np.zeros((MAX_INPUT_BYTES // 80, 20), np.float32))
    np.savez(over, x=np.zeros((MAX_INPUT_BYTES // 80 + 1, 20), np.float32))
    from tf_parity_export.verify.inputs import read_npz

    assert read_npz(ok)["x"].shape == (1_048_576, 20)
    with pytest.raises(Exception, match="inputs are limited to 80 MiB"):
        read_npz(over)


# 6. Malformed files: one line each, exit 1.

def _npz_variants(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((2, 20), np.float32))
    variants = {"empty": b"", "not a zip": b"hello, world\n" * 10, "truncated": good.read_bytes()[:-30],
                "truncated early": good.read_bytes()[:100]}
    paths = {}
    for name, data in variants.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.npz"
        paths[name].write_bytes(data)
    paths["object array"] = tmp_path / "object.npz"
    np.savez(paths["object array"], x=np.array([{"a": 1}, None], dtype=object))
    paths["malformed key"] = tmp_path / "key.npz"
    with zipfile.ZipFile(paths["malformed key"], "w") as archive, archive.open("../x.npy", "w") as f:
        np.lib.format.write_array(f, np.zeros((2, 20), np.float32))
    paths["not npy"] = tmp_path / "notnpy.npz"
    with zipfile.ZipFile(paths["not npy"], "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY garbage")
    return paths


def test_malformed_user_inputs_are_one_line(artifacts, tmp_path):
    for what, path in _npz_variants(tmp_path).items():
        code, out = verify("mlp", "--artifacts", str(artifacts), "--inputs", str(path))
        assert code == 1, (what, out)
        assert len(errors(out)) == 1 and errors(out)[0].startswith(f"error: {path}: "), (what, out)
        assert "Aborted" not in out


def test_empty_inputs_file_in_a_real_process(artifacts, tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    result = subprocess.run([*VERIFY, "mlp", "--artifacts", str(artifacts), "--inputs", str(tmp_path / "empty.npz")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "Aborted" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'empty.npz'}: not a readable .npz file")


@pytest.mark.parametrize("damage", ["truncated", "bad keys"])
def test_malformed_stored_cases_are_one_line(copy_of, damage):
    root = copy_of("fancy_mlp")
    folder = root / "fancy_mlp"
    if damage == "truncated":
        (folder / layout.CASES).write_bytes((folder / layout.CASES).read_bytes()[:-40])
    else:
        np.savez(folder / layout.CASES, **{"no_slash": np.zeros((1, 20), np.float32)})
    resign_folder(folder)
    [line] = verify_models(["fancy_mlp"], root, runtimes=["ort_cpu"]).failures()
    assert line.startswith("fancy_mlp: cases.npz") and "re-export" in line


@pytest.mark.parametrize("field, value, message", [
    ("seed", "ten", "field 'seed' must be an integer in [0, 2**32)"),
    ("seed", 1.5, "field 'seed' must be an integer in [0, 2**32)"),
    ("seed", True, "field 'seed' must be an integer in [0, 2**32)"),
    ("seed", -1, "field 'seed' must be an integer in [0, 2**32)"),
    ("test_data", "test_data_set_0", "field 'test_data' must be a list"),
    ("test_data", [1], "field 'test_data[0]' must be an object"),
    ("test_data", [{"set": 0, "case": "a", "kind": "random"}], "field 'test_data[0]' must be an object"),
    ("files", {"model.onnx": 5}, "must be a sha256 hex digest"),
    ("files", [], f"is not a schema-{layout.SCHEMA_VERSION} card"),
    ("schema", "2", f"is not a schema-{layout.SCHEMA_VERSION} card"),
    ("formats", [], "field 'formats' must be an object"),
    ("formats", {"litert": {"status": "maybe"}}, "field \"formats['litert']\" must be a known format"),
    ("formats", {"coreml": {"status": "ok"}}, "field \"formats['coreml']\" must be a known format"),
])
def test_card_fields_of_the_wrong_type_are_one_line(copy_of, field, value, message):
    root = copy_of("mlp")
    edit_card(root / "mlp", lambda card: card.__setitem__(field, value))
    code, out = verify("mlp", "--artifacts", str(root), "--providers", "ort_cpu")
    assert code == 1 and len(errors(out)) == 1 and message in errors(out)[0], out


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, "\xff\xfe", "", "null"])
def test_deeply_nested_or_garbled_card_is_one_line(copy_of, text):
    root = copy_of("mlp")
    (root / "mlp" / layout.CARD).write_bytes(text.encode("latin-1"))
    code, out = verify("mlp", "--artifacts", str(root))
    assert code == 1 and len(errors(out)) == 1 and "card.json" in errors(out)[0], out


# Beyond the list: what else a hostile user tries.

@pytest.mark.parametrize("kind", ["symlink to /dev/zero", "fifo", "huge"])
def test_card_that_never_ends_is_refused_without_hanging(copy_of, kind):
    root = copy_of("mlp")
    card = root / "mlp" / layout.CARD
    card.unlink()
    if kind == "fifo":
        os.mkfifo(card)
    elif kind == "huge":
        card.write_bytes(b" " * (layout.MAX_JSON_BYTES + 1))
    else:
        card.symlink_to("/dev/zero")
    code, out = verify("mlp", "--artifacts", str(root))
    assert code == 1 and len(errors(out)) == 1 and "card.json is unreadable" in errors(out)[0]


def test_newline_in_a_file_name_stays_one_line(copy_of):
    root = copy_of("mlp")
    (root / "mlp" / "evil\nerror: all good").write_text("x")
    [line] = verify_models(["mlp"], root).failures()
    assert "\n" not in line and line.startswith("mlp: 'evil\\nerror: all good' is in the model folder")


def test_inputs_that_are_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.npz")
    code, out = verify("mlp", "--inputs", str(tmp_path / "pipe.npz"))
    assert code == 1 and errors(out) == [f"error: {tmp_path / 'pipe.npz'}: not a regular file"]


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile warns; writing one is the point
def test_duplicate_array_names_are_refused(tmp_path):
    path = tmp_path / "dup.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for value in (0.0, 1.0):
            with archive.open("x.npy", "w") as f:
                np.lib.format.write_array(f, np.full((1, 20), value, np.float32))
    code, out = verify("mlp", "--inputs", str(path))
    assert code == 1 and errors(out) == [f"error: {path}: holds two arrays under one name; refusing the ambiguity"]
