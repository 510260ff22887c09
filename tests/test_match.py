"""Tests of verifier.match: exact segments, ordered events, optional, alternatives, never, messages."""

from verifier.expectation import parse
from verifier.match import match
from verifier.wire.model import ACK, FIN, PSH, RST, SYN
from verifier.wire.transcript import EventLine, SegmentLine

T0 = 1000.0


def seg(t, side, flags, seq, ack, length=0, conn=1):
    return SegmentLine(side, flags, seq, length, ack if flags & ACK else 0, connection=conn, t=T0 + t)


def ev(t, side, event, **args):
    return EventLine(side, event, tuple(args.items()), t=T0 + t)


HANDSHAKE = [seg(0.000, "C", SYN, 0, 0), seg(0.001, "S", SYN | ACK, 0, 1), seg(0.002, "C", ACK, 1, 1)]
CLOSE = [seg(0.010, "C", FIN | ACK, 1, 1), seg(0.011, "S", FIN | ACK, 1, 2), seg(0.012, "C", ACK, 2, 2)]
EVENTS = [ev(0.0025, "client", "connect"), ev(0.005, "client", "end()"), ev(0.0105, "server", "end"),
          ev(0.0125, "client", "end"), ev(0.013, "client", "close", hadError=False)]

EXPECT = """\
C > S  S 0:0(0)
S > C  S. 0:0(0) ack 1
C > S  . 1:1(0) ack 1
client connect
client end()
C > S  F. 1:1(0) ack 1
server end
S > C  F. 1:1(0) ack 2
C > S  . 2:2(0) ack 2
client close hadError=false
never R
"""


def run(text, conns, events):
    return match(parse(text, "linux", "t.expect"), conns, events)


def test_a_matching_run_has_no_mismatch():
    assert run(EXPECT, [HANDSHAKE + CLOSE], EVENTS) == []


def test_wrong_flags_name_line_field_expected_and_actual():
    rst = CLOSE[:1] + [seg(0.011, "S", RST | ACK, 1, 2)]
    m, never = run(EXPECT, [HANDSHAKE + rst], EVENTS)
    assert never.lineno == 11 and never.actual == "S > C  R. 1:1(0) ack 2"
    assert m.lineno == 8 and m.field == "flags" and m.expected_value == "F." and m.actual_value == "R."
    assert m.text("t.expect").startswith("t.expect:8: segment differs: flags expected F. vs actual R.")
    assert "actual:   S > C  R. 1:1(0) ack 2" in m.text("t.expect")


def test_wrong_ack_is_named():
    bad = CLOSE[:1] + [seg(0.011, "S", FIN | ACK, 1, 1)] + CLOSE[2:]
    mismatches = run(EXPECT, [HANDSHAKE + bad], EVENTS)
    assert mismatches[0].field == "ack" and (mismatches[0].expected_value, mismatches[0].actual_value) == ("2", "1")


def test_extra_segment_is_reported():
    extra = CLOSE + [seg(0.02, "S", ACK, 2, 2)]
    (m,) = run(EXPECT, [HANDSHAKE + extra], EVENTS)
    assert "unexpected segment" in m.message and m.actual == "S > C  . 2:2(0) ack 2"


def test_optional_step_may_be_absent_or_present():
    text = EXPECT.replace("C > S  . 2:2(0) ack 2", "? C > S  . 2:2(0) ack 2")
    assert run(text, [HANDSHAKE + CLOSE], EVENTS) == []
    assert run(text, [HANDSHAKE + CLOSE[:2]], EVENTS) == []


def test_one_of_takes_either_close():
    text = EXPECT.replace(
        "S > C  F. 1:1(0) ack 2\n",
        "one of:\n  S > C  F. 1:1(0) ack 2\nor:\n  S > C  . 1:1(0) ack 2\n  S > C  F. 1:1(0) ack 2\nend\n",
    )
    four = CLOSE[:1] + [seg(0.0108, "S", ACK, 1, 2)] + CLOSE[1:]
    assert run(text, [HANDSHAKE + CLOSE], EVENTS) == []
    assert run(text, [HANDSHAKE + four], EVENTS) == []


def test_events_must_come_in_order():
    swapped = [EVENTS[0], EVENTS[3], EVENTS[1], EVENTS[2], EVENTS[4]]
    text = "client end()\nclient end\n"
    assert run(text, [], EVENTS) == []
    (m,) = run("client end\nclient end()\n", [], EVENTS)
    assert m.lineno == 2 and "no 'client end()' event" in m.message
    assert run(text, [], swapped)  # end before end(): fails


