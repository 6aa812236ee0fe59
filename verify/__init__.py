"""The verifier: same inputs through every runtime, compared with TF eager.

Also home of the artifact contract (`verify.layout`), which the exporter writes.
"""

from .verifier import Report, verify_models

__all__ = ["Report", "verify_models"]
