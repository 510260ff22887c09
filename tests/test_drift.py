"""Tests of verifier.drift: a run against its fixture transcript, its status word, and runtimes against each other."""

from __future__ import annotations

from pathlib import Path

from verifier.diff import as_connection
from verifier.drift import FixtureCheck, check_fixture, fixture_note, run_behaviour, runtime_differences, status_of
from verifier.lab.run import ScenarioResult
from verifier.lab.runtime import Runtime
from verifier.scenario import Scenario
from verifier.wire.model import ACK, FIN, RST, SYN
from verifier.wire.transcript import EventLine, SegmentLine

NODE = Runtime("node", "/usr/bin/node", "20.20.2")
DENO = Runtime("deno", "/opt/deno", "2.9.6")


def L(side, flags, seq, ack, length=0):
    return SegmentLine(side, flags, seq, length, ack if flags & ACK else 0)


HS = [L("C", SYN, 0, 0), L("S", SYN | ACK, 0, 1), L("C", ACK, 1, 1)]
CLOSE3 = [L("C", FIN | ACK, 1, 1), L("S", FIN | ACK, 1, 2), L("C", ACK, 2, 2)]
CLOSE4 = [L("C", FIN | ACK, 1, 1), L("S", ACK, 1, 2), L("S", FIN | ACK, 1, 2), L("C", ACK, 2, 2)]
RESET = [L("C", RST | ACK, 1, 1)]
CLOSED = [EventLine("client", "destroy()", (), 1.0), EventLine("server", "end", (), 1.1),
          EventLine("client", "close", (("hadError", False),), 1.2)]


def run(*connections, events=CLOSED, status="held", runtime=NODE, name="destroy", pcap=b"pcap") -> ScenarioResult:
    scenario = Scenario(name, Path(f"/x/{name}.mjs"), "destroy() closes with a FIN")
    return ScenarioResult(scenario, runtime, "scapy", status, events=list(events), pcap=pcap,
                          connections=[as_connection(n, list(c)) for n, c in enumerate(connections, start=1)])


def transcript(*connections, events=CLOSED) -> str:
    """A fixture transcript: segments, then events (their interleaving is not behaviour)."""
    lines = ["# destroy: destroy() closes with a FIN"]
    many = len(connections) > 1
    for n, c in enumerate(connections, start=1):
        lines += [(f"@{n} " if many else "") + l.text(with_time=False) for l in c]
    lines += [e.text(with_time=False) for e in events]
    return "\n".join(lines) + "\n"


def test_the_same_behaviour_is_no_drift():
    check = check_fixture(transcript(HS + CLOSE3), "f/destroy.txt", run(HS + CLOSE3))
    assert check == FixtureCheck("f/destroy.txt", (), ())
    assert not check.drifted and status_of(run(HS + CLOSE3), check) == "held"


def test_an_edited_fixture_is_named_in_diffs_words():
    check = check_fixture(transcript(HS + RESET), "f/destroy.txt", run(HS + CLOSE3))
    assert check.drifted
    assert "connection 1: RST instead of FIN: A's client resets where B's client closes with a FIN" in check.differences
    assert check.record() == {"path": "f/destroy.txt", "differences": list(check.differences)}
    assert any(row.startswith("C > S  R.") for row in check.rows)


def test_noise_diff_leaves_out_is_no_drift():
    # ports, numbers of `data` events: what diff leaves out stays out
    fixture = transcript(HS + CLOSE3, events=[EventLine("server", "data", (("len", 6),), 1.0)])
    result = run(HS + CLOSE3, events=[EventLine("server", "data", (("len", 3),), 1.0), EventLine("server", "data", (("len", 3),), 1.1)])
    assert not check_fixture(fixture, "f.txt", result).drifted


def test_events_are_compared_with_ephemeral_ports_as_in_fixtures():
    connect = EventLine("client", "connect", (("localPort", 40123), ("remotePort", 5000)), 1.0)
    fixture = transcript(HS + CLOSE3, events=[EventLine("client", "connect", (("localPort", "*"), ("remotePort", 5000)))])
    result = run(HS + CLOSE3, events=[connect])
    assert not check_fixture(fixture, "f.txt", result).drifted
    assert run_behaviour(result).events[0].args == (("localPort", "*"), ("remotePort", 5000))
    missing = check_fixture(transcript(HS + CLOSE3, events=[]), "f.txt", result)
    assert missing.differences == ("event only in B: client connect",)


def test_a_fixture_with_no_packet_against_a_run_with_some():
    check = check_fixture(transcript(), "f.txt", run(HS + RESET))
    assert "no packet at all (A)" in check.differences


def test_a_fixture_that_is_not_a_transcript_is_a_difference_not_a_pass():
    check = check_fixture("# destroy\nthis is not a line of the notation\n", "f.txt", run(HS + CLOSE3))
    assert check.drifted and check.differences[0].startswith("the fixture cannot be read as a transcript: line 2")


def test_status_words():
    drift = FixtureCheck("f.txt", ("outcome: rst-client (A) vs fin-client-first (B)",))
    same = FixtureCheck("f.txt")
    assert status_of(run(HS + CLOSE3), drift) == "drifted"
    assert status_of(run(HS + CLOSE3), same) == "held"
    assert status_of(run(HS + CLOSE3), None) == "held"
    assert status_of(run(HS + CLOSE3, status="failed"), drift) == "failed"  # keeps FAILED, carries the differences
    assert status_of(run(HS + CLOSE3, status="error"), drift) == "error"


def test_fixture_note_shows_the_differences_then_the_rows_that_differ():
    extra = [L("C", FIN | ACK, 1, 1), L("S", ACK, 1, 2), L("S", ACK, 1, 2), L("S", FIN | ACK, 1, 2), L("C", ACK, 2, 2)]
    result = run(HS + CLOSE4)
    check = check_fixture(transcript(HS + extra), "caps/destroy.txt", result)
    note = fixture_note(result, check)
    lines = note.splitlines()
    assert lines[0] == "destroy (node-20) vs caps/destroy.txt (A = fixture, B = this run):"
    assert lines[1] == "  - connection 1: segments differ (1 only in A, 0 only in B; see the rows)"
    assert lines[-1].split() == ["S", ">", "C", ".", "(acks", "FIN)", "<"]


def test_runtime_differences_per_scenario_against_the_first_runtime():
    node = run(HS + RESET, name="reset-while-connecting")
    deno = run(events=CLOSED, runtime=DENO, name="reset-while-connecting")
    same = [run(HS + CLOSE3), run(HS + CLOSE3, runtime=DENO)]
    notes = runtime_differences([node, same[0], deno, same[1]])
    assert notes == ["reset-while-connecting: node (A) vs deno (B):\n  - no packet at all (B)"]
    assert runtime_differences(same) == []
