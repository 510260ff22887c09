"""Tests of verifier.timeline: segments and events merged in time order, printed as a transcript, a ladder, a mermaid diagram."""

from __future__ import annotations

import re

import pytest

from tcp_script import script
from verifier.expectation import parse
from verifier.match import match
from verifier.timeline import Entry, ladder, lanes, merge, mermaid, segment_lines, transcript_text
from verifier.wire.connections import track
from verifier.wire.transcript import EventLine, SegmentLine

T0 = 1_700_000_000.0
DT = 0.0001  # tcp_script's default step


def ev(t: float, side: str, name: str, **args) -> EventLine:
    return EventLine(side, name, tuple(args.items()), t)


def renumber(segments):
    for n, s in enumerate(sorted(segments, key=lambda s: s.t), start=1):
        s.index = n
    return sorted(segments, key=lambda s: s.t)


def one_connection():
    """client-end on Linux: 3-packet handshake, client FIN, server FIN+ACK, last ACK."""
    segs = script("C S", "S S.", "C .", "C F.", "S F.", "C .", t0=T0)
    conns = list(track(segs))
    events = [
        ev(T0 - 0.001, "listener", "listening", address="127.0.0.1", port=5000, family="IPv4"),
        ev(T0 + 2 * DT, "client", "connect", localPort=53448, remotePort=5000),  # same time as the ACK
        ev(T0 + 2.5 * DT, "client", "end()"),
        ev(T0 + 3.5 * DT, "server", "end", readableEnded=True, writableEnded=False),
        ev(T0 + 3.6 * DT, "server", "end()"),
        ev(T0 + 6 * DT, "client", "close", hadError=False, message="a; b #1 \"quoted\" = x"),
    ]
    return conns, events


def two_connections():
    """A refused connection, then a good one from another port (port-not-open then connect-ok)."""
    first = script("C S", "S R.", t0=T0, client=("127.0.0.1", 40001))
    second = script("C S", "S S.", "C .", "C R.", t0=T0 + 0.01, client=("127.0.0.1", 40002))
    conns = list(track(renumber(first + second)))
    events = [
        ev(T0 + 0.5 * DT, "client", "connectionAttempt", ip="127.0.0.1", port=5000, family=4),
        ev(T0 + 1.5 * DT, "client", "connectionAttemptFailed", ip="127.0.0.1", port=5000, family=4, code="ECONNREFUSED"),
        ev(T0 + 0.01 + 2 * DT, "client", "connect", errors=["ECONNREFUSED", "ETIMEDOUT"]),
        ev(T0 + 0.01 + 3 * DT, "server", "error", code="ECONNRESET", message="read ECONNRESET"),
    ]
    return conns, events


def test_segment_lines_are_absolute_and_numbered():
    conns, _ = two_connections()
    lines = segment_lines(conns)
    assert [len(c) for c in lines] == [2, 4]
    assert [line.connection for c in lines for line in c] == [1, 1, 2, 2, 2, 2]
    assert lines[1][0].t == pytest.approx(T0 + 0.01)
    assert lines[0][1].text(with_time=False) == "S > C  R. 1:1(0) ack 1 win 65483"  # as Wireshark numbers it


def test_merge_is_in_time_order_packet_before_event_at_equal_time():
    conns, events = one_connection()
    entries = merge(conns, events)
    assert len(entries) == 6 + len(events)
    assert [e.t for e in entries] == sorted(e.t for e in entries)
    kinds = ["seg" if isinstance(e.line, SegmentLine) else e.line.name for e in entries]
    assert kinds == ["listening", "seg", "seg", "seg", "connect", "end()", "seg", "end", "end()", "seg", "seg", "close"]
    # the ACK and the 'connect' it caused have the same time: the packet comes first
    ack, connect = entries[3], entries[4]
    assert ack.t == connect.t and isinstance(ack.line, SegmentLine) and ack.frame == 3 and connect.frame is None
    # even when the event is listed first
    alone = merge(conns, [events[1]])
    assert isinstance(alone[2].line, SegmentLine) and alone[3].line is events[1]


