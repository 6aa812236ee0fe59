"""Models from other distributions, by entry point: listed lazily, broken ones one line each,
and the example plugin installed into a real virtual environment and run through the commands."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tf_parity_export.models import MODELS, PluginError, get_spec, plugins
from tf_parity_export.models.errors import ExportError
from tf_parity_export.verify import layout

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from tf_parity_export.{}.cli import main; sys.argv[0] = '{}'; main()"


def fake_distribution(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """An installed distribution as importlib.metadata sees it: a .dist-info with entry_points.txt."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{lines}")
    for name, text in modules.items():
        (site / f"{name}.py").write_text(text)


def run(tool: str, args: list[str], site: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", CLI.format(tool, f"{tool}-models"), *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


SPEC_HEAD = "from tf_parity_export import ModelSpec, TensorSig\nX = (TensorSig('x', (None, 20)),)\n"


@pytest.fixture
def broken_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "good-plugin", {"extra_mlp": "good_spec:SPEC", "pair": "good_spec:several"},
                      {"good_spec": SPEC_HEAD + (
        "SPEC = ModelSpec(name='extra_mlp', builder='tf_parity_export.models.mlp:build_mlp', summary='an extra mlp',"
        " inputs=X, outputs=(TensorSig('logits', (None, 10)),))\n"
        "import dataclasses\n"
        "def several():\n"
        "    return [dataclasses.replace(SPEC, name=n) for n in ('twin_a', 'twin_b')]\n")})
    fake_distribution(site, "bad-plugins", {
        "missing": "no_such_module:SPEC",
        "number": "numbers_mod:SPEC",
        "dup": "dup_spec:SPEC",
        "nobatch": "nobatch_spec:SPEC",
    }, {
        "numbers_mod": "SPEC = 42\n",
        "dup_spec": SPEC_HEAD + "SPEC = ModelSpec(name='mlp', builder='a:b', summary='s', inputs=X, outputs=X)\n",
        "nobatch_spec": SPEC_HEAD + "SPEC = ModelSpec(name='nobatch', builder='a:b', summary='s', "
                                    "inputs=(TensorSig('x', (20,)),), outputs=X)\n",
    })
    # a plugin module that leaves a mark when imported: --help must not import it
    fake_distribution(site, "heavy-plugin", {"heavy": "heavy_spec:SPEC"}, {"heavy_spec": (
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\n" + SPEC_HEAD +
        "SPEC = ModelSpec(name='heavy', builder='tf_parity_export.models.mlp:build_mlp', summary='h', inputs=X,"
        " outputs=(TensorSig('logits', (None, 10)),))\n")})
    return site


def test_list_shows_plugins_and_one_line_per_broken_one(broken_site):
    result = run("export", ["--list"], broken_site)
    assert result.returncode == 1, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()]
    assert listed == [*MODELS, "extra_mlp", "twin_a", "twin_b", "heavy"]  # every good model still lists
    assert "[plugin: good-plugin 1.0, entry point extra_mlp]" in result.stdout
    errors = result.stderr.splitlines()
    assert len(errors) == 4 and "Traceback" not in result.stderr
    where = "of distribution bad-plugins 1.0: "
    assert errors[0] == (f"error: plugin entry point 'dup' (dup_spec:SPEC) {where}model name 'mlp' is already "
                         "registered by tf-parity-export itself; rename it")
    assert errors[1] == (f"error: plugin entry point 'missing' (no_such_module:SPEC) {where}cannot be loaded "
                         "(ModuleNotFoundError: No module named 'no_such_module')")
    assert errors[2] == (f"error: plugin entry point 'nobatch' (nobatch_spec:SPEC) {where}model 'nobatch': every "
                         "input needs the batch dimension first, as None: shape=(None, ...)")
    assert errors[3] == (f"error: plugin entry point 'number' (numbers_mod:SPEC) {where}names a int, not a "
                         "ModelSpec or a callable returning ModelSpecs")