def test_event_after_the_segment_that_causes_it():
    early = [ev(0.008, "server", "end")]  # logged before the FIN at 0.010 was captured
    text = "C > S  S 0:0(0)\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\nC > S  F. 1:1(0) ack 1\nserver end\n"
    (m,) = run(text + "S > C  F. 1:1(0) ack 2\nC > S  . 2:2(0) ack 2\n", [HANDSHAKE + CLOSE], early)
    assert m.lineno == 5 and m.field == "time"


def test_event_args_are_a_subset_and_differences_named():
    events = [ev(0.01, "client", "error", code="ECONNREFUSED", name="AggregateError")]
    assert run("client error code=ECONNREFUSED\n", [], events) == []
    (m,) = run("client error code=ECONNRESET\n", [], events)
    assert (m.field, m.expected_value, m.actual_value) == ("code", "ECONNRESET", "ECONNREFUSED")


def test_never_is_checked_everywhere():
    rst = HANDSHAKE + [seg(0.01, "C", RST | ACK, 1, 1)]
    (m,) = run("never R\n", [rst], [])
    assert m.lineno == 1 and m.actual == "C > S  R. 1:1(0) ack 1"
    assert run("never S > C  R\n", [rst], []) == []
    (m,) = run("never client error\n", [], [ev(0.1, "client", "error", code="X")])
    assert "violated" in m.message


def test_second_connection_and_missing_connection():
    refused = [[seg(0, "C", SYN, 0, 0, conn=1), seg(0.0001, "S", RST | ACK, 0, 1, conn=1)],
               [seg(0.001, "C", SYN, 0, 0, conn=2), seg(0.0011, "S", RST | ACK, 0, 1, conn=2)]]
    text = "@1 C > S  S 0:0(0)\n@1 S > C  R. 0:0(0) ack 1\n@2 C > S  S 0:0(0)\n@2 S > C  R. 0:0(0) ack 1\n"
    assert run(text, refused, []) == []
    (m,) = run(text, refused[:1], [])
    assert m.lineno == 3 and "never happened" in m.message
    (m,) = run("@1 C > S  S 0:0(0)\n@1 S > C  R. 0:0(0) ack 1\n", refused, [])
    assert "unexpected connection @2" in m.message


def test_events_only_expectation_ignores_segments():
    assert run("client connect\n", [HANDSHAKE + CLOSE], EVENTS) == []


def test_repeat_takes_any_number_of_data_segments_and_acks():
    data = [seg(0.003 + i * 0.0001, "C", PSH | ACK, 1 + i * 100, 1, 100) for i in range(30)]
    acks = [seg(0.0031 + i * 0.0001, "S", ACK, 1, 101 + i * 100) for i in range(0, 30, 3)]
    wire = HANDSHAKE + sorted(data + acks, key=lambda s: s.t) + [
        seg(0.01, "C", FIN | ACK, 3001, 1), seg(0.011, "S", FIN | ACK, 1, 3002), seg(0.012, "C", ACK, 3002, 2)]
    text = ("C > S  S 0:0(0)\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\n"
            "repeat:\n  C > S  P. *:*(*) ack 1\n  S > C  . 1:1(0) ack *\nend\n"
            "C > S  F. *:*(0) ack 1\nS > C  F. 1:1(0) ack 3002\nC > S  . 3002:3002(0) ack 2\n")
    assert run(text, [wire], []) == []
    # the count is checked through the ACK of the FIN: one byte short fails on the ack field
    (m,) = run(text.replace("ack 3002", "ack 3001"), [wire], [])
    assert m.field == "ack" and m.lineno == 9


def test_repeat_gives_back_what_the_rest_needs():
    wire = HANDSHAKE + [seg(0.003, "S", ACK, 1, 1), seg(0.004, "S", ACK, 1, 1)]
    text = "C > S  S 0:0(0)\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\nrepeat:\n  S > C  . 1:1(0) ack 1\nend\nS > C  . 1:1(0) ack 1\n"
    assert run(text, [wire], []) == []


def test_meanwhile_events_are_ordered_among_themselves_only():
    events = [ev(0.0001, "client", "write()"), ev(0.0005, "client", "finish"), ev(0.0006, "client", "close")]
    text = ("C > S  S 0:0(0)\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\n"
            "meanwhile:\n  client finish\n  client close\nend\n")
    assert run(text, [HANDSHAKE], events) == []  # finish/close came before the handshake ended: fine
    (m,) = run(text.replace("  client finish\n  client close\n", "  client close\n  client finish\n"), [HANDSHAKE], events)
    assert m.lineno == 6 and "client finish" in m.message


