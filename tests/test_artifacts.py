"""Artifacts you can trust: reproducible bytes, hash checks, atomic writes, --check."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tf_parity_export.export.atomic import LOCK, exchange, swap_in
from tf_parity_export.export.cli import main as export_main
from tf_parity_export.verify.cli import main as verify_main
from tf_parity_export.models import MODELS
from tf_parity_export.verify import layout, verify_models

from unit.lockwatch import wait_until_blocked

ROOT = Path(__file__).resolve().parents[1]
EXPORT = [sys.executable, "-c", "from tf_parity_export.export.cli import entry; entry()"]


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): layout.sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fresh_process_exporting_alone_gives_identical_bytes(artifacts, tmp_path):
    """Same bytes from another process, exporting two models alone instead of all five."""
    subprocess.run([*EXPORT, "chimera", "fancy_mlp", "--no-verify", "--out", str(tmp_path)], check=True,
                   capture_output=True)
    for name in ("chimera", "fancy_mlp"):
        assert tree(tmp_path / name) == tree(artifacts / name)


def test_same_process_twice_gives_identical_bytes(artifacts, tmp_path):
    from tf_parity_export.export import export_models

    export_models(["mlp", "chimera"], tmp_path, verify=False)  # this process already exported all five
    assert tree(tmp_path / "chimera") == tree(artifacts / "chimera")
    assert tree(tmp_path / "mlp") == tree(artifacts / "mlp")


def test_card_is_a_manifest(artifacts):
    card = json.loads((artifacts / "fancy_mlp" / layout.CARD).read_text())
    assert set(card["versions"]) == {"python", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"}
    sets = {f"{e['set']}/{kind}_0.pb" for e in card["test_data"] for kind in ("input", "output")}
    assert set(card["files"]) == {"cases.npz", "model.onnx", "model.tflite", "model.weights.h5", "saved_model/fingerprint.pb",
                                  "tensor_sources.json", "tf_intermediates.npy",
                                  "saved_model/saved_model.pb", "saved_model/variables/variables.data-00000-of-00001",
                                  "saved_model/variables/variables.index", *sets}
    assert card["signature"]["atol"] == 1e-5 and card["parameters"] == 20 * 20 + 20 * 20 + 20
    index = json.loads((artifacts / layout.INDEX).read_text())
    assert index["models"]["fancy_mlp"]["card_sha256"] == layout.sha256(artifacts / "fancy_mlp" / layout.CARD)


@pytest.mark.parametrize("rel", ["model.onnx", "model.weights.h5", "cases.npz", "saved_model/saved_model.pb",
                                 "saved_model/variables/variables.data-00000-of-00001"])
def test_one_flipped_byte_is_refused(copy_of, rel):
    root = copy_of("fancy_mlp")
    path = root / "fancy_mlp" / rel
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x40
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(verify_main, ["fancy_mlp", "--artifacts", str(root)])
    assert result.exit_code == 1
    assert f"error: fancy_mlp: {rel} changed since export (sha256 mismatch)" in result.output


def resign_index(folder: Path) -> None:
    """Record the (edited) card and ONNX file in manifest.json, as an export would."""
    index = json.loads((folder.parent / layout.INDEX).read_text())
    index["models"][folder.name].update(card_sha256=layout.sha256(folder / layout.CARD),
                                        onnx_sha256=layout.sha256(folder / layout.ONNX))
    (folder.parent / layout.INDEX).write_text(json.dumps(index))


def _edit_card(folder: Path, edit) -> None:
    card = json.loads((folder / layout.CARD).read_text())
    edit(card["files"])
    (folder / layout.CARD).write_text(json.dumps(card))


@pytest.mark.parametrize("bad", ["../mlp/model.onnx", "/etc/passwd", "saved_model/../../x"])
def test_card_paths_outside_the_folder_are_refused(copy_of, bad):
    root = copy_of("mlp")
    _edit_card(root / "mlp", lambda files: files.__setitem__(bad, "0" * 64))
    rep = verify_models(["mlp"], root)
    assert rep.failures() == [f"mlp: card.json lists {bad!r}, a path outside the model folder; refusing it"]


def test_listed_file_missing_is_refused(copy_of):
    root = copy_of("mlp")
    (root / "mlp" / layout.WEIGHTS).unlink()
    assert verify_models(["mlp"], root).failures() == [
        "mlp: model.weights.h5 is missing (listed in card.json); re-export with `export-models mlp`"]


@pytest.mark.parametrize("location", ["../../secret.bin", "/etc/passwd", "weights.bin"])
def test_onnx_external_data_outside_or_unlisted_is_refused(copy_of, tmp_path, location):
    root = copy_of("mlp")
    folder = root / "mlp"
    model = onnx.load(str(folder / layout.ONNX))
    init = model.graph.initializer[0]
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    init.external_data.add(key="location", value=location)
    onnx.save(model, str(folder / layout.ONNX))
    if location == "weights.bin":
        (folder / "weights.bin").write_bytes(b"\0" * 64)  # present, but not in the card
    if location == "weights.bin":
        (folder / "weights.bin").unlink()  # an unlisted file is refused before the ONNX is read
    _edit_card(folder, lambda files: files.__setitem__(layout.ONNX, layout.sha256(folder / layout.ONNX)))
    resign_index(folder)
    [line] = verify_models(["mlp"], root).failures()
    assert line.startswith(f"mlp: model.onnx tensor {init.name!r} ")
    assert ("outside the model folder" in line) if location != "weights.bin" else ("does not list" in line)


def test_exchange_swaps_whole_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "f").write_text("new"), (b / "f").write_text("old")
    if not exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported on this filesystem")
    assert (b / "f").read_text() == "new" and (a / "f").read_text() == "old"
    swap_in(a, b)  # a (now "old") replaces b, and the old b is gone
    assert (b / "f").read_text() == "old" and not a.exists()


def _wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out waiting for the export to get there"
        time.sleep(0.005)


def _opset(folder: Path) -> int:
    return json.loads((folder / layout.CARD).read_text())["opset"]


def test_kill_9_at_several_points_never_tears_a_folder(tmp_path):
    """A real export killed with SIGKILL while writing each model, and right after a swap."""
    out = tmp_path / "artifacts"
    subprocess.run([*EXPORT, "--all", "--opset", "13", "--no-verify", "--out", str(out)], check=True,
                   capture_output=True)
    names = list(MODELS)
    # each run exports the model it is killed in and the next (the swap of one and the start of the other)
    points = [("writing", "mlp"), ("writing", "fancy_mlp"), ("swapped", "fancy_mlp"), ("writing", "chimera")]
    for when, name in points:
        after = names[(names.index(name) + 1) % len(names)]
        proc = subprocess.Popen([*EXPORT, name, after, "--no-verify", "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if when == "writing":
                _wait_for(lambda: any(p.name.startswith(f".{name}.tmp-") for p in out.iterdir()))
            else:
                _wait_for(lambda: _opset(out / name) == 17)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        assert visible == sorted([*names, layout.INDEX]), (when, name)
        assert {_opset(out / n) for n in names} <= {13, 17}
        for n in names:  # every folder whole: each file listed, each hash as signed (raises otherwise)
            layout.check_folder(out, n)
    report = verify_models(names, out, runtimes=["ort_cpu"])  # and what the kills left computes the function
    assert report, report.failures()
    assert _opset(out / "fancy_mlp") == 17  # the kill after its swap kept the new version
    subprocess.run([*EXPORT, "mlp", "--no-verify", "--out", str(out)], check=True, capture_output=True)
    assert [p.name for p in out.iterdir() if ".tmp-" in p.name] == []  # the next run cleans up what it recorded
    assert (out / LOCK).read_text() == ""


def test_a_second_export_waits_for_the_lock_and_then_finishes(tmp_path):
    """Deterministic: the test holds artifacts/.export.lock; the export is seen blocked on it in
    /proc/locks, having written nothing; released, it finishes. Without the lock it would finish (or
    write) while the lock is held, and this fails every time, not by luck of timing."""
    out = tmp_path / "artifacts"
    out.mkdir()
    lock = out / ".export.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen([*EXPORT, "mlp", "--no-verify", "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until_blocked(lock, proc.pid, lambda: proc.poll() is not None)
            assert sorted(p.name for p in out.iterdir()) == [".export.lock"]
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    proc.stderr.close()
    assert sorted(p.name for p in out.iterdir()) == [".export.lock", layout.INDEX, "mlp"]
    assert verify_models(["mlp"], out, runtimes=["ort_cpu"])


def test_check_passes_when_current_and_lists_what_differs(artifacts, tmp_path):
    out = tmp_path / "artifacts"
    shutil.copytree(artifacts, out)
    ok = CliRunner().invoke(export_main, ["mlp", "nest_mlp", "--check", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "is current (2 models: model files byte-identical to a fresh export" in ok.output
    (out / "mlp" / layout.ONNX).write_bytes(b"stale")
    (out / "nest_mlp" / "notes.txt").write_text("mine")
    shutil.rmtree(out / "nest_mlp" / layout.SAVED_MODEL)
    bad = CliRunner().invoke(export_main, ["mlp", "nest_mlp", "--check", "--out", str(out)])
    assert bad.exit_code == 1
    lines = [line for line in bad.output.splitlines() if line.startswith("error: ")]
    assert f"error: {out / 'mlp' / layout.ONNX}: differs from a fresh export" in lines
    assert f"error: {out / 'mlp' / layout.CARD}: differs from a fresh export" not in lines  # card unchanged
    assert f"error: {out / 'nest_mlp' / 'notes.txt'}: not written by this code" in lines
    assert f"error: {out / 'nest_mlp' / 'saved_model/saved_model.pb'}: missing (this code writes it)" in lines
    assert lines[-1] == f"error: {out}/ is out of date; run: export-models mlp nest_mlp --out {out}"


def test_check_takes_the_data_tensorflow_computed_within_the_models_tolerance(artifacts, tmp_path, resign):
    """TF eager's last bits depend on the CPU's kernels: a stored output one rounding away still
    checks as current (card and manifest re-signed as that machine's export wrote them); one
    beyond the model's tolerance does not, nor does a changed model file."""
    import onnx
    from onnx import numpy_helper

    def scale_output(factor: float) -> None:
        path = out / "mlp" / "test_data_set_2" / "output_0.pb"
        tensor = onnx.TensorProto.FromString(path.read_bytes())
        values = numpy_helper.to_array(tensor) * np.float32(factor)
        path.write_bytes(numpy_helper.from_array(values.astype(np.float32), tensor.name).SerializeToString())
        resign(out / "mlp")

    out = tmp_path / "artifacts"
    shutil.copytree(artifacts, out)
    scale_output(1 + 2e-7)  # a rounding or two
    ok = CliRunner().invoke(export_main, ["mlp", "--check", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    scale_output(1 + 1e-3)  # beyond rtol = 1e-5: not what this code computes
    bad = CliRunner().invoke(export_main, ["mlp", "--check", "--out", str(out)])
    assert bad.exit_code == 1
    lines = [line for line in bad.output.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: {out / 'mlp' / 'test_data_set_2' / 'output_0.pb'}: differs from a fresh export",
                     f"error: {out}/ is out of date; run: export-models mlp --out {out}"]


def test_committed_artifacts_are_current():
    """The artifacts/ folder in the repository is exactly what this code exports (CI's --check)."""
    from tf_parity_export.export.check import check_models

    assert (ROOT / "artifacts" / layout.INDEX).is_file(), "artifacts/ must be committed"
    assert check_models(list(MODELS), ROOT / "artifacts") == []