def test_merge_orders_connections_by_time():
    conns, events = two_connections()
    entries = merge(conns, [])
    assert [e.frame for e in entries] == [1, 2, 3, 4, 5, 6]
    assert [e.line.connection for e in entries] == [1, 1, 2, 2, 2, 2]


def test_transcript_text_with_and_without_times():
    conns, events = one_connection()
    entries = merge(conns, events)
    timed = transcript_text(entries, len(conns)).splitlines()
    assert timed[0] == "+0.000000 listener listening address=127.0.0.1 port=5000 family=IPv4"
    assert timed[1] == "+0.001000 C > S  S 0:0(0)"
    assert timed[4] == "+0.001200 client connect localPort=53448 remotePort=5000"
    assert all(re.match(r"^\+\d+\.\d{6} ", line) for line in timed)
    plain = transcript_text(entries, len(conns), with_time=False).splitlines()
    assert plain[:4] == [
        "listener listening address=127.0.0.1 port=5000 family=IPv4",
        "C > S  S 0:0(0)", "S > C  S. 0:0(0) ack 1", "C > S  . 1:1(0) ack 1",
    ]
    assert plain[6] == "C > S  F. 1:1(0) ack 1" and plain[9] == "S > C  F. 1:1(0) ack 2"
    assert [line.split(" ", 1)[1] for line in timed] == plain
    assert not any("@" in line for line in plain)  # one connection: no @N
    assert transcript_text([], 0) == ""


def test_transcript_text_numbers_connections_only_when_several():
    conns, events = two_connections()
    plain = transcript_text(merge(conns, events), len(conns), with_time=False).splitlines()
    segs = [line for line in plain if line.startswith("@")]
    assert segs == [
        "@1 C > S  S 0:0(0)", "@1 S > C  R. 1:1(0) ack 1",
        "@2 C > S  S 0:0(0)", "@2 S > C  S. 0:0(0) ack 1", "@2 C > S  . 1:1(0) ack 1", "@2 C > S  R. 1:1(0) ack 1",
    ]
    assert 'server error code=ECONNRESET message="read ECONNRESET"' in plain


@pytest.mark.parametrize("build", [one_connection, two_connections])
@pytest.mark.parametrize("with_time", [True, False])
def test_a_transcript_pasted_into_an_expectation_is_a_valid_expectation(build, with_time):
    conns, events = build()
    text = transcript_text(merge(conns, events), len(conns), with_time=with_time)
    exp = parse(text, "linux", "pasted.expect")
    assert len(list(exp.steps)) == len(text.splitlines())
    assert exp.connections == len(conns)
    assert match(exp, segment_lines(conns), events) == []


def test_the_pasted_transcript_is_not_vacuous():
    conns, events = one_connection()
    text = transcript_text(merge(conns, events), len(conns), with_time=False)
    changed = text.replace("S > C  F. 1:1(0) ack 2", "S > C  F. 1:1(0) ack 1")
    (mismatch,) = match(parse(changed, "linux", "x.expect"), segment_lines(conns), events)
    assert mismatch.lineno == 10 and mismatch.field == "ack"
    assert (mismatch.expected_value, mismatch.actual_value) == ("1", "2")
    dropped = "\n".join(line for line in text.splitlines() if line != "C > S  . 2:2(0) ack 2") + "\n"
    (mismatch,) = match(parse(dropped, "linux", "x.expect"), segment_lines(conns), events)
    assert "unexpected segment" in mismatch.message
    swapped_events = text.replace("server end()", "server end(X)")
    (mismatch,) = match(parse(swapped_events, "linux", "x.expect"), segment_lines(conns), events)
    assert "server end(X)" in mismatch.message


