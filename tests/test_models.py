"""Every registered model builds under Keras 3, deterministically, and its
tf.function computes what eager computes."""

from __future__ import annotations

import numpy as np
import pytest

from tf_parity_export.models import MODELS, UnknownModelError, get_spec, register
from tf_parity_export.verify.inputs import random_cases

SPECS = list(MODELS.values())
IDS = list(MODELS)


def test_registry_has_the_five_seed_models():
    assert sorted(MODELS) == ["chimera", "fancy_mlp", "mlp", "nest_mlp", "sequential_mlp"]


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownModelError, match="known models: chimera, fancy_mlp, mlp"):
        get_spec("resnet")


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register(MODELS["mlp"])


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_builds_and_output_shape(spec):
    model = spec.build()
    for case in random_cases(spec):
        out = np.asarray(model(case.feed["x"]))
        batch = case.feed["x"].shape[0]
        want = tuple(batch if d is None else d for d in spec.outputs[0].shape)
        assert out.shape == want
        assert np.isfinite(out).all()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_same_seed_same_weights_other_seed_different(spec):
    a, b, c = spec.build(), spec.build(), spec.build(spec.seed + 1)
    assert len(a.weights) == len(b.weights) > 0
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert not all(np.array_equal(x, y) for x, y in zip(a.get_weights(), c.get_weights()))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_tf_function_equals_eager(spec):
    model = spec.build()
    fn = spec.serving_function(model)
    for case in random_cases(spec):
        eager = np.asarray(model(case.feed["x"]))
        graph = fn(case.feed["x"])
        assert list(graph) == [t.name for t in spec.outputs]
        np.testing.assert_allclose(graph[spec.outputs[0].name].numpy(), eager, rtol=spec.rtol, atol=spec.atol)


def test_fancy_constant_weight_is_a_non_trainable_weight():
    model = get_spec("fancy_mlp").build()
    assert [w.name for w in model.non_trainable_weights] == ["rand_weight"]
    assert model.rand_weight.shape == (20, 20)


@pytest.mark.parametrize("name", ["fancy_mlp", "chimera"])
def test_probe_measures_loop_and_branch(name):
    """The probe's path agrees with the model: replaying the measured path by hand gives the output."""
    spec = get_spec(name)
    model = spec.build()
    probe = spec.make_probe(model)
    for scale in (0.0, 1.0, 100.0):
        x = np.full((1, 20), scale, np.float32)
        path = probe.trace(x)
        h = probe.pre_loop(x).numpy() / 2.0**path.iterations
        expected = (h * 10 if path.scaled else h).sum()
        np.testing.assert_allclose(float(model(x)), expected, rtol=1e-5)
