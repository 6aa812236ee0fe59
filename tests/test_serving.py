"""Serving layouts: Triton model repository (checked with Triton's own schema) and TF Serving."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format

from tf_parity_export.export.serving import write_tfserving, write_triton
from tritonclient.grpc import model_config_pb2

from tf_parity_export.models import MODELS, get_spec
from tf_parity_export.verify.inputs import random_cases

IDS = list(MODELS)


@pytest.fixture(scope="module")
def triton_repo(artifacts, tmp_path_factory):
    repo = tmp_path_factory.mktemp("serving") / "triton"
    for name in MODELS:
        write_triton(get_spec(name), artifacts / name, repo)
    return repo


def test_repository_has_an_onnx_and_a_tf_entry_per_model(triton_repo):
    assert sorted(p.name for p in triton_repo.iterdir()) == sorted([*MODELS, *(f"{n}_tf" for n in MODELS)])
    assert [p.name for p in triton_repo.parent.iterdir() if p.name.startswith(".")] == []
    for name in MODELS:
        assert (triton_repo / name / "1" / "model.onnx").is_file()
        assert (triton_repo / f"{name}_tf" / "1" / "model.savedmodel" / "saved_model.pb").is_file()


@pytest.mark.parametrize("name", IDS)
def test_configs_parse_with_tritons_schema(triton_repo, name):
    spec = get_spec(name)
    onnx_cfg = text_format.Parse((triton_repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    tf_cfg = text_format.Parse((triton_repo / f"{name}_tf" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (onnx_cfg.name, onnx_cfg.backend) == (name, "onnxruntime")
    assert (tf_cfg.name, tf_cfg.platform) == (f"{name}_tf", "tensorflow_savedmodel")
    for cfg in (onnx_cfg, tf_cfg):
        assert [i.name for i in cfg.input] == ["x"] and [o.name for o in cfg.output] == [o.name for o in spec.outputs]
        assert all(i.data_type == model_config_pb2.TYPE_FP32 for i in cfg.input)
        if spec.outputs[0].shape == ():  # sums over the batch: never batch requests together
            assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
            assert list(cfg.input[0].dims) == [-1, 20]
            assert list(cfg.output[0].dims) == [1] and list(cfg.output[0].reshape.shape) == []
        else:
            assert cfg.max_batch_size == 64 and cfg.HasField("dynamic_batching")
            assert list(cfg.input[0].dims) == [20]
            assert list(cfg.output[0].dims) == list(spec.outputs[0].shape[1:])


@pytest.mark.parametrize("name", ["mlp", "fancy_mlp"])
def test_repository_onnx_runs(artifacts, triton_repo, name):
    spec = get_spec(name)
    a = ort.InferenceSession(str(triton_repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(artifacts / name / "model.onnx"), providers=["CPUExecutionProvider"])
    for case in random_cases(spec):
        np.testing.assert_array_equal(a.run(None, case.feed)[0], b.run(None, case.feed)[0])


def test_tfserving_layout(artifacts, tmp_path):
    from tf_parity_export.models.lazy_tf import import_tensorflow

    tf = import_tensorflow()
    write_tfserving(get_spec("fancy_mlp"), artifacts / "fancy_mlp", tmp_path / "serving")
    version = tmp_path / "serving" / "fancy_mlp" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    assert serve(x=tf.zeros((2, 20)))["total"].shape == ()


def test_cli_format_triton(tmp_path):
    from click.testing import CliRunner

    from tf_parity_export.export.cli import main

    result = CliRunner().invoke(main, ["mlp", "--format", "triton", "--out", str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    assert "wrote a triton model repository for 1 models" in result.output
    # the lock file is a file: servers take only folders for models
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == [".export.lock", "mlp", "mlp_tf"]
