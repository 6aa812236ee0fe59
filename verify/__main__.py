"""`python -m verify` is `verify-models`."""

from .cli import main

main()
