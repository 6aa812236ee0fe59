"""Import TensorFlow quietly, and only when it is needed.

TensorFlow prints pages of oneDNN/CUDA/absl lines to the process's stderr
(file descriptor 2, from C++) at import time; `TF_CPP_MIN_LOG_LEVEL` no longer
silences all of them. We send fd 2 to a temporary file during the noisy calls
and replay it only if they fail, so a broken install still explains itself.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
import warnings
from types import ModuleType
from typing import Iterator

_tf: ModuleType | None = None


@contextlib.contextmanager
def quiet_stderr(replay: bool = True) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; replay it only on an exception.

    TensorFlow's C++ side (import, grappler during tf2onnx conversion) writes
    INFO lines straight to fd 2, past Python's logging and past
    `TF_CPP_MIN_LOG_LEVEL`. `replay=False` drops it even then: for a step
    whose failure is reported as data (a converter that cannot convert a
    model), where the exception's own message says why and the C++ side
    printed pages of MLIR locations.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            if replay:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_environment() -> None:
    """Set, before anything imports TensorFlow, what keeps its C++ side quiet for the process's life.

    TensorFlow reads these once, when it first logs; a plugin module that imports it
    at its top (as real plugins do) would otherwise bring back its start-up lines
    and later "failed call to cuInit" lines. Called before plugins and model files load.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # oneDNN's allocator otherwise keeps a pool as large as the biggest batch
    # ever run (600 MB after a million rows through chimera) for the life of the
    # process; the system allocator gives it back. Allocation only: same numbers.
    os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")


def import_tensorflow() -> ModuleType:
    """Return the `tensorflow` module, imported once with its log noise muted."""
    global _tf
    if _tf is not None:
        return _tf
    quiet_environment()
    with quiet_stderr():
        import tensorflow as tf  # noqa: PLC0415 (lazy on purpose)
    tf.get_logger().setLevel(logging.ERROR)
    # The reference must be float32. TensorFlow enables TF32 by default, which on
    # NVIDIA GPUs since Ampere rounds matrix-product inputs to 10 mantissa bits:
    # a GPU-visible reference would then drift like the runtimes it judges.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    # absl's own verbosity, not only its logger's level: TensorFlow saves and restores that verbosity
    # around every SavedModel it writes, which would put the logger back to WARNING
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    warnings.filterwarnings("ignore", module="keras")
    warnings.filterwarnings("ignore", module="tensorflow")
    _tf = tf
    return tf


@functools.cache
def tensorflow_available() -> bool:
    """True when TensorFlow imports (it is then imported, quietly)."""
    try:
        import_tensorflow()
    except ImportError:
        return False
    return True
