"""Tests of verifier.summary: the Markdown of a run for a CI job summary, on synthetic results."""

from __future__ import annotations

from pathlib import Path

from verifier.diff import as_connection
from verifier.drift import FixtureCheck
from verifier.lab.run import ScenarioResult
from verifier.lab.runtime import Runtime
from verifier.match import Mismatch
from verifier.scenario import Scenario
from verifier.summary import summary_markdown
from verifier.wire.model import ACK, FIN, RST, SYN
from verifier.wire.transcript import EventLine, SegmentLine

NODE = Runtime("node", "/usr/bin/node", "20.20.2")
BUN = Runtime("bun", "/opt/bun", "1.4.5")
PLAT = {"os": "linux", "kernel": "6.18.1-test", "label": "linux-6.18"}


def L(side, flags, seq, ack):
    return SegmentLine(side, flags, seq, 0, ack if flags & ACK else 0)


CLOSE = [L("C", SYN, 0, 0), L("S", SYN | ACK, 0, 1), L("C", ACK, 1, 1), L("C", FIN | ACK, 1, 1), L("S", FIN | ACK, 1, 2), L("C", ACK, 2, 2)]
RESET = [L("C", SYN, 0, 0), L("S", SYN | ACK, 0, 1), L("C", ACK, 1, 1), L("C", RST | ACK, 1, 1)]
MISMATCH = Mismatch(12, "segment differs", "C > S  F. 1:1(0) ack 1", "C > S  R. 1:1(0) ack 1", "flags", "F.", "R.")


def run(name, status="held", runtime=NODE, segments=CLOSE, **kw) -> ScenarioResult:
    scenario = Scenario(name, Path(f"/x/{name}.mjs"), f"what {name} shows", expectation_source=f"/x/{name}.expect")
    events = [EventLine("client", "destroy()", (), 0.5), EventLine("server", "end", (), 0.7)]
    return ScenarioResult(scenario, runtime, "scapy", status, connections=[as_connection(1, segments)], events=events,
                          packets=len(segments), duration=0.125, **kw)


def sections(md: str) -> dict[str, str]:
    """'### title' -> its body."""
    parts = md.split("\n### ")
    return {p.split("\n", 1)[0]: p.split("\n", 1)[1] for p in parts[1:]}


def test_heading_and_table_of_every_run_in_the_run_lines_words():
    results = [run("client-end"), run("destroy-unread", status="failed", mismatches=[MISMATCH]),
               run("reset-while-connecting", status="error", runtime=BUN, problems=["the program exited with status 1"]),
               run("destroy")]
    drift = FixtureCheck("captures/linux-6.18/node-20/destroy.txt", ("connection 1: RST instead of FIN: A's client resets "
                                                                    "where B's client closes with a FIN",), ("C > S  R. | C > S  F.",))
    md = summary_markdown(PLAT, [NODE, BUN], results, [None, None, None, drift], elapsed=2.5)
    lines = md.splitlines()
    assert lines[0] == "## verifier run: linux 6.18.1-test (linux-6.18), node 20.20.2, bun 1.4.5"
    assert "4 runs: 1 held, 1 failed, 1 error, 1 drifted in 2.50 s" in lines
    head = lines.index("| scenario | runtime | status | packets | connections | duration |")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[head + 2: head + 6]]
    assert rows == [
        ["client-end", "node 20.20.2", "held", "6", "1", "0.125 s"],
        ["destroy-unread", "node 20.20.2", "**FAILED**", "6", "1", "0.125 s"],
        ["reset-while-connecting", "bun 1.4.5", "**ERROR**", "6", "1", "0.125 s"],
        ["destroy", "node 20.20.2", "**DRIFTED**", "6", "1", "0.125 s"],
    ]
    assert list(sections(md)) == ["destroy-unread (node 20.20.2): FAILED", "reset-while-connecting (bun 1.4.5): ERROR",
                                  "destroy (node 20.20.2): DRIFTED"]


def test_each_failure_or_drift_has_its_details_and_a_mermaid_diagram():
    results = [run("destroy-unread", status="failed", mismatches=[MISMATCH], segments=RESET),
               run("hang", status="error", problems=["the program did not finish within 20 s and was killed"]),
               run("destroy")]
    drift = FixtureCheck("caps/destroy.txt", ("outcome: rst-client (A) vs fin-client-first (B)",), ("C > S  R. | C > S  F.",))
    parts = sections(summary_markdown(PLAT, [NODE], results, [drift, None, drift]))
    failed = parts["destroy-unread (node 20.20.2): FAILED"]
    assert ("```text\n/x/destroy-unread.expect:12: segment differs: flags expected F. vs actual R.\n"
            "    expected: C > S  F. 1:1(0) ack 1\n    actual:   C > S  R. 1:1(0) ack 1\n```") in failed
    assert "Differs from the fixture `caps/destroy.txt`" in failed  # a FAILED run carries its fixture differences too
    error = parts["hang (node 20.20.2): ERROR"]
    assert "- problem: the program did not finish within 20 s and was killed" in error
    drifted = parts["destroy (node 20.20.2): DRIFTED"]
    assert "- outcome: rst-client (A) vs fin-client-first (B)" in drifted
    assert "```text\nC > S  R. | C > S  F.\n```" in drifted  # the table pipe inside a code block stays as it is
    for body, r in zip(parts.values(), results):
        diagram = body.split("```mermaid\n", 1)[1].split("\n```", 1)[0].splitlines()
        assert diagram[0] == "sequenceDiagram"
        assert sum("->>" in line for line in diagram) == len(r.connections[0].segments)  # 4 for the reset, 6 for a close
        assert any("destroy()" in line for line in diagram)


def test_all_held_is_a_table_without_sections():
    md = summary_markdown(PLAT, [NODE], [run("a"), run("b")])
    assert "###" not in md and "```" not in md
    assert "2 runs: 2 held, 0 failed, 0 errors" in md.splitlines()


def test_a_table_cell_cannot_break_the_table():
    r = run("a|b", status="error", problems=["x | y"])
    md = summary_markdown(PLAT, [NODE], [r])
    assert "| a\\|b | node 20.20.2 | **ERROR** |" in md
    assert "### a\\|b (node 20.20.2): ERROR" in md
