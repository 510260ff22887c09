"""Tests of verifier.diff and `verifier diff`: normalising, aligning, naming differences, exit codes."""

import json
import subprocess
import sys
from pathlib import Path

from verifier.diff import Behaviour, compare, differences, parse_transcript, render, steps
from verifier.wire.model import ACK, FIN, PSH, RST, SYN
from verifier.wire.transcript import SegmentLine

DATA = Path(__file__).parent / "data"
FOREIGN = DATA / "foreign"


def L(side, flags, seq, ack, length=0, win=None):
    return SegmentLine(side, flags, seq, length, ack if flags & ACK else 0, win=win)


HS = [L("C", SYN, 0, 0), L("S", SYN | ACK, 0, 1), L("C", ACK, 1, 1)]
CLOSE3 = [L("C", FIN | ACK, 1, 1), L("S", FIN | ACK, 1, 2), L("C", ACK, 2, 2)]
CLOSE4 = [L("C", FIN | ACK, 1, 1), L("S", ACK, 1, 2), L("S", FIN | ACK, 1, 2), L("C", ACK, 2, 2)]


def B(*conns, name="x"):
    return Behaviour(name, [list(c) for c in conns])


def named(d):
    return d.named + [n for c in d.connections for n in c.named]


def verifier(*args):
    return subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True, text=True, timeout=60)


def test_identical_behaviour_is_equal():
    d = compare(B(HS + CLOSE3), B(HS + CLOSE3))
    assert d.equal and "no difference in behaviour" in render(d)


def test_fin_ack_separate_vs_piggybacked():
    d = compare(B(HS + CLOSE4), B(HS + CLOSE3))
    assert "ACK of the first FIN: separate (A) vs piggybacked on the peer's FIN (B)" in named(d)
    assert [r[0] for r in d.connections[0].rows].count("<") == 1


def test_rst_instead_of_fin():
    d = compare(B(HS + [L("C", RST | ACK, 1, 1)]), B(HS + CLOSE3))
    assert any(n.startswith("RST instead of FIN: A's client resets") for n in named(d))


def test_syn_retried_after_rst():
    win = [L("C", SYN, 0, 0), L("S", RST | ACK, 1, 1), L("C", SYN, 0, 0), L("S", RST | ACK, 1, 1)]
    d = compare(B([L("C", SYN, 0, 0), L("S", RST | ACK, 1, 1)]), B(win))
    assert "SYN retried after RST (B; Windows does this)" in named(d)


def test_no_handshake_before_rst():
    d = compare(B(HS + [L("C", RST | ACK, 1, 1)]), B([L("C", SYN, 0, 0), L("C", RST, 1, 0)]))
    assert "no handshake before RST (B)" in named(d)


def test_extra_ack_after_handshake():
    d = compare(B(HS + [L("S", ACK, 1, 1)] + CLOSE3), B(HS + CLOSE3))
    assert "extra pure ACK after the handshake (A: from the server)" in named(d)


def test_noise_is_ignored_unless_strict():
    a = HS + [L("C", PSH | ACK, 1, 1, 100, win=1000), L("S", ACK, 1, 101), L("C", PSH | ACK, 101, 1, 100), L("S", ACK, 1, 201)] + [
        L("C", FIN | ACK, 201, 1), L("S", FIN | ACK, 1, 202), L("C", ACK, 202, 2)]
    b = HS + [L("C", ACK, 1, 1, 200, win=2000), L("S", ACK, 1, 201)] + [
        L("C", FIN | ACK, 201, 1), L("S", FIN | ACK, 1, 202), L("C", ACK, 202, 2)]
    assert compare(B(a), B(b)).equal  # the same 200 bytes, cut differently
    assert not compare(B(a), B(b), strict=True).equal
    assert [s.text for s in steps(a)][3] == "data: C > S 200 bytes (4 segments)"


def test_connection_count_and_events():
    a = parse_transcript("C > S  S 0:0(0)\nclient error code=ECONNREFUSED\nserver close\n", "a")
    b = parse_transcript("@1 C > S  S 0:0(0)\n@2 C > S  S 0:0(0)\nclient error code=ETIMEDOUT\nserver close\n", "b")
    d = compare(a, b)
    assert "connections: 1 (A) vs 2 (B)" in d.named
    assert "event only in A: client error code=ECONNREFUSED" in d.named
    assert "event only in B: client error code=ETIMEDOUT" in d.named


