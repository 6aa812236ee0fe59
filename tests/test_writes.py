"""Hostile writes (issue 12, classes 7 and 8), with real processes and real files.

A failed write (the file-size limit, a full disk) is one line, exit 1, and
leaves nothing behind; only temporaries this tool recorded are ever removed;
the serving layouts replace only their version folder, build it inside the
repository, and write files other users can read; export-models without
TensorFlow says what to install.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tf_parity_export.export import atomic

EXPORT = [sys.executable, "-c", "from tf_parity_export.export.cli import entry; entry()"]
VERIFY = [sys.executable, "-c", "from tf_parity_export.verify.cli import entry; entry()"]


def run(cmd: list[str], limit: int | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    def preexec() -> None:
        os.umask(0o022)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec, env=env, timeout=600)


def our_lines(stderr: str) -> list[str]:
    """stderr less TensorFlow's C++ log lines (I0000..., W0000..., its absl banner)."""
    noise = ("I0000", "W0000", "E0000", "WARNING: All log messages", "To enable the following instructions")
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(noise)]


def entries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_file_size_limit_during_export_is_one_line_and_leaves_nothing(copy_of):
    """RLIMIT_FSIZE below what model.weights.h5 needs: HDF5 used to segfault (-11) on the EFBIG."""
    out = copy_of("mlp")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = run([*EXPORT, "mlp", "--no-verify", "--out", str(out)], limit=20_000)
    assert result.returncode == 1, result.stderr[-3000:]
    line = (f"{out}/mlp/model.weights.h5: needs up to 97320 bytes, over this process's file-size limit of "
            "20000 bytes (ulimit -f)")
    assert our_lines(result.stderr)[1:] == [f"[1/1] mlp: not exported: {line}", f"error: {line}"]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != atomic.LOCK} == before
    assert (out / atomic.LOCK).read_text() == ""  # the ledger of temporaries is empty: none is left


def test_file_size_limit_on_the_report_is_one_line_and_leaves_nothing(copy_of, tmp_path):
    artifacts = copy_of("mlp")
    before = entries(tmp_path)
    result = run([*VERIFY, "mlp", "--providers", "ort_cpu", "--artifacts", str(artifacts),
                  "--json", str(tmp_path / "r.json")], limit=2_000)
    assert result.returncode == 1
    assert our_lines(result.stderr) == [  # the report beside the artifacts is a warning (issue 12, class 2)
        f"warning: {artifacts}/report.json: cannot write here (File too large); the report was not saved there",
        f"error: {tmp_path}/r.json: cannot write here (File too large)"]
    assert "FAILED: --json report not written" in result.stdout
    assert entries(tmp_path) == before


