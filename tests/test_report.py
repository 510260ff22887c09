"""Tests of verifier.report: run lines and their words, the count line, the matrix, JSON records, --record and --accept lines."""

from __future__ import annotations

import io
from pathlib import Path

from verifier.diff import as_connection
from verifier.drift import FixtureCheck
from verifier.lab.run import ScenarioResult
from verifier.lab.runtime import Runtime
from verifier.match import Mismatch
from verifier.report import ResultsTable, accepted_line, count_line, matrix_table, recorded_lines, result_record
from verifier.scenario import Scenario
from verifier.wire.model import ACK, FIN, SYN
from verifier.wire.transcript import EventLine, SegmentLine

NODE = Runtime("node", "/usr/bin/node", "20.20.2")
BUN = Runtime("bun", "/opt/bun", "1.4.5")
PLAT = {"os": "linux", "kernel": "6.18.1-test", "label": "linux-6.18"}
DRIFT = FixtureCheck("caps/linux-6.18/node-20/destroy.txt", ("connection 1: outcome: rst-client (A) vs fin-client-first (B)",))


def L(side, flags, seq, ack):
    return SegmentLine(side, flags, seq, 0, ack if flags & ACK else 0)


CONN = [L("C", SYN, 0, 0), L("S", SYN | ACK, 0, 1), L("C", ACK, 1, 1), L("C", FIN | ACK, 1, 1), L("S", FIN | ACK, 1, 2), L("C", ACK, 2, 2)]


def run(name="destroy", status="held", runtime=NODE, connections=1, events=2, **kw) -> ScenarioResult:
    scenario = Scenario(name, Path(f"/x/{name}.mjs"), f"what {name} shows", expectation_source=f"/x/{name}.expect")
    evs = [EventLine("client", f"e{n}", (), float(n)) for n in range(events)]
    return ScenarioResult(scenario, runtime, "scapy", status, events=evs, packets=6 * connections,
                          connections=[as_connection(n + 1, CONN) for n in range(connections)], duration=0.25, **kw)


def test_run_lines_use_the_status_words_in_aligned_columns():
    out = io.StringIO()
    table = ResultsTable(out, total=4)
    table.add(run("a"))
    table.add(run("b", status="failed"))
    table.add(run("c", status="error"))
    table.add(run("d"), DRIFT)
    lines = out.getvalue().splitlines()
    assert [line.split("] ")[1].split()[0] for line in lines] == ["held", "FAILED", "ERROR", "DRIFTED"]
    assert lines[1].startswith("[ 2/4] FAILED  b ")
    assert len({line.index(" packets") for line in lines}) == 1  # DRIFTED does not push the columns


def test_header_and_count_line_grammar():
    for total, words in ((1, "1 scenario run on"), (2, "2 scenario runs on")):
        out = io.StringIO()
        ResultsTable(out, total=total).start(PLAT, [NODE], "scapy", 2)
        assert out.getvalue().startswith(f"verifier run: {words} linux 6.18.1-test, node 20.20.2, capture scapy, 2 at a time")
    assert count_line(["held"]) == "1 run: 1 held, 0 failed, 0 errors"
    assert count_line(["held", "error"]) == "2 runs: 1 held, 0 failed, 1 error"
    assert count_line(["held", "drifted", "failed"]) == "3 runs: 1 held, 1 failed, 0 errors, 1 drifted"


def test_finish_details_a_drifted_run_and_counts_it():
    out = io.StringIO()
    results = [run("a"), run("d")]
    ResultsTable(out, total=2).finish(results, 1.5, ["a note"], fixtures=[None, DRIFT])
    text = out.getvalue()
    assert "--- d (node 20.20.2): DRIFTED" in text and "--- a (" not in text
    assert f"fixture: differs from {DRIFT.path} (how: below, where behaviour differs)" in text
    assert "where behaviour differs" in text and "a note" in text
    assert text.rstrip().endswith("2 runs: 1 held, 0 failed, 0 errors, 1 drifted in 1.50 s")
    # without fixtures (the pytest plugin's call) nothing drifts
    plain = io.StringIO()
    ResultsTable(plain, total=1).finish([run("d")], 1.0, [])
    assert plain.getvalue().strip() == "1 run: 1 held, 0 failed, 0 errors in 1.00 s"


def test_matrix_uses_the_run_lines_words():
    results = [run("a"), run("a", status="failed", runtime=BUN), run("b"), run("b", status="error", runtime=BUN),
               run("c"), run("c", runtime=BUN)]
    table = matrix_table(results, [None, None, None, None, DRIFT, None])
    rows = [line.split() for line in table.splitlines()]
    assert rows == [["scenario", "node", "bun"], ["a", "held", "FAILED"], ["b", "held", "ERROR"], ["c", "DRIFTED", "held"]]
    assert matrix_table(results[:2]).splitlines()[1].split() == ["a", "held", "FAILED"]


def test_result_record_with_and_without_a_fixture():
    r = run("d")
    plain = result_record(r)
    assert plain["passed"] is True and plain["status"] == "held" and plain["fixture"] is None
    drifted = result_record(r, DRIFT)
    assert drifted["passed"] is False and drifted["status"] == "drifted"
    assert drifted["fixture"] == {"path": DRIFT.path, "differences": list(DRIFT.differences)}
    same = result_record(r, FixtureCheck("f.txt"))
    assert same["passed"] is True and same["fixture"] == {"path": "f.txt", "differences": []}
    mismatch = Mismatch(4, "segment differs", "C > S  F. 1:1(0) ack 1", "C > S  R. 1:1(0) ack 1", "flags", "F.", "R.")
    failed = result_record(run("d", status="failed", mismatches=[mismatch]), DRIFT)
    assert failed["status"] == "failed" and failed["passed"] is False and failed["fixture"]["differences"]
    assert failed["mismatches"][0]["source"] == "/x/d.expect" and failed["mismatches"][0]["line"] == 4


def test_recorded_lines_say_exactly_what_was_written():
    nothing = run("refused", status="error", problems=["the capture could not start"])
    lines = recorded_lines(12, [(nothing, "no capture: the capture could not start")], "captures/linux-6.18/", ["node-20"])
    assert lines == ["fixtures: 12 written under captures/linux-6.18/ (node-20), 1 not recorded",
                     "  not recorded: refused (node-20): no capture: the capture could not start"]
    assert recorded_lines(13, [], "c/linux-6.18/", ["node-20", "bun-1"]) == [
        "fixtures: 13 written under c/linux-6.18/ (node-20, bun-1), 0 not recorded"]


def test_accepted_line_counts_what_the_expectation_holds():
    r = run("close", connections=2, events=9)
    assert accepted_line(r, "test/close.expect") == \
        "accepted: wrote test/close.expect (2 connections, 12 segments, 9 events) from node 20.20.2"
    one = run("quiet", connections=0, events=1)
    assert accepted_line(one, "q.expect") == "accepted: wrote q.expect (0 connections, 0 segments, 1 event) from node 20.20.2"