def test_ladder_shape():
    conns, events = one_connection()
    entries = merge(conns, events)
    out = ladder(entries, conns).splitlines()
    assert re.match(r"^\s+time\s+client\s+wire\s+listener\s+server$", out[0])
    assert out[1].strip() == "connection @1: 127.0.0.1:53448 > 127.0.0.1:5000"
    rows = out[2:]
    assert len(rows) == len(entries)
    assert all(re.match(r"^\s*\+\d+\.\d{3}ms", row) for row in rows)
    assert sum("--> C > S" in row for row in rows) == 4 and sum("<-- S > C" in row for row in rows) == 2
    client_col = rows[4].index("connect")
    listener_col = rows[0].index("listening")
    server_col = rows[7].index("end readableEnded")
    # client events left, packets middle, then one lane per other actor in order of appearance
    assert client_col < rows[1].index("-->") < listener_col < server_col
    assert out[0].index("listener") == listener_col and out[0].index("server") == server_col
    assert ladder([], []) == "(nothing happened)\n"


def test_ladder_numbers_connections_when_several():
    conns, events = two_connections()
    out = ladder(merge(conns, events), conns)
    assert "connection @1: 127.0.0.1:40001 > 127.0.0.1:5000" in out
    assert "connection @2: 127.0.0.1:40002 > 127.0.0.1:5000" in out
    assert "--> @2 C > S  S 0:0(0)" in out


def test_mermaid_shape():
    conns, events = one_connection()
    out = mermaid(merge(conns, events), conns).splitlines()
    assert out[0] == "sequenceDiagram"
    assert out[1:4] == [
        "    participant P0 as client 127.0.0.1:53448",
        "    participant P1 as listener",
        "    participant P2 as server 127.0.0.1:5000",  # the actor `server`: this connection was accepted
    ]
    body = out[4:]
    assert sum("->>" in line for line in body) == 6
    assert sum(line.startswith("    Note over ") for line in body) == len(events)
    assert len(body) == 6 + len(events)
    assert "    P0->>P2: S 0:0(0)" in body and "    P2->>P0: F. 1:1(0) ack 2" in body
    assert "    Note over P0: connect localPort=53448 remotePort=5000" in body
    assert "    Note over P2: end()" in body and "    Note over P1: listening address=127.0.0.1 port=5000 family=IPv4" in body
    # ';' ends a mermaid statement and '#' starts an entity code: neither may reach the output
    assert not any(";" in line or "#" in line for line in out)


def test_mermaid_labels_connections_when_several():
    conns, events = two_connections()
    out = mermaid(merge(conns, events), conns)
    assert "    P0->>P1: @1 S 0:0(0)" in out and "    P0->>P1: @2 R. 1:1(0) ack 1" in out
    assert out.count("->>") == 6 and out.count("Note over") == 4


def test_mermaid_without_connections():
    out = mermaid([Entry(1.0, EventLine("client", "error", (("code", "ENOTFOUND"),), 1.0))], [])
    assert out.splitlines() == ["sequenceDiagram", "    participant P0 as client", "    Note over P0: error code=ENOTFOUND"]


def test_mermaid_without_events_draws_the_endpoints():
    conns, _ = two_connections()
    out = mermaid(merge(conns, []), conns).splitlines()
    assert out[1:4] == ["    participant P0 as client 127.0.0.1:40001", "    participant P1 as client 127.0.0.1:40002",
                        "    participant P2 as server 127.0.0.1:5000"]
    assert "    P2->>P0: @1 R. 1:1(0) ack 1" in out and "    P1->>P2: @2 S 0:0(0)" in out


