"""`python -m tf_parity_export.export` is `export-models`."""

from .cli import main

main()