def test_named_actors_are_matched_told_apart_and_forbidden_by_name():
    events = EVENTS + [ev(0.0131, "client2", "connect"), ev(0.0132, "agent", "free"),
                       ev(0.0133, "client2", "close", hadError=True)]
    text = EXPECT.replace("never R\n", "") + "client2 connect\nagent free\nclient2 close hadError=true\nnever upstream error\n"
    assert run(text, [HANDSHAKE + CLOSE], events) == []
    # a client's close does not stand in for client2's, and the failure names the actor
    (m,) = run(text.replace("client2 close hadError=true", "client2 close hadError=false"), [HANDSHAKE + CLOSE], events)
    assert m.lineno == 13 and m.field == "hadError" and m.expected == "client2 close hadError=false"
    assert m.actual == "client2 close hadError=true"
    (m,) = run(EXPECT + "never client2 close\n", [HANDSHAKE + CLOSE], events)
    assert m.message == "'never client2 close' was violated" and m.actual == "client2 close hadError=true"
    assert run(EXPECT + "never agent error\nmeanwhile:\n  client2 connect\n  client2 close\nend\n",
               [HANDSHAKE + CLOSE], events) == []


def test_analysis_labels_are_required_when_written_and_forbidden_by_never():
    def probe(labels):
        return SegmentLine("C", ACK, 0, 0, 1, connection=1, t=T0 + 0.005, analysis=labels)

    answer = SegmentLine("S", ACK, 1, 0, 1, connection=1, t=T0 + 0.0051, analysis=("keep-alive-ack",))
    text = EXPECT.replace("C > S  F. 1:1(0) ack 1\n",
                          "C > S  . 0:0(0) ack 1 [keep-alive]\nS > C  . 1:1(0) ack 1\nC > S  F. 1:1(0) ack 1\n")
    assert run(text, [HANDSHAKE + [probe(("keep-alive",)), answer] + CLOSE], EVENTS) == []
    # required labels are a subset: more is fine, fewer names the field
    assert run(text, [HANDSHAKE + [probe(("keep-alive", "dup-ack")), answer] + CLOSE], EVENTS) == []
    (m,) = run(text, [HANDSHAKE + [probe(()), answer] + CLOSE], EVENTS)
    assert (m.lineno, m.field, m.expected_value, m.actual_value) == (6, "analysis", "keep-alive", "none")
    assert "analysis expected keep-alive vs actual none" in m.text("t.expect")
    labelled = [HANDSHAKE + [probe(("keep-alive",)), answer] + CLOSE]
    (never,) = run(text + "never [keep-alive-ack]\n", labelled, EVENTS)
    assert never.message == "'never [keep-alive-ack]' was violated" and never.actual == "S > C  . 1:1(0) ack 1 [keep-alive-ack]"
    assert run(text + "never C > S [keep-alive-ack]\nnever [retransmission]\n", labelled, EVENTS) == []


def test_window_and_options_are_compared_when_an_expectation_names_them():
    syn = SegmentLine("C", SYN, 0, 0, 0, connection=1, t=T0, win=65495, options="mss 65495,sackOK")
    rest = [seg(0.001, "S", SYN | ACK, 0, 1), SegmentLine("C", ACK, 1, 0, 1, connection=1, t=T0 + 0.002, win=512, options="")]
    text = "C > S  S 0:0(0) win 65495 <mss 65495,sackOK>\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\n"
    assert run(text, [[syn] + rest], []) == []
    (m,) = run(text.replace("mss 65495", "mss 1460"), [[syn] + rest], [])
    assert (m.field, m.expected_value, m.actual_value) == ("options", "mss 1460,sackOK", "mss 65495,sackOK")
    assert m.actual == "C > S  S 0:0(0) win 65495 <mss 65495,sackOK>"  # shown like the expected line
    (m,) = run(text.replace("C > S  . 1:1(0) ack 1", "C > S  F. 1:1(0) ack 1"), [[syn] + rest], [])
    assert m.actual == "C > S  . 1:1(0) ack 1"  # the line did not name them: not shown


def test_tos_is_compared_when_an_expectation_names_it():
    marked = SegmentLine("C", SYN, 0, 0, 0, connection=1, t=T0, win=65495, tos=0x10)
    rest = [seg(0.001, "S", SYN | ACK, 0, 1), seg(0.002, "C", ACK, 1, 1)]
    text = "C > S  S 0:0(0) tos 0x10\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\n"
    assert run(text, [[marked] + rest], []) == []
    (m,) = run(text.replace("tos 0x10", "tos 0x0"), [[marked] + rest], [])
    assert (m.field, m.expected_value, m.actual_value) == ("tos", "0x00", "0x10")
    assert m.actual == "C > S  S 0:0(0) tos 0x10"  # shown as the expected line names it, no window
    assert run(text.replace(" tos 0x10", ""), [[marked] + rest], []) == []  # not named: not compared
