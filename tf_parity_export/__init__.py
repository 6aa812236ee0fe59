"""tf-parity-export: export TensorFlow/Keras 3 models and prove every runtime computes the same function.

The public API (stable):

    from tf_parity_export import ModelSpec, TensorSig, export_models, verify_models
    from tf_parity_export import calibrate_batch_norms  # untrained architectures made testable

The repository keeps its three packages as top-level folders (`models/`,
`export/`, `verify/`); installing maps them under this one import name
(`tf_parity_export.models`, `.export`, `.verify`), so a user's own `models/`
or `verify/` never shadows ours, nor ours theirs.

`export_models` and `verify_models` are imported on first use: importing this
package (as both CLIs do for `--help`) does not import TensorFlow or onnxruntime.
"""

from __future__ import annotations

from typing import Any

from .models import ModelSpec, TensorSig

__all__ = ["ModelSpec", "TensorSig", "calibrate_batch_norms", "export_models", "verify_models"]


def __getattr__(name: str) -> Any:
    if name == "export_models":
        from .export import export_models

        return export_models
    if name == "verify_models":
        from .verify import verify_models

        return verify_models
    if name == "calibrate_batch_norms":
        from .models.calibrate import calibrate_batch_norms

        return calibrate_batch_norms
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
