"""Stress: the catalogue, run again and again (bounded), is the same on the wire every time.

A scenario whose wire differs between runs is a bug to fix (make it deterministic), not to retry.
Compared as `verifier diff` compares: normalised (ports, ISNs, windows and how a data transfer is
cut into segments left out), per connection, with every named difference shown on failure."""

import tempfile
import time
from pathlib import Path

import pytest

from verifier.drift import run_behaviour
from verifier.diff import compare
from verifier.expectation import parse
from verifier.lab.run import run_many
from verifier.lab.runtime import resolve
from verifier.scenario import builtin

pytestmark = pytest.mark.privileged

ROUNDS = 3  # whole catalogue each; about 4 s a round with -j 2
TIME_BUDGET = 120  # seconds: stop starting new rounds after this


def test_catalogue_is_identical_on_the_wire_round_after_round():
    scenarios = builtin()
    node = resolve("node")
    jobs = [(s, parse(s.expectation, "linux", s.expectation_source), node) for s in scenarios]
    keep = Path(tempfile.mkdtemp(prefix="verifier-stress-"))
    first = None
    differences = []
    t0 = time.monotonic()
    rounds = 0
    while rounds < ROUNDS and time.monotonic() - t0 < TIME_BUDGET:
        results = run_many(jobs, "scapy", 2, keep)
        rounds += 1
        failed = [f"{r.scenario.name}: {r.status} {r.problems} {[m.text(r.scenario.expectation_source) for m in r.mismatches]}"
                  for r in results if not r.passed]
        assert not failed, f"round {rounds}: " + "\n".join(failed)
        if first is None:
            first = {r.scenario.name: r for r in results}
            continue
        for r in results:
            d = compare(run_behaviour(first[r.scenario.name]), run_behaviour(r))
            named = [n for c in d.connections for n in c.named] + [n for n in d.named if not n.startswith("event")]
            if named:
                differences.append(f"round {rounds}, {r.scenario.name}: " + "; ".join(named))
    assert rounds >= 2
    assert not differences, "\n".join(differences)
