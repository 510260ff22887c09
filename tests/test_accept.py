"""Tests of verifier.accept: the expectation written from a run holds on that run, and says what it saw."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from tcp_script import script
from verifier.accept import expectation_text, write_expectation
from verifier.expectation import parse
from verifier.match import match
from verifier.scenario import parse_program
from verifier.timeline import segment_lines
from verifier.wire.connections import track
from verifier.wire.transcript import EventLine

T0 = 1_700_000_000.0


def fake_result(folder: Path, connections, events):
    program = folder / "close.mjs"
    program.write_text("// close: test\n")
    return SimpleNamespace(
        scenario=parse_program("close", program, program.read_text(), None, ""),
        runtime=SimpleNamespace(name="node", version="20.20.2"),
        connections=connections, events=events, mismatches=[], status="unchecked",
    )


def two_clients():
    a = script("C S", "S S.", "C .", "C F.", "S F.", "C .", t0=T0, client=("127.0.0.1", 41001))
    b = script("C S", "S R.", t0=T0 + 0.01, client=("127.0.0.1", 41002))
    segs = sorted(a + b, key=lambda s: s.t)
    for n, s in enumerate(segs, start=1):
        s.index = n
    events = [
        EventLine("client", "connect", (("localPort", 41001), ("remotePort", 5000)), T0 + 0.0002),
        EventLine("listener", "connection", (("localPort", 5000), ("remotePort", 41001), ("side", "server")), T0 + 0.00021),
        EventLine("server", "end", (("readableEnded", True),), T0 + 0.0004),
        EventLine("client", "close", (("hadError", False),), T0 + 0.0006),
        EventLine("client2", "error", (("code", "ECONNREFUSED"), ("port", 5000)), T0 + 0.0102),
    ]
    return list(track(segs)), events


def test_segments_with_their_connection_then_each_actors_events(tmp_path):
    conns, events = two_clients()
    text = expectation_text(fake_result(tmp_path, conns, events), "linux")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body[:9] == [
        "linux:",
        "@1 C > S  S 0:0(0)", "@1 S > C  S. 0:0(0) ack 1", "@1 C > S  . 1:1(0) ack 1", "@1 C > S  F. 1:1(0) ack 1",
        "@1 S > C  F. 1:1(0) ack 2", "@1 C > S  . 2:2(0) ack 2", "@2 C > S  S 0:0(0)", "@2 S > C  R. 1:1(0) ack 1",
    ]
    assert body[9:] == [
        "meanwhile:", "  client connect remotePort=5000", "  client close hadError=false", "end",
        "meanwhile:", "  listener connection localPort=5000 side=server", "end",  # 41001: ephemeral, left out
        "meanwhile:", "  server end readableEnded=true", "end",
        "meanwhile:", "  client2 error code=ECONNREFUSED port=5000", "end",  # the scenario's own port stays
    ]
    assert "node 20.20.2" in text.splitlines()[0]


def test_the_text_holds_on_its_run_and_only_in_this_os(tmp_path):
    conns, events = two_clients()
    text = expectation_text(fake_result(tmp_path, conns, events), "linux")
    assert match(parse(text, "linux", "close.expect"), segment_lines(conns), events) == []
    assert parse(text, "darwin", "close.expect").steps == []  # written for the OS it was seen on
    # not vacuous: another run differs at a named line
    other = list(track(script("C S", "S S.", "C .", "C R.", t0=T0, client=("127.0.0.1", 41001))))
    first = match(parse(text, "linux", "close.expect"), segment_lines(other), events)[0]
    assert first.field == "flags" and (first.expected_value, first.actual_value) == ("F.", "R.")


def test_nothing_on_the_wire_is_asserted_too(tmp_path):
    events = [EventLine("client", "close", (("hadError", False),), T0)]
    text = expectation_text(fake_result(tmp_path, [], events), "linux")
    assert "never S\nnever R\nnever .\nnever F\n" in text
    exp = parse(text, "linux", "x.expect")
    assert match(exp, [], events) == []
    conns, _ = two_clients()
    assert [m.expected for m in match(exp, segment_lines(conns), events)] == ["never S", "never R", "never .", "never F"]


def test_write_expectation_beside_the_program_owned_like_its_folder(tmp_path):
    conns, events = two_clients()
    os.chown(tmp_path, 12345, 23456)
    result = fake_result(tmp_path, conns, events)
    path = write_expectation(result, "linux")
    assert path == tmp_path / "close.expect" and path.read_text() == expectation_text(result, "linux")
    assert (path.stat().st_uid, path.stat().st_gid) == (12345, 23456) and path.stat().st_mode & 0o777 == 0o644
    assert result.status == "held" and result.mismatches == []
