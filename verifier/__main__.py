"""`python -m verifier`: the same as the `verifier` console script."""

from .cli import run

run()
