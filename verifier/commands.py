"""The lab verbs of the command line (run, list, diff): argument wiring only."""

from __future__ import annotations


def register_lab_verbs(sub) -> None:
    return None
