"""`--demo` (issue 20, item 2): what the page shows is text, never markup (checked in a real Chromium);
where it may write (never into artifacts or a model folder); what it may replace (only what a previous
demo wrote, by its demo.json listing); and a failed write leaves the folder as it was, with the
export's verdict still printed."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tf_parity_export.export import demo
from tf_parity_export.export.atomic import LOCK
from tf_parity_export.models import MODELS, TensorSig, UserError, get_spec
from tf_parity_export.verify import layout

EVIL = "y<img src=x onerror=alert(1)>"
EVIL_SUMMARY = "<img src=x onerror=alert(2)><script>alert(3)</script>"


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` (files with their bytes, folders as None)."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


@pytest.fixture
def hostile_names(copy_of, resign, monkeypatch):
    """mlp's artifacts with its output renamed to markup (the ONNX output and the stored test data
    tensors, re-signed), registered under a spec declaring that name and a summary that is markup."""
    root = copy_of("mlp")
    folder = root / "mlp"
    model = onnx.load(str(folder / layout.ONNX))
    old = model.graph.output[0].name
    model.graph.output[0].name = EVIL
    for node in model.graph.node:
        node.output[:] = [EVIL if o == old else o for o in node.output]
    onnx.save(model, str(folder / layout.ONNX))
    for pb in folder.glob("test_data_set_*/output_0.pb"):
        tensor = onnx.load_tensor(str(pb))
        tensor.name = EVIL
        pb.write_bytes(tensor.SerializeToString())
    resign(folder)
    spec = dataclasses.replace(get_spec("mlp"), summary=EVIL_SUMMARY, outputs=(TensorSig(EVIL, (None, 10)),))
    monkeypatch.setitem(MODELS, "mlp", spec)
    return root


def serve(site: Path):
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "-d", str(site), "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(re.search(r"port (\d+)", server.stdout.readline()).group(1))
    return server, f"http://127.0.0.1:{port}/"


def test_names_and_summaries_are_text_in_a_real_browser(hostile_names, tmp_path, chromium):
    site = tmp_path / "site"
    demo.write_demo(["mlp"], hostile_names, site)
    server, url = serve(site)
    try:
        page = chromium.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        page.select_option("#set", "2")
        page.click("#run")
        page.wait_for_function("document.getElementById('result').dataset.matchSet === '2'")
        page.wait_for_load_state("networkidle")  # an <img src=x> would have failed to load by now
        assert page.eval_on_selector_all("img, script:not([src])", "els => els.length") == 0
        assert page.inner_text("#summary") == EVIL_SUMMARY
        assert page.inner_text("#result td b") == EVIL
        assert page.get_attribute("#result td.output", "data-output") == EVIL
        assert page.eval_on_selector("#result", "e => e.dataset.withinTolerance") == "true"  # it really ran
        bits = page.get_attribute("#result td.output", "data-bits")
        stored = onnx.numpy_helper.to_array(onnx.load_tensor(str(hostile_names / "mlp/test_data_set_2/output_0.pb")))
        np.testing.assert_allclose(np.frombuffer(base64.b64decode(bits), "<f4").reshape(stored.shape), stored,
                                   atol=1e-5, rtol=1e-5)
        page.close()
        assert dialogs == []
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_artifacts_folder_a_folder_inside_it_and_model_folders_are_refused(copy_of, tmp_path):
    root = copy_of("mlp")
    other = tmp_path / "elsewhere"  # another export's artifacts root, and a model folder of it
    (other / "mlp").mkdir(parents=True)
    card = json.dumps({"schema": layout.SCHEMA_VERSION, "files": {}})
    (other / "mlp" / layout.CARD).write_text(card)
    (other / layout.INDEX).write_text(json.dumps({"schema": layout.SCHEMA_VERSION, "models": {}}))
    lone = tmp_path / "copied" / "mlp"  # a model folder copied somewhere on its own, without its manifest
    lone.mkdir(parents=True)
    (lone / layout.CARD).write_text(card)
    for dest in (root, root / "site", root / "mlp", root / "mlp" / "deeper", other / "mlp", other / "site",
                 other / "mlp" / "x", lone, lone / "x"):
        with pytest.raises(UserError) as info:
            demo.check_demo_dest(dest, root, ["mlp"])
        assert str(info.value).startswith(f"--demo {dest}: ") and "\n" not in str(info.value)
    link = tmp_path / "link"
    link.symlink_to(root)  # the same folder by another name
    with pytest.raises(UserError, match="is the artifacts folder"):
        demo.check_demo_dest(link, root, ["mlp"])
    site = tmp_path / "site"  # a web site's own manifest.json or card.json does not make it an artifacts folder
    site.mkdir()
    (site / layout.INDEX).write_text('{"name": "my app", "icons": []}')
    (site / layout.CARD).write_text('{"title": "a card game"}')
    demo.check_demo_dest(site, root, ["mlp"])


def test_the_cli_refuses_the_artifacts_folder_before_exporting(tmp_path):
    from tf_parity_export.export.cli import main

    out = tmp_path / "art"
    for dest in (out, out / "site", out / "mlp"):
        result = CliRunner().invoke(main, ["mlp", "--out", str(out), "--demo", str(dest)])
        assert result.exit_code == 1 and not out.exists()
        assert result.output.splitlines() == [f"error: --demo {dest}: is "
                                              f"{'the artifacts folder' if dest == out else 'inside the artifacts folder'}"
                                              f" {out}, whose files are checked byte for byte; choose a folder outside it"]


def test_a_users_files_are_never_replaced_nor_consumed(artifacts, tmp_path):
    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    look_alikes = {".index.html.tmp": b"mine", "models/.mlp.onnx.tmp": b"mine too",
                   ".demo.json.tmp-1-0000abcd": b"and mine"}
    for rel, data in look_alikes.items():
        (site / rel).write_bytes(data)
    demo.write_demo(["mlp"], artifacts, site)
    assert {rel: (site / rel).read_bytes() for rel in look_alikes} == look_alikes
    assert sorted(p.name for p in site.iterdir()) == sorted([".demo.json.tmp-1-0000abcd", ".index.html.tmp", LOCK,
                                                             "demo.js", "demo.json", "index.html", "models", "ort",
                                                             "ort_runner.js"])
    listing = json.loads((site / "demo.json").read_text())["files"]
    assert sorted(listing) == sorted(demo.sources(["mlp"], artifacts))
    demo.write_demo(["mlp", "nest_mlp"], artifacts, site)  # a previous demo's files are replaced
    assert "models/nest_mlp.onnx" in json.loads((site / "demo.json").read_text())["files"]
    demo.write_demo(["fancy_mlp"], artifacts, site)  # and the other models' stay listed while unchanged
    assert {"models/mlp.onnx", "models/fancy_mlp.onnx"} <= set(json.loads((site / "demo.json").read_text())["files"])

    for rel in ("index.html", "demo.json", "models/mlp.onnx", "ort/ort.wasm.min.js"):
        fresh = tmp_path / f"user-{rel.replace('/', '-')}"
        (fresh / rel).parent.mkdir(parents=True)
        (fresh / rel).write_text("the user's own")
        before = tree(fresh)
        with pytest.raises(UserError) as info:
            demo.write_demo(["mlp"], artifacts, fresh)
        assert str(info.value).startswith(f"--demo {fresh}: {rel} is there and was not written by")
        assert tree(fresh) == before
    (site / "index.html").write_text((site / "index.html").read_text() + "<!-- my edit -->")
    with pytest.raises(UserError, match="index.html is there and was not written by a previous --demo "
                                        r"\(or changed since\)"):
        demo.write_demo(["mlp"], artifacts, site)
    assert (site / "index.html").read_text().endswith("<!-- my edit -->")


def test_a_failed_write_leaves_nothing_behind(artifacts, tmp_path):
    """The file-size limit (a real setrlimit) cuts the 14 MB WASM binary: no temporary, no folder it made."""
    site = tmp_path / "site"
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, before[1]))
    try:
        with pytest.raises(UserError) as info:
            demo.write_demo(["mlp"], artifacts, site)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
    assert str(info.value) == f"--demo {site}: cannot write here (File too large); nothing was changed"
    assert not site.exists()
    demo.write_demo(["mlp"], artifacts, site)  # a complete earlier demo...
    previous = tree(site)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, before[1]))
    try:
        with pytest.raises(UserError):
            demo.write_demo(["mlp", "nest_mlp"], artifacts, site)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
    assert tree(site) == previous  # ...is as it was


def test_a_failed_demo_still_prints_the_verdict_and_exits_1(tmp_path):
    from tf_parity_export.export.cli import main

    site = tmp_path / "site"
    site.mkdir()
    (site / "models").write_text("a file of the user's where the demo wants a folder")
    result = CliRunner().invoke(main, ["mlp", "--out", str(tmp_path / "art"), "--demo", str(site)])
    assert result.exit_code == 1
    assert result.stdout.rstrip().splitlines()[-1] == "FAILED: --demo page not written"
    assert result.stderr.splitlines()[-1] == f"error: --demo {site}: cannot write here (File exists); nothing was changed"
    assert sorted(p.name for p in site.iterdir()) == ["models"]  # no ort/, no temporary, no lock file left
    assert json.loads((tmp_path / "art" / layout.REPORT).read_text())["passed"] is True  # the export itself passed


def test_a_killed_demos_temporaries_are_removed_by_the_next(artifacts, tmp_path):
    """A real process killed (SIGKILL) between staging and renaming: its recorded temporaries are
    removed by the next demo into that folder, and nothing else."""
    site = tmp_path / "site"
    site.mkdir()
    (site / ".index.html.tmp-1-user").write_text("the user's")
    child = ("import os, signal, sys\nfrom pathlib import Path\nfrom tf_parity_export.export import demo\n"
             "os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)\n"
             "demo.write_demo(['mlp'], Path(sys.argv[1]), Path(sys.argv[2]))\n")
    killed = subprocess.run([sys.executable, "-c", child, str(artifacts), str(site)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = [p.relative_to(site).as_posix() for p in site.rglob(".*.tmp-*")]
    assert len(left) == 1 + len(demo.sources(["mlp"], artifacts)) + 1  # the user's, every staged file, demo.json
    demo.write_demo(["mlp"], artifacts, site)
    assert [p.relative_to(site).as_posix() for p in site.rglob(".*.tmp-*")] == [".index.html.tmp-1-user"]
    assert (site / LOCK).read_text() == ""
