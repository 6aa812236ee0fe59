"""Deterministic weights: the same seed gives the same weights in every process."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def build_seeded(make: Callable[[], Any], seed: int, input_dim: int = 20) -> Any:
    """Create a model under a fixed Keras seed and build it on a dummy batch.

    Keras draws initial weights from a global seed generator in creation
    order; resetting it right before construction makes the weights depend on
    the seed alone, not on what else this process built before.
    """
    from .lazy_tf import import_tensorflow

    import_tensorflow()
    import keras

    # clear_session resets Keras' name counters too: layer names (and so the
    # weight paths in the artifacts) do not depend on what was built before.
    # free_memory=False skips a gc.collect() that costs 0.13 s a model.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)
    model = make()
    model(np.zeros((1, input_dim), dtype=np.float32))
    return model
