"""Tests of verifier.expectation: blocks per OS family, optional steps, alternatives, never, errors."""

import pytest

from verifier.expectation import ExpectationError, OneOf, parse

TEXT = """\
# a comment
C > S  S 0:0(0)
S > C  S. 0:0(0) ack 1
C > S  . 1:1(0) ack 1
client end()
linux:
C > S  F. 1:1(0) ack 1
S > C  F. 1:1(0) ack 2
darwin:
C > S  F. 1:1(0) ack 1
S > C  . 1:1(0) ack 2
S > C  F. 1:1(0) ack 2
any:
C > S  . 2:2(0) ack 2
server end
never R
never client error
"""


def test_blocks_are_chosen_by_family_in_file_order():
    linux = parse(TEXT, "linux")
    darwin = parse(TEXT, "darwin")
    assert [s.lineno for s in linux.steps] == [2, 3, 4, 5, 7, 8, 14, 15]
    assert [s.lineno for s in darwin.steps] == [2, 3, 4, 5, 10, 11, 12, 14, 15]
    assert len(linux.nevers) == 2 and linux.checks_segments and linux.connections == 1


def test_optional_and_one_of():
    exp = parse("? C > S  . 1:1(0) ack 1\none of:\n  server end\nor:\n  server close\n  server end\nend\n", "linux")
    assert exp.steps[0].optional
    alt = exp.steps[1]
    assert isinstance(alt, OneOf) and [len(b) for b in alt.branches] == [1, 2]


def test_error_names_file_line_and_column():
    with pytest.raises(ExpectationError) as e:
        parse("C > S  S 0:0(0)\n   C > S  Q 1:1(0)\n", "linux", source="x.expect")
    assert str(e.value) == "x.expect:2:11: unknown flag letter 'Q' in 'Q' (use F S R P . U E W)"
    with pytest.raises(ExpectationError) as e:
        parse("C > S  S 0:0(0)\n   C > S  S. 0:0\n", "linux", source="x.expect")
    assert str(e.value).startswith("x.expect:2:4: not a segment line")


def test_syntax_errors_in_other_families_blocks_are_reported_too():
    with pytest.raises(ExpectationError, match=":2:"):
        parse("windows:\nC > S  S 0:0(0) bogus\n", "linux", source="x.expect")


def test_unclosed_one_of():
    with pytest.raises(ExpectationError, match="never closed"):
        parse("one of:\n server end\n", "linux")


def test_tcp_consistency_ack_of_a_fin_counts_one():
    # S acknowledges 3 after C's FIN at 1: C has sent only up to 2
    with pytest.raises(ExpectationError, match="x.expect:5:1: ack 3 acknowledges more than the peer sent"):
        parse("C > S  S 0:0(0)\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\nC > S  F. 1:1(0) ack 1\nS > C  F. 1:1(0) ack 3\n", "linux", source="x.expect")


def test_tcp_consistency_sequence_gap():
    with pytest.raises(ExpectationError, match="leaves a gap"):
        parse("C > S  S 0:0(0)\nC > S  P. 5:8(3) ack 1\n", "linux")


def test_bad_never():
    with pytest.raises(ExpectationError, match="never"):
        parse("never gonna\n", "linux")


def test_repeat_and_meanwhile_blocks():
    from verifier.expectation import Meanwhile, Repeat

    exp = parse("repeat:\n  C > S  P. *:*(*) ack 1\n  S > C  . 1:1(0) ack *\nend\nmeanwhile:\n  client finish\nend\n", "linux")
    assert isinstance(exp.steps[0], Repeat) and len(exp.steps[0].lines) == 2
    assert isinstance(exp.steps[1], Meanwhile)
    with pytest.raises(ExpectationError, match="segment lines only"):
        parse("repeat:\n  client end\nend\n", "linux")
    with pytest.raises(ExpectationError, match="event lines only"):
        parse("meanwhile:\n  C > S  S 0:0(0)\nend\n", "linux")
    with pytest.raises(ExpectationError, match="never closed"):
        parse("repeat:\n  C > S  S 0:0(0)\n", "linux")


def test_never_takes_analysis_labels_with_or_without_a_side():
    from verifier.expectation import parse

    exp = parse("never [retransmission]\nnever S > C [dup-ack, zero-window]\nnever R [reused-ports]\n", "linux", "x")
    assert [(n.side, n.flags, n.analysis) for n in exp.nevers] == [
        (None, 0, ("retransmission",)), ("S", 0, ("dup-ack", "zero-window")), (None, 0x04, ("reused-ports",))]
    for bad, needle in (("never [keepalive]", "unknown TCP analysis label 'keepalive'"), ("never []", "name a label")):
        with pytest.raises(ExpectationError, match=needle):
            parse(bad + "\n", "linux", "x")
