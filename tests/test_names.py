"""Model names (issue 20, item 1): a name is a folder beside the others in an artifacts root, so it
must not be one of the root's own names, end in a newline or be too long for the disk; a name two
plugins register is refused, naming both; the Triton layout's `<name>_tf` entries cannot collide;
tensor names reach config.pbtxt escaped, so Triton's own parser reads them back exactly."""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from test_plugins import SPEC_HEAD, fake_distribution, run
from tf_parity_export.models import MODELS, PluginError, TensorSig, get_spec, plugins
from tf_parity_export.verify import layout

LONG = "m" * 300


@pytest.mark.parametrize("name", [
    layout.INDEX, layout.REPORT, "report.html", layout.CARD, layout.SAVED_MODEL, layout.ONNX, layout.TFLITE,
    layout.WEIGHTS, layout.CASES, "Manifest.JSON", ".export.lock", ".hidden", "-x", "mlp\n", "a/b", "a b", "",
    LONG, "m" * (plugins.MAX_NAME + 1),
])
def test_a_name_that_cannot_be_a_model_folder_is_refused(name):
    with pytest.raises(PluginError) as info:
        plugins.check_name(name)
    assert "\n" not in str(info.value) and str(info.value).startswith("model name ")


def test_a_plain_name_up_to_the_limit_is_accepted():
    for name in ("m" * plugins.MAX_NAME, "a.b-c_1", "report", "manifest", "_x"):
        plugins.check_name(name)


def test_the_reserved_names_are_the_layouts_names():
    """Everything an artifacts root or a model folder holds besides model folders is reserved
    (layout.py's names, the report page beside report.json, the lock of export/atomic.py)."""
    from tf_parity_export.export.atomic import LOCK
    from tf_parity_export.verify.render import page_path

    mine = {getattr(layout, n) for n in ("INDEX", "REPORT", "CARD", "SAVED_MODEL", "ONNX", "TFLITE", "WEIGHTS",
                                        "CASES")}
    assert mine | {page_path(layout.REPORT).name, LOCK} <= plugins.RESERVED_NAMES


@pytest.fixture
def hostile_site(tmp_path):
    """Installed plugins with names an artifacts root cannot hold, beside a good one."""
    site = tmp_path / "site"
    def spec(name: str) -> str:
        return (f"ModelSpec(name={name!r}, builder='tf_parity_export.models.mlp:build_mlp', summary='s', "
                "inputs=X, outputs=(TensorSig('logits', (None, 10)),))")
    fake_distribution(site, "hostile-names", {"index": "names_spec:INDEX", "report": "names_spec:REPORT",
                                              "newline": "names_spec:NEWLINE", "long": "names_spec:LONG",
                                              "good": "names_spec:GOOD"},
                      {"names_spec": SPEC_HEAD + f"INDEX = {spec('manifest.json')}\nREPORT = {spec('report.json')}\n"
                                                 f"NEWLINE = {spec('mlp2' + chr(10))}\nLONG = {spec(LONG)}\n"
                                                 f"GOOD = {spec('fine_mlp')}\n"})
    return site


def test_installing_plugins_with_such_names_is_one_line_each(hostile_site, artifacts):
    listed = run("export", ["--list"], hostile_site)
    assert listed.returncode == 1 and "Traceback" not in listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [*MODELS, "fine_mlp"]
    errors = listed.stderr.splitlines()
    assert [e.split("'")[1] for e in errors] == ["index", "long", "newline", "report"]  # one line per entry point
    assert all(e.startswith("error: plugin entry point '") and "of distribution hostile-names 1.0: model name" in e
               for e in errors)
    # `verify-models --all` with them installed: each a failed row, the seed models verified, no traceback
    result = run("verify", ["--all", "--artifacts", str(artifacts), "--providers", "ort_cpu"], hostile_site)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line for line in lines[2:lines.index("")]}
    assert all(rows[name].split()[2] == "ok" for name in MODELS)
    assert all("ERROR" in rows[ep] for ep in ("index", "report", "newline", "long"))
    assert result.stdout.rstrip().splitlines()[-1].startswith("FAILED")
    assert not (artifacts / "manifest.json").is_dir() and (artifacts / "manifest.json").is_file()


