"""`chimera`: Sequential([NestMLP(), Dense(20), FancyMLP()]), the seed's last example.

This is the model the seed's code cannot build under Keras 3 as written: the
Sequential builds FancyMLP symbolically, without AutoGraph (see fancy_mlp.py).
"""

from __future__ import annotations

from typing import Any

from .fancy_mlp import FancyMLP, LoopProbe
from .lazy_tf import import_tensorflow
from .nest_mlp import NestMLP
from .seeding import build_seeded

import_tensorflow()
import keras  # noqa: E402


def build_chimera(seed: int) -> keras.Model:
    """Build chimera. Its registry seed is 10, not 0: with seed 0 no input can
    bring the norm entering FancyMLP's loop down to 1 (a gradient search from
    64 starts bottoms out at 2.36), so "the loop runs 0 times" would be
    unreachable and the control-flow coverage incomplete."""
    return build_seeded(lambda: keras.Sequential([NestMLP(), keras.layers.Dense(20), FancyMLP()]), seed)


def probe_chimera(model: keras.Sequential) -> LoopProbe:
    *front, fancy = model.layers

    def pre_loop(x: Any) -> Any:
        for layer in front:
            x = layer(x)
        return fancy.hidden(x)

    return LoopProbe(pre_loop)