@pytest.fixture
def installed(monkeypatch):
    """Make a site folder's distributions visible to this process, as if installed; undone after the test."""
    from tf_parity_export.models import registry

    saved = dict(MODELS)

    def install(site: Path) -> None:
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.setattr(registry, "_plugins_loaded", False)
        monkeypatch.setattr(plugins, "ERRORS", [])
        monkeypatch.setattr(plugins, "ORIGINS", {})

    yield install
    MODELS.clear()
    MODELS.update(saved)
    for module in ("good_spec", "numbers_mod", "dup_spec", "nobatch_spec", "heavy_spec", "raising_spec"):
        sys.modules.pop(module, None)


def test_verify_all_shows_a_broken_plugin_as_a_failed_row(broken_site, installed, artifacts):
    from tf_parity_export.verify.cli import main as verify_main

    installed(broken_site)
    result = CliRunner().invoke(verify_main, ["--all", "--artifacts", str(artifacts), "--providers", "ort_cpu"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line for line in lines[2:lines.index("")]}
    assert all(rows[name].split()[2] == "ok" for name in saved_seeds())  # the seed models still verify
    assert all("ERROR" in rows[ep] for ep in ("dup", "missing", "nobatch", "number"))
    assert result.stdout.rstrip().splitlines()[-1].startswith("FAILED")
    assert "error: plugin entry point 'number' (numbers_mod:SPEC) of distribution bad-plugins 1.0: names a int, " \
           "not a ModelSpec or a callable returning ModelSpecs" in result.stderr.splitlines()


def saved_seeds() -> list[str]:
    from tf_parity_export.models import seed_models

    return seed_models()


def test_help_does_not_load_plugins(broken_site):
    result = run("export", ["--help"], broken_site)
    assert result.returncode == 0 and "[MODEL]..." in result.stdout
    assert not (broken_site.parent / "imported").exists()
    assert run("verify", ["--help"], broken_site).returncode == 0
    assert not (broken_site.parent / "imported").exists()


def test_plugin_model_exports_and_verifies_beside_a_broken_one(broken_site, installed, tmp_path):
    """A broken plugin does not stop a good one: export and verify it by name."""
    from tf_parity_export.export.cli import main as export_main
    from tf_parity_export.verify.cli import main as verify_main

    installed(broken_site)
    out = tmp_path / "art"
    result = CliRunner().invoke(export_main, ["extra_mlp", "--out", str(out), "--no-verify"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / layout.INDEX).read_text())["models"].keys() == {"extra_mlp"}
    verified = CliRunner().invoke(verify_main, ["extra_mlp", "--artifacts", str(out), "--providers", "ort_cpu"])
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.rstrip().splitlines()[-1].startswith("PASSED")


def test_builder_that_raises_is_one_line_exit_1(tmp_path, installed):
    from tf_parity_export.export.cli import main as export_main

    site = tmp_path / "site"
    fake_distribution(site, "raising-plugin", {"raising": "raising_spec:SPEC"}, {"raising_spec": SPEC_HEAD + (
        "SPEC = ModelSpec(name='raising', builder='_plugin_builders:raises', summary='r', inputs=X, outputs=X)\n")})
    installed(site)
    result = CliRunner().invoke(export_main, ["raising", "--out", str(tmp_path / "art")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    line = ("raising (plugin entry point 'raising' (raising_spec:SPEC) of distribution raising-plugin 1.0): "
            "builder _plugin_builders:raises raised RuntimeError: no weights file at /nowhere")
    assert f"error: {line}" in result.stderr.splitlines()
    assert result.stdout.rstrip().splitlines()[-1].startswith("FAILED")


@pytest.mark.parametrize("builder,outputs,message", [
    ("_plugin_builders:not_a_model", None, "builder _plugin_builders:not_a_model returned a int, not a keras.Model"),
    ("_plugin_builders:unbuilt", None, "returned a Keras model that is not built"),
    ("tf_parity_export.models.mlp:build_mlp", (None, 5), "output 'logits' is float32 (None, 10), the spec declares "
                                                         "float32 (None, 5)"),
], ids=["not-a-model", "unbuilt", "wrong-outputs"])
def test_bad_plugin_model_fails_alone(as_plugin, tmp_path, builder, outputs, message):
    from tf_parity_export.export import export_models
    from tf_parity_export.models.spec import TensorSig

    base = get_spec("mlp")
    name = as_plugin(dataclasses.replace(base, name="bad", builder=builder,
                                         outputs=(TensorSig("logits", outputs or (None, 10)),)))
    with pytest.raises(ExportError, match="^bad \\(plugin entry point 'bad'") as e:
        export_models([name], tmp_path / "a", verify=False)
    assert message in str(e.value) and "\n" not in str(e.value)
    # beside a good model: the good one is exported and verified, the bad one is a failed row
    _, report = export_models(["mlp", name], tmp_path / "b")
    assert [m.model for m in report.models] == ["mlp", "bad"]
    assert report.models[0].error == "" and not report.models[0].failures()
    assert len(report.failures()) == 1 and message in report.failures()[0]


def test_uncovered_path_fails_unless_allowed(as_plugin, tmp_path):
    """chimera without its probe and with seed 0: no input brings the norm entering its loop
    down to 1 (see models/chimera.py), so the zero-iteration loop is unreachable;
    that fails the run, by node name, unless --allow-uncovered."""
    from click.testing import CliRunner

    from tf_parity_export.export.cli import main as export_main
    from tf_parity_export.verify.cli import main as verify_main

    as_plugin(dataclasses.replace(get_spec("chimera"), name="chimera_noprobe", probe=None, seed=0))
    out = tmp_path / "art"
    result = CliRunner().invoke(export_main, ["chimera_noprobe", "--out", str(out), "--no-verify"])
    assert result.exit_code == 0, result.output
    assert "chimera_noprobe: coverage search found no input for 'Loop Loop_13 ran 0 times'" in result.output
    args = ["chimera_noprobe", "--artifacts", str(out), "--providers", "ort_cpu"]
    failed = CliRunner().invoke(verify_main, args)
    assert failed.exit_code == 1
    assert ("error: chimera_noprobe: no input covers 'Loop Loop_13 ran 0 times' (coverage; --allow-uncovered "
            "to accept)") in failed.output
    allowed = CliRunner().invoke(verify_main, [*args, "--allow-uncovered"])
    assert allowed.exit_code == 0, allowed.output
    assert "Loop Loop_13 ran 0 times (MISSING)" in allowed.output


# ------------------------------------------------------------------ a real virtual environment


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with this project (`pip install .`, not editable) and the example plugin.

    TensorFlow and the other dependencies are not downloaded again: the venv sees the
    site-packages that hold them through a .pth file (and pip runs with --no-deps)."""
    root = tmp_path_factory.mktemp("venv")
    env = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next((env / "lib").glob("python*/site-packages"))
    deps = Path(importlib.util.find_spec("tensorflow").origin).parents[1]
    (site / "shared.pth").write_text(f"{deps}\n")
    src = root / "src"  # copies: building writes build/ and *.egg-info next to the sources
    src.mkdir()
    for part in ("pyproject.toml", "README.md", "tf_parity_export", "models", "export", "verify"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, src / part)
    # the Node project ships in the wheel (package-data); its node_modules is not part of it
    shutil.copytree(ROOT / "node", src / "node", ignore=shutil.ignore_patterns("node_modules"))
    shutil.copytree(ROOT / "examples" / "my_plugin", root / "my_plugin")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-build-isolation", "--no-index", str(src), str(root / "my_plugin")],
                   check=True, capture_output=True)
    return env


def test_installed_only_tf_parity_export_is_importable(venv, tmp_path):
    code = ("import importlib.util, importlib.metadata as md, json, tf_parity_export; print(json.dumps(["
            "[m for m in ('models', 'export', 'verify') if importlib.util.find_spec(m)],"
            "sorted({str(f).split('/')[0] for f in md.distribution('tf-parity-export').files} - {'..'}),"
            "tf_parity_export.__file__]))")
    found, top, where = json.loads(subprocess.run([venv / "bin" / "python", "-c", code], cwd=tmp_path, check=True,
                                                  capture_output=True, text=True).stdout)
    assert found == []
    assert top == ["tf_parity_export", "tf_parity_export-0.1.0.dist-info"]
    assert where.startswith(str(venv))  # the installed copy, not the repository


def test_a_local_models_folder_shadows_nothing(venv, tmp_path):
    for name in ("models", "export", "verify"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name}')\n")
    env = {**os.environ, "PYTHONPATH": "."}
    for args in (["-m", "tf_parity_export.verify", "--help"], ["-m", "tf_parity_export.export", "--list"]):
        result = subprocess.run([venv / "bin" / "python", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_example_plugin_lists_exports_and_verifies_with_generic_coverage(venv, tmp_path):
    listed = subprocess.run([venv / "bin" / "export-models", "--list"], capture_output=True, text=True, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "gated_decay" in listed.stdout and "[plugin: my-parity-plugin 0.1.0, entry point gated_decay]" in listed.stdout

    out = tmp_path / "art"
    exported = subprocess.run([venv / "bin" / "export-models", "gated_decay", "--out", str(out)],
                              capture_output=True, text=True, cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "gated_decay control flow, measured in onnxruntime on model.onnx" in exported.stdout
    verified = subprocess.run([venv / "bin" / "verify-models", "gated_decay", "--artifacts", str(out), "--providers",
                               "ort_cpu,saved_model", "--json", str(tmp_path / "r.json")],
                              capture_output=True, text=True, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    model = json.loads((tmp_path / "r.json").read_text())["models"][0]
    assert model["passed"] and model["coverage"] and all(model["coverage"].values())
    nodes = model["graph_coverage"]["nodes"]
    assert sorted(n["op"] for n in nodes) == ["If", "Loop"]
    paths = model["graph_coverage"]["cases"]
    loop = next(n["node"] for n in nodes if n["op"] == "Loop")
    branch = next(n["node"] for n in nodes if n["op"] == "If")
    trips = {t for p in paths.values() for t in p["trips"][loop]}
    assert 0 in trips and 1 in trips and max(trips) >= 2
    assert {k for p in paths.values() for k, n in p["branches"][branch].items() if n} == {"then", "else"}
    random = [p for name, p in paths.items() if name.startswith("random")]
    assert not ({t for p in random for t in p["trips"][loop]} >= {0, 1, 2}), "random inputs alone cover it"
    assert (out / "gated_decay" / layout.CASES).is_file()  # the covering inputs are stored with the artifacts


def test_check_covers_the_seed_models_with_a_plugin_installed(venv):
    result = subprocess.run([venv / "bin" / "export-models", "--all", "--check"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is current (5 models: model files byte-identical to a fresh export" in result.stdout


def test_plugins_that_import_tensorflow_at_their_top_stay_quiet_and_long_names_line_up(tmp_path):
    """TF's C++ start-up lines (absl, oneDNN, cuInit) stay hidden whichever module imports it first."""
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "loud-plugin", {"a_rather_long_model_name_indeed": "loud_spec:SPEC"}, {"loud_spec": (
        "import tensorflow as tf  # at the top, as real plugins do\n" + SPEC_HEAD +
        "SPEC = ModelSpec(name='a_rather_long_model_name_indeed', builder='tf_parity_export.models.mlp:build_mlp',"
        " summary='loud', inputs=X, outputs=(TensorSig('logits', (None, 10)),))\n")})
    listed = run("export", ["--list"], site)
    assert listed.returncode == 0, listed.stderr
    noise = ("absl::InitializeLog", "oneDNN", "cuInit", "cpu_feature_guard", "cudart_stub", "I0000", "E0000", "W0000")
    assert not [line for line in listed.stderr.splitlines() if any(n in line for n in noise)], listed.stderr
    columns = {line.index(line.split()[1]) for line in listed.stdout.splitlines()}
    assert columns == {len("a_rather_long_model_name_indeed") + 2}  # every summary starts in one column
    exported = run("export", ["a_rather_long_model_name_indeed", "--out", str(tmp_path / "a"), "--providers",
                              "tf_eager,ort_cpu"], site)
    assert exported.returncode == 0, exported.stderr
    assert not [line for line in exported.stderr.splitlines() if any(n in line for n in noise)], exported.stderr