@pytest.fixture
def small_disk(tmp_path):
    """A 108 KiB tmpfs: room for mlp's weights file, not for the whole export."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=108k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"unavailable: cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); "
                    "the file-size limit tests cover the same failed writes (EFBIG instead of ENOSPC)")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_full_disk_during_export_is_one_line_and_leaves_nothing(small_disk):
    out = small_disk / "artifacts"
    result = run([*EXPORT, "mlp", "--no-verify", "--out", str(out)])
    assert result.returncode == 1, result.stderr[-3000:]
    line = f"{out}/mlp: cannot write the artifacts (No space left on device); nothing was changed"
    assert our_lines(result.stderr)[1:] == [f"[1/1] mlp: not exported: {line}", f"error: {line}"]
    assert entries(out) == [atomic.LOCK] and (out / atomic.LOCK).read_text() == ""


def test_full_disk_for_the_report_is_one_line_and_leaves_nothing(artifacts, small_disk):
    (small_disk / "pad").write_bytes(b"\0" * 100 * 1024)  # about 8 KiB left: less than the report
    result = run([*VERIFY, "mlp", "--providers", "ort_cpu", "--artifacts", str(artifacts),
                  "--json", str(small_disk / "r.json")])
    assert result.returncode == 1
    assert our_lines(result.stderr) == [f"error: {small_disk}/r.html: cannot write here (No space left on device)"]
    assert entries(small_disk) == ["pad"]  # r.json fitted, the page did not: r.json is removed too


def test_the_lock_removes_only_temporaries_this_tool_recorded(tmp_path):
    """A run killed with SIGKILL leaves its recorded temporaries; the next run removes exactly those.
    Look-alike names (the user's), and hostile ledger lines pointing elsewhere, are left alone."""
    out = tmp_path / "artifacts"
    out.mkdir()
    mine = [".mlp.tmp-1", ".mlp.old-3", ".manifest.json.tmp-abc", ".notes.tmp-x"]
    for name in mine:
        (out / name).write_text("the user's")
    victim = tmp_path / ".victim.tmp-1"
    victim.write_text("outside")
    child = ("import os, signal, sys\nfrom pathlib import Path\nfrom tf_parity_export.export import atomic\n"
             "out = Path(sys.argv[1])\nwith atomic.exclusive(out):\n"
             "    d = atomic.claim(out, 'mlp'); d.mkdir(); (d / 'model.onnx').write_bytes(b'half')\n"
             "    atomic.claim(out / 'mlp_tf', 'version')\n"  # recorded, never created
             "    f = atomic.claim(out, 'manifest.json'); f.write_text('{')\n"
             "    print(d.name, f.name, flush=True)\n"
             "    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", child, str(out)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    left = killed.stdout.split()
    assert sorted(p.name for p in out.iterdir()) == sorted([atomic.LOCK, *mine, *left])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / victim.name).write_text("outside")
    (out / "link").symlink_to(tmp_path / "elsewhere")
    with open(out / atomic.LOCK, "a") as ledger:  # a hostile ledger: paths leading out of the folder
        ledger.write(f"../{victim.name}\n{victim}\n{out / mine[0]}\n.export.lock\nlink/{victim.name}\n")
    with atomic.exclusive(out):
        assert sorted(p.name for p in out.iterdir()) == sorted([atomic.LOCK, "link", *mine])
    assert victim.read_text() == "outside" and (tmp_path / "elsewhere" / victim.name).read_text() == "outside"
    assert (out / atomic.LOCK).read_text() == ""


def ours_in(scratch: Path) -> list[str]:
    """What an export left in TMPDIR: folders (it used to build there) or names it chose. TensorFlow's own
    files there (autograph's generated modules, a `.ses` session file) are not this tool's."""
    return [e for e in entries(scratch) if (scratch / e).is_dir() or "export" in e or ".tmp-" in e]


def readable_by_others(root: Path) -> list[str]:
    """The paths under `root` another user could not read (files) or enter (folders)."""
    bad = []
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        need = stat.S_IROTH | (stat.S_IXOTH if p.is_dir() else 0)
        if mode & need != need:
            bad.append(f"{p.relative_to(root)} {oct(mode)}")
    return bad


@pytest.mark.parametrize("layout_name", ["triton", "tfserving"])
def test_serving_layout_replaces_only_its_version_and_is_readable(tmp_path, layout_name):
    repo = tmp_path / "repo"
    other = repo / "mlp" / "2"  # another version a server is serving
    other.mkdir(parents=True)
    (other / "model.onnx").write_text("version 2")
    (repo / ".mlp.tmp-1").write_text("the user's")
    scratch = tmp_path / "scratch"  # TMPDIR: nothing may be left there either
    scratch.mkdir()
    result = run([*EXPORT, "mlp", "--no-verify", "--format", layout_name, "--out", str(repo)],
                 env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (other / "model.onnx").read_text() == "version 2" and (repo / ".mlp.tmp-1").read_text() == "the user's"
    version = repo / "mlp" / "1"
    assert (version / ("model.onnx" if layout_name == "triton" else "saved_model.pb")).is_file()
    hidden = [e for e in entries(repo) if any(part.startswith(".") for part in Path(e).parts)]
    assert hidden == [".export.lock", ".mlp.tmp-1"]
    assert (repo / atomic.LOCK).read_text() == ""
    assert readable_by_others(repo) == []
    assert ours_in(scratch) == []


def test_killed_serving_export_leaves_nothing_once_the_next_run_is_done(tmp_path):
    repo = tmp_path / "repo"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen([*EXPORT, "mlp", "--no-verify", "--format", "triton", "--out", str(repo)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        # the temporary appears before the model is built and exported (a second or more): kill in that window
        while not list(repo.glob("mlp/.artifacts.tmp-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "the export ended before it was killed"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert list(repo.glob("mlp/.artifacts.tmp-*"))  # killed mid-way: its temporary is there...
    assert ours_in(scratch) == []  # ...inside the repository, not in TMPDIR
    result = run([*EXPORT, "mlp", "--no-verify", "--format", "triton", "--out", str(repo)], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in repo.iterdir()) == [atomic.LOCK, "mlp", "mlp_tf"]
    assert sorted(p.name for p in (repo / "mlp").iterdir()) == ["1", "config.pbtxt"]
    assert ours_in(scratch) == []


def test_export_without_tensorflow_says_what_to_install(tf_free_python, tmp_path):
    result = subprocess.run([str(tf_free_python / "export-models"), "mlp", "--out", str(tmp_path / "a")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: export-models needs TensorFlow to export, and tensorflow, keras, tf2onnx, h5py are not installed "
        "here; install with: pip install 'tensorflow<2.22,>=2.16' 'keras<4,>=3.0' 'tf2onnx<1.18,>=1.16' "
        "'h5py>=3.10' (verify-models works without them)"]
    assert not (tmp_path / "a").exists()
    listed = subprocess.run([str(tf_free_python / "export-models"), "--list"], capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.startswith("mlp ")


def test_check_fix_hint_repeats_the_options_given(copy_of):
    out = copy_of("mlp")
    (out / "mlp" / "model.onnx").write_bytes(b"stale")
    result = run([*EXPORT, "mlp", "--check", "--opset", "13", "--out", str(out)])
    assert result.returncode == 1
    assert our_lines(result.stderr)[-1] == f"error: {out}/ is out of date; run: export-models mlp --out {out} --opset 13"
    hint = our_lines(result.stderr)[-1].split("run: ", 1)[1]
    fixed = run([sys.executable, "-c", "from tf_parity_export.export.cli import main; main()", *hint.split()[1:],
                 "--no-verify"])
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    again = run([*EXPORT, "mlp", "--check", "--opset", "13", "--out", str(out)])
    assert again.returncode == 0, again.stderr[-3000:]
