"""pytest plugin: `verifier_run` runs your scenario on the wire, `verifier_show` reads a capture.

    def test_my_server_closes_with_fin(verifier_run):
        result = verifier_run("tests/scenarios/idle-close.mjs")   # + idle-close.expect beside it
        assert result.passed, result.report

    def test_capture(verifier_show):
        (conn,) = verifier_show("prod.pcap")
        assert conn["outcome"] == "fin-client-first"

`verifier_run` needs root (network namespaces, capture): without it the test is skipped, except
under CI=true, where it fails (a skipped check is no check).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class RunOutcome:
    """What `verifier_run` returns: the verdict and everything behind it."""

    passed: bool
    status: str  # held / failed / error
    report: str  # mismatches, problems and the ladder, as `verifier run` prints them
    connections: list[dict] = field(default_factory=list)  # `show --json` records
    events: list[dict] = field(default_factory=list)
    pcap: str | None = None
    raw: object = None  # the lab's ScenarioResult


def _report(result) -> str:
    import io

    from .report import ResultsTable

    buffer = io.StringIO()
    table = ResultsTable(buffer, total=1)
    table.finish([result], result.wall, [], show_ladder=True)
    return buffer.getvalue()


@pytest.fixture
def verifier_run(tmp_path):
    """Run a scenario program (path or built-in name) in its own namespace; returns a RunOutcome."""
    from .lab.host import os_family
    from .errors import UsageError, VerifierError
    from .expectation import parse
    from .lab.netns import check_privileges, remove_leftovers
    from .lab.run import run_scenario
    from .lab.runtime import resolve as resolve_runtime
    from .report import result_record
    from .scenario import resolve

    try:
        check_privileges()
    except VerifierError as e:
        if os.environ.get("CI"):
            pytest.fail(f"verifier_run cannot run here: {e}")
        pytest.skip(str(e))
    remove_leftovers()

    def run(scenario: str | os.PathLike, runtime: str = "node", backend: str = "scapy") -> RunOutcome:
        (s,) = resolve([str(scenario)])
        if s.expectation is None:
            raise UsageError(s.missing_expectation())
        exp = parse(s.expectation, os_family(), s.expectation_source)
        result = run_scenario(s, exp, resolve_runtime(runtime), backend, Path(tmp_path))
        record = result_record(result)
        return RunOutcome(result.passed, result.status, _report(result), record["connections"], record["events"],
                          result.pcap_path, result)

    return run


@pytest.fixture
def verifier_show():
    """Read a pcap/pcapng file: its TCP connections as `verifier show --json` records."""
    from .wire.show import CaptureReading, connection_record

    def show(path: str | os.PathLike) -> list[dict]:
        with open(path, "rb") as f:
            return [connection_record(c) for c in CaptureReading(f).connections()]

    return show
