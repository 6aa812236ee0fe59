"""Where reports go (issue 20, item 3): `--json` onto a symlink, a FIFO or a device is refused and
never replaced; the temporaries a killed run left beside a report are removed by the next run
(only ours: our name pattern and a process that is gone). Real files, real killed processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tf_parity_export.verify import layout

VERIFY = [sys.executable, "-c", "from tf_parity_export.verify.cli import entry; entry()"]


def verify(artifacts: Path, *args: str):
    from tf_parity_export.verify.cli import main

    return CliRunner().invoke(main, ["mlp", "--artifacts", str(artifacts), "--providers", "ort_cpu", *args])


def test_json_onto_a_symlink_is_refused_and_the_link_kept(artifacts, tmp_path):
    target = tmp_path / "runs" / "latest.json"
    target.parent.mkdir()
    target.write_text("the user's report")
    for link, points_to in ((tmp_path / "r.json", target), (tmp_path / "out.json", tmp_path / "nowhere.json")):
        link.symlink_to(points_to)
        result = verify(artifacts, "--json", str(link))
        assert result.exit_code == 1
        assert result.output.splitlines() == [f"error: {link}: is a symlink; refusing to replace it (reports are "
                                              "written only as regular files: name the file itself)"]
        assert link.is_symlink() and os.readlink(link) == str(points_to)
    assert target.read_text() == "the user's report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "r.json", "runs"]


def test_a_symlink_where_the_page_goes_is_refused_before_the_run(artifacts, tmp_path):
    (tmp_path / "r.html").symlink_to(tmp_path / "elsewhere.html")
    result = verify(artifacts, "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 1 and result.output.startswith(f"error: {tmp_path / 'r.html'}: is a symlink")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # r.json not written either
    from tf_parity_export.models import UserError
    from tf_parity_export.verify.render import write_report
    from tf_parity_export.verify.verifier import Report

    (tmp_path / "r.json").write_text("the previous report")
    with pytest.raises(UserError, match="r.html: is a symlink"):  # the library call checks both, before writing
        write_report(Report([], set(), 0.0, {}), tmp_path / "r.json")
    assert (tmp_path / "r.json").read_text() == "the previous report"


def test_json_onto_a_fifo_is_refused_without_hanging(artifacts, tmp_path):
    """In a real process with a deadline: opening a FIFO with no reader would block forever."""
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    result = subprocess.run([*VERIFY, "mlp", "--artifacts", str(artifacts), "--providers", "ort_cpu",
                             "--json", str(fifo)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (f"error: {fifo}: is a FIFO; refusing to replace it (reports are "
                                              "written only as regular files: name the file itself)")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_the_courtesy_copy_beside_the_artifacts_never_replaces_a_symlink(copy_of, tmp_path):
    root = copy_of("mlp")
    victim = tmp_path / "victim"
    victim.write_text("not a report")
    (root / layout.REPORT).symlink_to(victim)
    result = verify(root, "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"warning: {root / layout.REPORT}: is a symlink; refusing to replace it "
                                          "(reports are written only as regular files: name the file itself); the "
                                          "report was not saved there"]
    assert (root / layout.REPORT).is_symlink() and victim.read_text() == "not a report"
    assert result.stdout.rstrip().splitlines()[-1].startswith("PASSED")


KILL_AT = ("import os, signal, sys\nfrom pathlib import Path\n"
           "from tf_parity_export.verify import layout\n"
           "calls = []\n"
           "real = os.replace\n"
           "def replace(a, b):\n"
           "    calls.append(a)\n"
           "    if len(calls) == int(sys.argv[2]):\n"
           "        os.kill(os.getpid(), signal.SIGKILL)\n"
           "    real(a, b)\n"
           "os.replace = replace\n"
           "layout.write_text(Path(sys.argv[1]), '{}')\n"
           "layout.write_text(Path(sys.argv[1]).with_suffix('.html'), '<p>')\n")


def test_a_killed_runs_report_temporaries_are_removed_by_the_next_run(artifacts, tmp_path):
    """Processes killed (SIGKILL) between writing a report's temporary and renaming it, once for the
    JSON and once for the page, as a killed verify-models would be: the next run removes both. A
    temporary of a process still alive (this one) and the user's look-alike names stay."""
    report = tmp_path / "r.json"
    for at in (2, 1):  # (the JSON written first would sweep the first child's temporary already)
        killed = subprocess.run([sys.executable, "-c", KILL_AT, str(report), str(at)], capture_output=True, text=True)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sorted(p.name for p in tmp_path.glob(".r.*.tmp-*"))
    assert [n.split(".tmp-")[0] for n in left] == [".r.html", ".r.json"]
    alive = tmp_path / f".r.json.tmp-{os.getpid()}-0123abcd"
    mine = [".r.json.tmp-1-user", ".r.json.tmp-99999999", ".r.jsonx.tmp-4194305-0123abcd", ".r.json.tmp-x-0123abcd"]
    for path in (alive, *(tmp_path / n for n in mine)):
        path.write_text("not a finished report")
    result = verify(artifacts, "--json", str(report))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, *mine, "r.html", "r.json"])