def test_event_interleaving_between_sides_is_not_a_difference():
    a = parse_transcript("client close\nserver close\n", "a")
    b = parse_transcript("server close\nclient close\n", "b")
    assert compare(a, b).equal
    c = parse_transcript("client end\nclient close\n", "c")
    d = parse_transcript("client close\nclient end\n", "d")
    assert any(n.startswith("event order differs") for n in compare(c, d).named)


def test_show_text_output_parses_as_a_transcript():
    out = verifier("show", str(FOREIGN / "macos-lo0-v6-refused-then-v4-rst.pcap")).stdout
    b = parse_transcript(out, "show")
    assert len(b.connections) == 2 and b.labels == ["[::1]:6379", "127.0.0.1:6379"]


def test_cli_names_the_macos_vs_linux_fin_difference():
    out = verifier("diff", str(FOREIGN / "macos-lo0-ipv6-fin.pcap"), str(FOREIGN / "linux-sll-lo-fin.pcap"))
    assert out.returncode == 1
    assert "ACK of the first FIN: separate (A) vs piggybacked on the peer's FIN (B)" in out.stdout
    doc = json.loads(verifier("diff", "--json", str(FOREIGN / "macos-lo0-ipv6-fin.pcap"), str(FOREIGN / "linux-sll-lo-fin.pcap")).stdout)
    assert doc["equal"] is False
    assert doc["scenarios"][0]["connections"][0]["a"]["fin_ack"] == "separate"


def test_cli_same_file_is_exit_0():
    f = str(FOREIGN / "linux-sll-lo-fin.pcap")
    assert verifier("diff", f, f).returncode == 0