@pytest.fixture
def twin_site(tmp_path):
    """Two distributions that both register `twin`."""
    site = tmp_path / "site"
    body = SPEC_HEAD + ("SPEC = ModelSpec(name='twin', builder='tf_parity_export.models.mlp:build_mlp', "
                        "summary='{}', inputs=X, outputs=(TensorSig('logits', (None, 10)),))\n")
    fake_distribution(site, "alpha-plugin", {"twin": "alpha_spec:SPEC"}, {"alpha_spec": body.format("alpha")})
    fake_distribution(site, "beta-plugin", {"twin": "beta_spec:SPEC"}, {"beta_spec": body.format("beta")})
    return site


def test_a_name_two_distributions_register_is_refused_naming_both(twin_site, tmp_path):
    both = ("model name 'twin' is registered by both the entry point 'twin' (alpha_spec:SPEC) of distribution "
            "alpha-plugin 1.0 and the entry point 'twin' (beta_spec:SPEC) of distribution beta-plugin 1.0; "
            "neither is used: uninstall one or rename it")
    for tool, args in (("export", ["twin", "--out", str(tmp_path / "art")]),
                       ("verify", ["twin", "--artifacts", str(tmp_path / "art")])):
        result = run(tool, args, twin_site)
        assert result.returncode == 1, result.stderr
        assert result.stderr.splitlines() == [f"error: {both}"]
        assert result.stdout == ""
    assert not (tmp_path / "art").exists()
    listed = run("export", ["--list"], twin_site)
    assert listed.returncode == 1 and "twin" not in listed.stdout
    assert listed.stderr.splitlines() == [f"error: {both}"]


def test_triton_refuses_a_name_that_is_another_models_tf_entry(monkeypatch, tmp_path):
    """`mlp_tf` would take the place of `mlp`'s TensorFlow entry (or `mlp`'s would take its place)."""
    from click.testing import CliRunner

    from tf_parity_export.export.cli import main

    clash = dataclasses.replace(get_spec("mlp"), name="mlp_tf")
    monkeypatch.setitem(MODELS, "mlp_tf", clash)
    monkeypatch.setitem(plugins.ORIGINS, "mlp_tf", plugins.Origin("mlp_tf", "tests:SPEC", "test-plugin 1.0"))
    repo = tmp_path / "repo"
    for names in (["mlp", "mlp_tf"], ["mlp_tf"]):  # the seed's entry may already be in the repository
        result = CliRunner().invoke(main, [*names, "--format", "triton", "--out", str(repo)])
        assert result.exit_code == 1 and not repo.exists()
        assert result.output.splitlines()[-1] == (
            "error: --format triton: model name 'mlp_tf' ends in '_tf', the Triton layout's name for model 'mlp''s "
            "TensorFlow entry; rename the model to export it for Triton")


@pytest.mark.parametrize("tensor", ['y"q', "back\\slash", "qu'ote # not a comment", "caf\u00e9 \u2713", "{}[]:"])
def test_triton_config_escapes_tensor_names_for_tritons_parser(tensor):
    """Parsed by the protobuf text-format parser into Triton's own ModelConfig message: the
    names read back are exactly the spec's."""
    from tf_parity_export.export.serving import triton_config

    for base in ("mlp", "fancy_mlp"):  # batched, and a scalar output reshaped
        spec = get_spec(base)
        spec = dataclasses.replace(spec, inputs=(TensorSig(f"in {tensor}", (None, 20)),),
                                   outputs=(TensorSig(tensor, spec.outputs[0].shape),))
        plugins.check_spec(spec)  # a name a plugin may have
        for backend in ("onnx", "tensorflow"):
            cfg = text_format.Parse(triton_config(spec, base, backend), model_config_pb2.ModelConfig())
            assert [i.name for i in cfg.input] == [f"in {tensor}"] and [o.name for o in cfg.output] == [tensor]
            assert cfg.name == base


def test_a_tensor_name_with_a_control_character_is_refused():
    spec = dataclasses.replace(get_spec("mlp"), outputs=(TensorSig("logits\nerror: fake", (None, 10)),))
    with pytest.raises(PluginError, match="must be unique, non-empty strings of printable characters"):
        plugins.check_spec(spec)