def three_actors():
    """client and client2 connect to server; server's program connects on to upstream (accept side=upstream)."""
    a = script("C S", "S S.", "C .", "C F.", "S F.", "C .", t0=T0, client=("127.0.0.1", 41001))
    b = script("C S", "S S.", "C .", "C R.", t0=T0 + 0.01, client=("127.0.0.1", 41002))
    c = script("C S", "S S.", "C .", t0=T0 + 0.02, client=("127.0.0.1", 41003), server=("127.0.0.1", 6000))
    conns = list(track(renumber(a + b + c)))
    events = [
        ev(T0 - 0.002, "listener", "listening", port=5000),
        ev(T0 - 0.001, "upstream-listener", "listening", port=6000),
        ev(T0 + 2 * DT, "client", "connect", localPort=41001, remotePort=5000),
        ev(T0 + 2.1 * DT, "listener", "connection", remotePort=41001),
        ev(T0 + 0.01 + 2 * DT, "client2", "connect", localPort=41002, remotePort=5000),
        ev(T0 + 0.01 + 3.5 * DT, "server", "error", code="ECONNRESET"),
        ev(T0 + 0.02 + 0.5 * DT, "server", "connectionAttempt", ip="127.0.0.1", port=6000, family=4),
        EventLine("upstream-listener", "connection", (("remotePort", 41003), ("side", "upstream")), T0 + 0.02 + 2.1 * DT),
        ev(T0 + 0.02 + 3 * DT, "upstream", "data", len=3),
    ]
    return conns, events


def test_lanes_put_each_actor_at_its_connections_ends():
    conns, events = three_actors()
    ln = lanes(conns, events)
    assert ln.ends == {1: ("client", "server"), 2: ("client2", "server"), 3: ("server", "upstream")}
    assert ln.left == ("client", "client2")  # they open connections; server accepts some, so it stays right
    assert ln.right == ("listener", "upstream-listener", "server", "upstream")
    out = ladder(merge(conns, events), conns).splitlines()
    assert re.match(r"^\s+time\s+client\s+client2\s+wire\s+listener\s+upstream-listener\s+server\s+upstream$", out[0])
    row = next(line for line in out if "data len=3" in line)
    assert row.index("data len=3") == out[0].rindex("upstream")


def test_mermaid_one_lane_per_actor():
    conns, events = three_actors()
    out = mermaid(merge(conns, events), conns).splitlines()
    ids = {line.split(" as ", 1)[1]: line.split()[1] for line in out if line.startswith("    participant ")}
    assert list(ids) == ["client 127.0.0.1:41001", "client2 127.0.0.1:41002", "listener", "upstream-listener",
                         "server", "upstream 127.0.0.1:6000"]
    client, client2, server, upstream = ids["client 127.0.0.1:41001"], ids["client2 127.0.0.1:41002"], ids["server"], ids["upstream 127.0.0.1:6000"]
    assert f"    {client}->>{server}: @1 S 0:0(0)" in out
    assert f"    {client2}->>{server}: @2 R. 1:1(0) ack 1" in out
    assert f"    {server}->>{upstream}: @3 S 0:0(0)" in out and f"    {upstream}->>{server}: @3 S. 0:0(0) ack 1" in out
    assert f"    Note over {upstream}: data len=3" in out and f"    Note over {client2}: connect localPort=41002 remotePort=5000" in out


# Bug (reported): verifier.events accepts, and the transcript prints, event arguments that the
# notation cannot read back: a list holding a string with ']' or a list of lists (ARG_RE's list
# alternative stops at the first ']'), and keys that are not identifiers ('my-key'). The transcript
# of such a run is then not a valid expectation.
@pytest.mark.parametrize("args", [
    {"errors": ["bad ] bracket"]},
    {"pairs": [[1, 2], [3]]},
    {"my-key": 1},
], ids=["bracket-in-list", "nested-list", "dashed-key"])
def test_any_event_the_probe_may_log_survives_the_transcript(args):
    import json

    from verifier.events import parse_events

    conns, _ = one_connection()
    events, problems = parse_events(json.dumps({"t": T0 + 0.5 * DT, "side": "client", "name": "x", "args": args}))
    assert problems == [] and len(events) == 1
    text = transcript_text(merge(conns, events), len(conns), with_time=False)
    assert match(parse(text, "linux", "pasted.expect"), segment_lines(conns), events) == []