def test_cli_folders_scenario_by_scenario(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    three = "C > S  S 0:0(0)\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\nC > S  F. 1:1(0) ack 1\nS > C  F. 1:1(0) ack 2\nC > S  . 2:2(0) ack 2\n"
    four = three.replace("S > C  F. 1:1(0) ack 2\n", "S > C  . 1:1(0) ack 2\nS > C  F. 1:1(0) ack 2\n")
    (a / "close.txt").write_text(three)
    (b / "close.txt").write_text(four)
    (a / "same.txt").write_text(three)
    (b / "same.txt").write_text(three)
    (a / "lonely.txt").write_text(three)
    out = verifier("diff", str(a), str(b))
    assert out.returncode == 1
    assert "=== same: no difference in behaviour" in out.stdout
    assert "piggybacked on the peer's FIN (A) vs separate (B)" in out.stdout
    assert "lonely: only in A" in out.stdout
    assert "3 scenarios compared" not in out.stdout and "2 scenarios compared: 1 differ, 1 on one side only" in out.stdout


def test_cli_bad_input_is_exit_2(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("this is not a transcript\n")
    out = verifier("diff", str(bad), str(bad))
    assert out.returncode == 2 and "line 1" in out.stderr and len(out.stderr.splitlines()) == 1
    out = verifier("diff", str(DATA / "malformed" / "empty-file.pcap"), str(FOREIGN / "linux-sll-lo-fin.pcap"))
    assert out.returncode == 2 and "empty file" in out.stderr
    assert verifier("diff", str(tmp_path), str(bad)).returncode == 2


def test_a_different_first_address_is_named():
    a = Behaviour("a", [HS + CLOSE3], labels=["[::1]:5000"])
    b = Behaviour("b", [HS + CLOSE3], labels=["127.0.0.1:5000"])
    assert "server address: ::1 (A) vs 127.0.0.1 (B)" in named(compare(a, b))
    assert compare(a, Behaviour("c", [HS + CLOSE3], labels=["[::1]:6000"])).equal  # ports are noise


def test_how_many_data_events_a_transfer_took_is_noise_unless_strict():
    a = parse_transcript("server data len=65536\nserver data len=65536\nserver end\n", "a")
    b = parse_transcript("server data len=131072\nserver end\n", "b")
    assert compare(a, b).equal
    assert not compare(a, b, strict=True).equal


def test_an_ack_of_data_after_the_last_data_is_delayed_ack_timing_unless_strict():
    # bun's destroy-soon: the last bytes ride on the FIN; whether the receiver ACKs the data before
    # them separately (A) or only the FIN (B) is when its delayed-ACK timer fired
    data = [L("C", ACK, 1, 1, 100), L("S", ACK, 1, 101), L("C", ACK, 101, 1, 100)]
    fin = [L("C", FIN | PSH | ACK, 201, 1, 50)]
    after = [L("S", ACK, 1, 252), L("S", FIN | ACK, 1, 252), L("C", ACK, 252, 2)]
    a = B(HS + data + fin + [L("S", ACK, 1, 201)] + after)
    b = B(HS + data + fin + after)
    assert compare(a, b).equal
    strict = compare(a, b, strict=True)
    assert not strict.equal and "segments differ (1 only in A, 0 only in B; see the rows)" in named(strict)


def test_segments_differ_counts_steps_that_appear_on_both_sides_too():
    # one more "S > C ." (acks FIN) in A: a kind B has as well, still one step only in A
    extra = [L("C", FIN | ACK, 1, 1), L("S", ACK, 1, 2), L("S", ACK, 1, 2), L("S", FIN | ACK, 1, 2), L("C", ACK, 2, 2)]
    d = compare(B(HS + extra), B(HS + CLOSE4))
    assert "segments differ (1 only in A, 0 only in B; see the rows)" in named(d)


def test_a_side_with_no_connection_at_all_is_named_in_words():
    events_only = parse_transcript("client resetAndDestroy()\nclient close hadError=false\n", "deno")
    wire = parse_transcript("\n".join(l.text(with_time=False) for l in HS + [L("C", RST | ACK, 1, 1)])
                            + "\nclient resetAndDestroy()\nclient close hadError=false\n", "node")
    d = compare(wire, events_only)
    assert "no packet at all (B)" in d.named
    assert not any(n.startswith("connections:") for n in d.named)
    assert "no packet at all (A)" in compare(events_only, wire).named
    assert [r[0] for r in d.connections[0].rows] == ["<"] * 4  # every step of A's connection, only in A
    assert compare(events_only, events_only).equal
    # one connection against two is still a count
    assert "connections: 1 (A) vs 2 (B)" in compare(B(HS + CLOSE3), B(HS + CLOSE3, HS + CLOSE3)).named


def test_cli_folders_pair_a_transcript_with_events_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "reset-while-connecting.txt").write_text(
        "# reset-while-connecting: resetAndDestroy() before connect\nclient resetAndDestroy()\n"
        + "\n".join(l.text(with_time=False) for l in HS + [L("C", RST | ACK, 1, 1)]) + "\nclient close hadError=false\n")
    (b / "reset-while-connecting.txt").write_text(
        "# reset-while-connecting: resetAndDestroy() before connect\nclient resetAndDestroy()\nclient close hadError=false\n")
    out = verifier("diff", str(a), str(b))
    assert out.returncode == 1, out.stderr
    assert "  - no packet at all (B)" in out.stdout
    assert "only in" not in out.stdout
    assert "1 scenario compared: 1 differ, 0 on one side only" in out.stdout


def test_differences_lists_overall_then_per_connection_words():
    a = parse_transcript("C > S  S 0:0(0)\nclient error code=ECONNREFUSED\n", "a")
    d = compare(B(HS + CLOSE4), B(HS + CLOSE3))
    assert differences(d) == ["connection 1: ACK of the first FIN: separate (A) vs piggybacked on the peer's FIN (B)"]
    d2 = compare(a, parse_transcript("C > S  S 0:0(0)\n", "b"))
    assert differences(d2) == ["event only in A: client error code=ECONNREFUSED"]


def test_analysis_label_counts_are_named_and_timing_left_out_unless_strict():
    from verifier.diff import label_differences
    from verifier.wire.transcript import parse_segment

    a = [parse_segment(t) for t in ("C > S  . 0:0(0) ack 1 [keep-alive]", "S > C  . 1:1(0) ack 1 [keep-alive-ack]",
                                    "C > S  . 0:0(0) ack 1 [keep-alive]", "S > C  . 1:1(0) ack 1 [window-update]")]
    b = [parse_segment("C > S  . 1:1(0) ack 1")]
    assert label_differences(a, b) == ["keep-alive probes: 2 (A) vs none (B)", "keep-alive ACKs: 1 (A) vs none (B)"]
    assert label_differences(a, b, strict=True)[-1] == "window updates: 1 (A) vs none (B)"
    rtx = [parse_segment("C > S  . 1:5(4) ack 1 [retransmission]")]
    assert label_differences(rtx, b) == [] and label_differences(rtx, b, strict=True) == ["retransmissions: 1 (A) vs none (B)"]
    assert label_differences(a, a) == [] and label_differences(b, b, strict=True) == []


def test_transcripts_with_labels_differ_in_words():
    from verifier.diff import compare, parse_transcript

    base = "C > S  S 0:0(0)\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\n"
    probes = base + "C > S  . 0:0(0) ack 1 [keep-alive]\nS > C  . 1:1(0) ack 1 [keep-alive-ack]\n" * 3
    d = compare(parse_transcript(probes, "A"), parse_transcript(base, "B"))
    assert "keep-alive probes: 3 (A) vs none (B)" in d.connections[0].named
