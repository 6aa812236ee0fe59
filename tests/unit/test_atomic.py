"""export/atomic.py: the swap is one atomic exchange, the fallback is correct, the lock serialises."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
from pathlib import Path

import pytest

from tf_parity_export.export import atomic
from tf_parity_export.models import UserError

from .lockwatch import wait_until_blocked


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "f").write_text(text)
    return path


def _exchange_supported(tmp_path: Path) -> bool:
    """Asked of the kernel directly, not through the code under test (which must then use it)."""
    import ctypes

    a, b = _folder(tmp_path / "probe_a", "a"), _folder(tmp_path / "probe_b", "b")
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0


def test_exchange_swaps_two_folders(tmp_path):
    if not _exchange_supported(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported on this filesystem")
    a, b = _folder(tmp_path / "a", "new"), _folder(tmp_path / "b", "old")
    assert atomic.exchange(a, b) is True
    assert (b / "f").read_text() == "new" and (a / "f").read_text() == "old"


def test_exchange_of_a_missing_path_is_an_oserror_naming_it(tmp_path):
    if not _exchange_supported(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported on this filesystem")
    import ctypes

    b = _folder(tmp_path / "b", "old")
    ctypes.set_errno(0)  # ctypes' own copy of errno: read as the error only without use_errno=True
    with pytest.raises(OSError) as info:
        atomic.exchange(tmp_path / "absent", b)
    assert info.value.errno == errno.ENOENT and info.value.filename == str(b)
    assert info.value.strerror == os.strerror(errno.ENOENT)


def test_swap_over_an_existing_folder_uses_the_exchange_not_two_renames(tmp_path, monkeypatch):
    """The destination never disappears: no os.rename (the fallback) is ever made, the exchange is."""
    if not _exchange_supported(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported on this filesystem")
    new, dest = _folder(tmp_path / ".m.tmp-1", "new"), _folder(tmp_path / "m", "old")
    renames, exchanges = [], []
    real_exchange = atomic.exchange

    def spy_rename(a, b):
        renames.append((a, b))
        os.replace(a, b)

    def spy_exchange(a, b):
        exchanges.append((a, b, dest.is_dir()))
        return real_exchange(a, b)

    monkeypatch.setattr(atomic.os, "rename", spy_rename)
    monkeypatch.setattr(atomic, "exchange", spy_exchange)
    atomic.swap_in(new, dest)
    assert renames == [] and exchanges == [(new, dest, True)]
    assert (dest / "f").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "probe_a", "probe_b"]


def test_renameat2_is_called_with_rename_exchange(tmp_path, monkeypatch):
    if not _exchange_supported(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported on this filesystem")
    calls = []
    real = atomic._renameat2()

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(atomic, "_renameat2", lambda: spy)
    a, b = _folder(tmp_path / "a", "new"), _folder(tmp_path / "b", "old")
    assert atomic.exchange(a, b) is True
    assert calls == [(-100, os.fsencode(a), -100, os.fsencode(b), 2)]  # AT_FDCWD, RENAME_EXCHANGE


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP])
def test_exchange_reports_unsupported_filesystems_as_false(tmp_path, monkeypatch, err):
    def fails(*args):
        import ctypes

        ctypes.set_errno(err)
        return -1

    monkeypatch.setattr(atomic, "_renameat2", lambda: fails)
    monkeypatch.setattr(atomic.ctypes, "get_errno", lambda: err)
    assert atomic.exchange(tmp_path / "a", tmp_path / "b") is False


def test_exchange_other_errors_raise(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_renameat2", lambda: (lambda *args: -1))
    monkeypatch.setattr(atomic.ctypes, "get_errno", lambda: errno.EACCES)
    with pytest.raises(PermissionError):
        atomic.exchange(tmp_path / "a", tmp_path / "b")


def test_no_renameat2_means_no_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    a, b = _folder(tmp_path / "a", "new"), _folder(tmp_path / "b", "old")
    assert atomic.exchange(a, b) is False
    assert (b / "f").read_text() == "old"


def test_renameat2_found_in_libc_or_none(monkeypatch):
    opened = []
    real_cdll = atomic.ctypes.CDLL
    monkeypatch.setattr(atomic.ctypes, "CDLL", lambda name, **kw: opened.append(name) or real_cdll(name, **kw))
    assert atomic._renameat2() is not None  # glibc >= 2.28 has it
    assert opened == [atomic.ctypes.util.find_library("c")]
    monkeypatch.setattr(atomic.ctypes.util, "find_library", lambda name: None)  # then the usual soname
    assert atomic._renameat2() is not None and opened[-1] == "libc.so.6"
    monkeypatch.setattr(atomic.ctypes, "CDLL", real_cdll)
    monkeypatch.setattr(atomic.ctypes.util, "find_library", lambda name: "libnot-there.so.0")
    assert atomic._renameat2() is None


def test_fallback_replaces_the_folder_and_removes_the_old_one(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    new, dest = _folder(tmp_path / ".m.tmp-1", "new"), _folder(tmp_path / "m", "old")
    atomic.swap_in(new, dest)
    assert (dest / "f").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_first_swap_is_a_rename(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "exchange", lambda a, b: pytest.fail("nothing to exchange with"))
    new = _folder(tmp_path / ".m.tmp-1", "new")
    atomic.swap_in(new, tmp_path / "m")
    assert (tmp_path / "m" / "f").read_text() == "new" and not new.exists()


def test_claim_records_the_path_in_the_lock_it_is_under(tmp_path):
    out = tmp_path / "artifacts"
    before = atomic.claim(tmp_path, "x")  # no lock held: a fresh name, recorded nowhere
    assert before.parent == tmp_path and re.fullmatch(rf"\.x\.tmp-{os.getpid()}-[0-9a-f]{{8}}", before.name)
    assert not before.exists()
    with atomic.exclusive(out):
        a = atomic.claim(out, "mlp")
        b = atomic.claim(out / "mlp_tf", "version")
        assert a != atomic.claim(out, "mlp")
        assert (out / atomic.LOCK).read_text().splitlines()[:2] == [a.name, f"mlp_tf/{b.name}"]
    assert (out / atomic.LOCK).read_text() == ""


def test_lock_held_elsewhere_refuses_a_no_wait_run(tmp_path):
    out = tmp_path / "artifacts"
    out.mkdir()
    with open(out / atomic.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match=r"artifacts: another export-models run holds \.export\.lock$"):
            with atomic.exclusive(out, wait=False):
                pytest.fail("entered while another holds the lock")
    with atomic.exclusive(out, wait=False):  # released: now it enters
        pass


def test_second_holder_waits_until_the_first_releases(tmp_path):
    """Deterministic: the thread is seen blocked in flock (in /proc/locks) before the lock is released."""
    out = tmp_path / "artifacts"
    out.mkdir()
    entered = threading.Event()

    def second() -> None:
        with atomic.exclusive(out):
            entered.set()

    with open(out / atomic.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        thread = threading.Thread(target=second)
        thread.start()
        wait_until_blocked(out / atomic.LOCK, os.getpid(), entered.is_set)
        assert not entered.is_set()
    thread.join(timeout=60)
    assert entered.is_set()


def test_lock_sweeps_only_temporaries_recorded_in_it(tmp_path):
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / ".mlp.tmp-1").mkdir()
    (out / ".mlp.tmp-1" / "model.onnx").write_bytes(b"half")
    (out / ".manifest.json.tmp-abc").write_text("{")
    (out / ".chimera.old-7").mkdir()
    (out / "mlp").mkdir()
    (out / "mlp" / ".version.tmp-2").mkdir()
    (out / ".keep").write_text("mine")
    (out / "notes.tmp-1").write_text("mine")
    (out / atomic.LOCK).write_text(".mlp.tmp-1\nmlp/.version.tmp-2\n.gone.tmp-3\nmlp\n../x.tmp-1\n")
    with atomic.exclusive(out):
        assert sorted(p.name for p in out.iterdir()) == [".chimera.old-7", ".export.lock", ".keep",
                                                         ".manifest.json.tmp-abc", "mlp", "notes.tmp-1"]
        assert list((out / "mlp").iterdir()) == [] and (out / atomic.LOCK).read_text() == ""


def test_unwritable_artifacts_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=r"file/out: cannot write the artifacts folder here \(Not a directory\)$"):
        with atomic.exclusive(blocker / "out"):
            pass


def test_claim_records_in_the_innermost_lock_held(tmp_path):
    out = tmp_path / "artifacts"
    with atomic.exclusive(out), atomic.exclusive(out / "mlp"):
        inner = atomic.claim(out / "mlp", "version")
        outer = atomic.claim(out, "mlp")
        assert (out / "mlp" / atomic.LOCK).read_text() == f"{inner.name}\n"
        assert (out / atomic.LOCK).read_text() == f"{outer.name}\n"


def test_fallback_records_the_old_folder_under_its_own_name(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    out = tmp_path / "artifacts"
    with atomic.exclusive(out):
        new, dest = _folder(out / ".m.tmp-1", "new"), _folder(out / "m", "old")
        atomic.swap_in(new, dest)
        [old] = (out / atomic.LOCK).read_text().splitlines()
        assert re.fullmatch(rf"\.m\.old\.tmp-{os.getpid()}-[0-9a-f]{{8}}", old)
        assert (dest / "f").read_text() == "new" and sorted(p.name for p in out.iterdir()) == [".export.lock", "m"]


def test_sweep_removes_recorded_files_and_links_not_what_a_link_points_to(tmp_path):
    out = tmp_path / "artifacts"
    out.mkdir()
    elsewhere = _folder(tmp_path / "elsewhere", "keep")
    (out / ".w.h5.tmp-1").write_text("half")
    (out / ".link.tmp-2").symlink_to(elsewhere, target_is_directory=True)
    (out / ".file-link.tmp-3").symlink_to(elsewhere / "f")
    (out / atomic.LOCK).write_text(".w.h5.tmp-1\n.link.tmp-2\n.file-link.tmp-3\n")
    with atomic.exclusive(out):
        assert [p.name for p in out.iterdir()] == [".export.lock"]
    assert (elsewhere / "f").read_text() == "keep"


def test_sweep_skips_every_line_claim_cannot_have_written_and_goes_on(tmp_path):
    out = tmp_path / "artifacts"
    (out / "mlp").mkdir(parents=True)
    for name in (".keep", "notes.tmp-1", ".abs.tmp-1", ".dotdot.tmp-1", ".mlp.tmp-9"):
        (out / name).write_text("x")
    (out / atomic.LOCK).write_text(
        "mlp\n"  # a model folder, first: skipped, and the lines after it are still read
        ".keep\n"  # a dot file, but not a temporary
        "notes.tmp-1\n"  # a temporary's mark, but no leading dot
        f"{(out / '.abs.tmp-1').resolve()}\n"  # absolute, even inside the folder
        "mlp/../.dotdot.tmp-1\n"  # "..", even back inside the folder
        "\n"
        ".mlp.tmp-9\n")  # the one line claim could have written
    with atomic.exclusive(out):
        assert sorted(p.name for p in out.iterdir()) == [".abs.tmp-1", ".dotdot.tmp-1", ".export.lock", ".keep",
                                                         "mlp", "notes.tmp-1"]
        assert (out / atomic.LOCK).read_text() == ""


def test_sweep_goes_on_past_a_tree_it_cannot_remove(tmp_path, monkeypatch):
    """A removal that fails (here: one file the OS refuses to unlink, as for a non-owner) is left behind."""
    out = tmp_path / "artifacts"
    (out / ".a.tmp-1").mkdir(parents=True)
    (out / ".a.tmp-1" / "stuck").write_text("x")
    (out / ".b.tmp-2").mkdir()
    (out / atomic.LOCK).write_text(".a.tmp-1\n.b.tmp-2\n")
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if os.fsdecode(path).endswith("stuck"):
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), os.fsdecode(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    with atomic.exclusive(out):
        assert sorted(p.name for p in out.iterdir()) == [".a.tmp-1", ".export.lock"]
        assert [p.name for p in (out / ".a.tmp-1").iterdir()] == ["stuck"]
        assert (out / atomic.LOCK).read_text() == ""
