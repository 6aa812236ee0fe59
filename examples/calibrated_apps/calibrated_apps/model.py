"""Builders: seed -> a built keras.Model whose BatchNormalization statistics come from random inputs."""

import keras
import numpy as np

from tf_parity_export import calibrate_batch_norms


def _calibrated(make, seed: int, low: float = 0.0, high: float = 1.0) -> keras.Model:
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)
    model = make()
    shape = (16, *model.inputs[0].shape[1:])
    rows = np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)  # like the spec's random cases
    calibrate_batch_norms(model, rows)
    return model


def build_mobilenetv2(seed: int) -> keras.Model:
    return _calibrated(lambda: keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35), seed)


def build_efficientnetb0(seed: int) -> keras.Model:
    # EfficientNet rescales its input itself (x / 255 inside the model): its random cases are pixels in [0, 255)
    return _calibrated(lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3)), seed, 0.0, 255.0)


def build_resnet50(seed: int) -> keras.Model:
    return _calibrated(lambda: keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3)), seed)
