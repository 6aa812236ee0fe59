"""`python -m tf_parity_export.verify` is `verify-models`."""

from .cli import main

main()
