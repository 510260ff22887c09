"""Tests of verifier.wire.transcript: the notation round-trips, flags in tcpdump's order."""

import pytest

from verifier.wire.model import ACK, CWR, ECE, FIN, PSH, RST, SYN
from verifier.wire.transcript import (
    EventLine, NotationError, SegmentLine, flags_text, options_text, parse_event, parse_flags, parse_line,
    parse_segment,
)


@pytest.mark.parametrize("bits,text", [
    (SYN, "S"), (SYN | ACK, "S."), (ACK, "."), (PSH | ACK, "P."), (FIN | ACK, "F."), (FIN | PSH | ACK, "FP."),
    (RST, "R"), (RST | ACK, "R."), (SYN | ECE | CWR, "SEW"), (SYN | ACK | ECE, "S.E"), (0, "none"),
])
def test_flags_in_tcpdump_order(bits, text):
    assert flags_text(bits) == text
    assert parse_flags(text) == bits


def test_segment_line_round_trip():
    line = SegmentLine("C", FIN | ACK, 1, 0, 1, t=0.000123)
    assert line.text() == "+0.000123 C > S  F. 1:1(0) ack 1"
    assert parse_segment(line.text()) == line


def test_syn_has_no_ack_field():
    line = SegmentLine("C", SYN, 0, 0, 0)
    assert line.text() == "C > S  S 0:0(0)"
    assert parse_segment("C > S  S 0:0(0)").ack == 0


def test_connection_selector_and_wildcards():
    line = parse_segment("@2 S > C  R. *:*(*) ack 1")
    assert line.connection == 2 and line.seq is None and line.length is None and line.ack == 1
    assert line.text(with_connection=True) == "@2 S > C  R. *:*(*) ack 1"


def test_data_segment_range_must_agree_with_length():
    assert parse_segment("S > C  P. 1:4(3) ack 1").length == 3
    with pytest.raises(NotationError, match="seq \\+ length"):
        parse_segment("S > C  P. 1:5(3) ack 1")


def test_ack_without_ack_flag_is_an_error():
    with pytest.raises(NotationError, match="ACK flag"):
        parse_segment("C > S  S 0:0(0) ack 1")


def test_event_line_round_trip_with_values():
    ev = EventLine("client", "error", (("code", "ECONNREFUSED"), ("errors", ["ECONNREFUSED", "ECONNREFUSED"]), ("hadError", True), ("bytesRead", 3), ("message", "connect refused")))
    text = ev.text()
    assert text == 'client error code=ECONNREFUSED errors=["ECONNREFUSED","ECONNREFUSED"] hadError=true bytesRead=3 message="connect refused"'
    assert parse_event(text) == ev


def test_numeric_looking_strings_stay_strings():
    ev = EventLine("server", "data", (("text", "123"),))
    assert parse_event(ev.text()) == ev


def test_parse_line_tells_segments_from_events():
    assert isinstance(parse_line("+0.1 server end"), EventLine)
    assert isinstance(parse_line("+0.1 S > C  F. 1:1(0) ack 2"), SegmentLine)
    assert parse_line("client2 close hadError=false") == EventLine("client2", "close", (("hadError", False),))
    assert parse_line("upstream-1 error code=ECONNRESET").side == "upstream-1"
    for bad in ("Hello world", "hello", "end now", "one of: x", "C connect"):
        with pytest.raises(NotationError):
            parse_line(bad)


def test_options_like_tcpdump():
    opts = (("mss", 65495), ("sackOK", None), ("TS", (1, 0)), ("nop", None), ("wscale", 7))
    assert options_text(opts) == "mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7"


def test_analysis_labels_print_in_brackets_and_parse_back():
    line = SegmentLine("C", 0x10, 2, 0, 1, analysis=("retransmission", "fast-retransmission"))
    assert line.text() == "C > S  . 2:2(0) ack 1 [retransmission, fast-retransmission]"
    assert parse_segment(line.text()) == line
    assert parse_segment("S > C  . 1:1(0) ack 3 win 512 [dup-ack window-update]").analysis == ("dup-ack", "window-update")
    assert parse_segment("S > C  . 1:1(0) ack 3").analysis is None  # not looked at
    assert SegmentLine("C", 0x10, 2, 0, 1, analysis=()).text() == "C > S  . 2:2(0) ack 1"
    with pytest.raises(NotationError, match="unknown TCP analysis label 'keepalive'") as e:
        parse_segment("C > S  . 2:2(0) ack 1 [keepalive]")
    assert e.value.column == 24


def test_tos_prints_in_hex_where_not_zero_and_parses_back():
    line = SegmentLine("C", 0x18, 1, 4, 1, win=64, tos=0x10)
    assert line.text() == "C > S  P. 1:5(4) ack 1 win 64 tos 0x10"
    assert parse_segment(line.text()) == line
    assert SegmentLine("C", 0x18, 1, 4, 1, win=64, tos=0).text() == "C > S  P. 1:5(4) ack 1 win 64"
    assert parse_segment("C > S  P. 1:5(4) ack 1 tos 0x0").tos == 0 and parse_segment("C > S  P. 1:5(4) ack 1").tos is None
