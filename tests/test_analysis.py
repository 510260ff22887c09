"""Tests of verifier.wire.analysis: Wireshark's TCP analysis labels, rule by rule and frame by frame
against Wireshark itself (through pyshark) on every capture in tests/data."""

from __future__ import annotations

import contextlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from builders import segment
from verifier.errors import CaptureError
from verifier.wire import analysis
from verifier.wire.analysis import NAMES, TSHARK_FIELDS, Analyzer, names
from verifier.wire.capture import read_frames
from verifier.wire.decode import decode

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(p for p in DATA.rglob("*") if p.suffix in (".pcap", ".pcapng"))
T0 = 1_700_000_000.0
C, S = ("10.0.0.1", 40001), ("10.0.0.2", 80)


def seg(t, side, flags, seq, ack, win=65535, length=0, options=()):
    (src, sport), (dst, dport) = (C, S) if side == "C" else (S, C)
    return segment(t=T0 + t, src=src, sport=sport, dst=dst, dport=dport, seq=seq, ack=ack, flags=flags, win=win,
                   payload_len=length, options=options)


def labels(*segments, analyzer=None) -> list[tuple[str, ...]]:
    analyzer = analyzer or Analyzer()
    return [analyzer.labels(s) for s in segments]


HANDSHAKE = [seg(0, "C", "S", 1000, 0), seg(0.0001, "S", "S.", 5000, 1001), seg(0.0002, "C", ".", 1001, 5001)]


def test_a_clean_exchange_has_no_label():
    data = [seg(0.001, "C", "P.", 1001, 5001, length=10), seg(0.0011, "S", ".", 5001, 1011),
            seg(0.002, "C", "F.", 1011, 5001), seg(0.0021, "S", "F.", 5001, 1012), seg(0.0022, "C", ".", 1012, 5002)]
    assert labels(*HANDSHAKE, *data) == [()] * 8


def test_keep_alive_is_one_byte_below_the_next_seq_and_its_answer_repeats_the_ack():
    data = [seg(0.001, "C", "P.", 1001, 5001, length=10), seg(0.0011, "S", ".", 5001, 1011)]
    probe, answer = seg(1, "C", ".", 1010, 5001), seg(1.0001, "S", ".", 5001, 1011)
    assert labels(*HANDSHAKE, *data, probe, answer)[-2:] == [("keep-alive",), ("keep-alive-ack",)]
    not_below = seg(1, "C", ".", 1011, 5001)  # at the next seq: a plain (duplicate) ACK, not a probe
    assert labels(*HANDSHAKE, *data, not_below, answer)[-2:] == [("dup-ack",), ("dup-ack",)]


def test_fast_retransmission_needs_two_dup_acks_and_20_ms():
    before = [seg(0.001, "C", ".", 1001, 5001, length=100), seg(0.0012, "S", ".", 5001, 1101),
              seg(0.0013, "C", ".", 1201, 5001, length=100)]
    dups = [seg(0.0014 + n * 0.0001, "S", ".", 5001, 1101) for n in range(2)]
    resend = seg(0.010, "C", ".", 1101, 5001, length=100)
    got = labels(*HANDSHAKE, *before, *dups, resend)
    assert got[5] == ("lost-segment",) and got[6:8] == [("dup-ack",)] * 2
    assert got[8] == ("retransmission", "fast-retransmission")
    late = seg(0.0015 + 0.020, "C", ".", 1101, 5001, length=100)  # 20 ms after the last dup ack: plain
    assert labels(*HANDSHAKE, *before, *dups, late)[-1] == ("retransmission",)
    # packet-tcp.c subtracts times as unsigned: a resend stamped before the last dup ACK is not "within 20 ms"
    later_dups = [seg(0.005 + n * 0.0001, "S", ".", 5001, 1101) for n in range(2)]
    early = seg(0.0050, "C", ".", 1101, 5001, length=100)
    assert labels(*HANDSHAKE, *before, *later_dups, early)[-1] == ("retransmission",)


def test_out_of_order_uses_the_initial_rtt_when_there_is_one():
    first, hole, late = (seg(0.010, "C", ".", 1001, 5001, length=100), seg(0.0101, "C", ".", 1201, 5001, length=100),
                         seg(0.0106, "C", ".", 1101, 5001, length=100))
    # the handshake's RTT (SYN to the client's ACK) is 0.2 ms: 0.5 ms late is a retransmission
    assert labels(*HANDSHAKE, first, hole, late)[-1] == ("retransmission",)
    # without a handshake the threshold is 3 ms: the same is out of order
    assert labels(first, hole, late)[-1] == ("out-of-order",)


def test_spurious_retransmission_resends_what_the_peer_acknowledged():
    data = [seg(0.001, "C", "P.", 1001, 5001, length=100), seg(0.0011, "S", ".", 5001, 1101)]
    assert labels(*HANDSHAKE, *data, seg(0.3, "C", "P.", 1001, 5001, length=100))[-1] == (
        "retransmission", "spurious-retransmission")


def test_zero_window_probe_and_its_ack_do_not_advance():
    fill = [seg(0.001, "C", "P.", 1001, 5001, length=100), seg(0.0011, "S", ".", 5001, 1101, win=0)]
    probe, answer = seg(0.2, "C", ".", 1101, 5001, length=1), seg(0.2001, "S", ".", 5001, 1101, win=0)
    opened = seg(0.3, "S", ".", 5001, 1101, win=4096)
    got = labels(*HANDSHAKE, *fill, probe, answer, probe, answer, opened)
    assert got[4] == ("zero-window",) and got[5] == ("zero-window-probe",)
    assert got[6] == ("zero-window", "zero-window-probe-ack") and got[7] == ("zero-window-probe",)
    assert got[9] == ("window-update",)


def test_window_full_needs_the_scale_known_and_a_first_pure_ack():
    ws = (("wscale", 2),)
    hs = [seg(0, "C", "S", 1000, 0, options=ws), seg(0.0001, "S", "S.", 5000, 1001, options=ws),
          seg(0.0002, "C", ".", 1001, 5001)]
    ack = seg(0.0011, "S", ".", 5001, 1101, win=100)  # 100 << 2 = 400 bytes from 1101
    data = [seg(0.001, "C", "P.", 1001, 5001, length=100), ack, seg(0.002, "C", "P.", 1101, 5001, length=400)]
    assert labels(*hs, *data)[-1] == ("window-full",)
    # without the option on the SYN-ACK, scaling is off: 100 bytes fill it, 400 do not
    plain = [hs[0], seg(0.0001, "S", "S.", 5000, 1001), hs[2]]
    assert labels(*plain, *data)[-1] == ()
    assert labels(*plain, *data[:2], seg(0.002, "C", "P.", 1101, 5001, length=100))[-1] == ("window-full",)


def test_ack_of_unseen_data_and_data_after_a_hole():
    got = labels(seg(0, "C", "P.", 1001, 5001, length=100), seg(0.0001, "S", ".", 5001, 1101),
                 seg(0.0002, "C", "P.", 1201, 5001, length=100), seg(0.0003, "S", ".", 5001, 1401))
    assert got == [(), (), ("lost-segment",), ("ack-lost-segment",)]


def test_a_new_isn_on_the_same_ports_is_reused_ports_even_after_its_state_is_forgotten():
    closed = [*HANDSHAKE, seg(0.001, "C", "R.", 1001, 5001)]
    again = seg(100, "C", "S", 777, 0)
    analyzer = Analyzer(forget_after=1.0)
    elsewhere = segment(t=T0 + 50, src="10.0.0.3", sport=1, dst="10.0.0.4", dport=2, seq=9, ack=9, flags=".")
    assert labels(*closed, elsewhere, analyzer=analyzer)  # 50 s later, on other ports: the sweep ran
    analyzer.conversations = {k: c for k, c in analyzer.conversations.items() if k[0] != ("10.0.0.3", 1) and k[1] != ("10.0.0.3", 1)}
    assert analyzer.conversations == {} and len(analyzer.bases) == 1
    assert labels(again, analyzer=analyzer) == [("reused-ports",)]
    # the same ISN again is the same conversation: a retransmitted SYN
    assert labels(*closed, seg(1, "C", "S", 1000, 0))[-1] == ("retransmission",)


def test_past_the_unacked_limit_a_fin_no_longer_counts_one(monkeypatch):
    monkeypatch.setattr(analysis, "MAX_UNACKED", 2)
    sends = [seg(0.001 * n, "C", ".", 1001 + 10 * (n - 1), 5001, length=10) for n in range(1, 3)]
    fin, after = seg(0.01, "C", "F.", 1021, 5001), seg(0.011, "C", ".", 1022, 5001, length=10)
    # the FIN is not remembered, so Wireshark expects the next byte at 1021: 1022 is past a hole
    assert labels(*HANDSHAKE, *sends, fin, after)[-1] == ("lost-segment",)
    monkeypatch.setattr(analysis, "MAX_UNACKED", 10_000)
    assert labels(*HANDSHAKE, *sends, fin, after)[-1] == ()


def test_label_names_follow_the_contract_and_tshark():
    assert NAMES[0] == "retransmission" and len(NAMES) == 15
    assert TSHARK_FIELDS["dup-ack"] == "tcp.analysis.duplicate_ack"
    assert TSHARK_FIELDS["keep-alive-ack"] == "tcp.analysis.keep_alive_ack"
    assert names(analysis.FAST_RETRANSMISSION) == ("retransmission", "fast-retransmission")
    assert names(0) == ()


# --- Wireshark, through pyshark, frame by frame ----------------------------------------------------

PYSHARK_NAME = {"analysis_" + field.split(".", 2)[2]: name for name, field in TSHARK_FIELDS.items()}


def wireshark_labels(path: Path) -> dict[int, set[str]]:
    """What Wireshark says: frame number -> labels, for the frames it labels."""
    import pyshark
    from pyshark.capture.capture import TSharkCrashException

    out = {}
    cap = pyshark.FileCapture(str(path), display_filter="tcp.analysis.flags", keep_packets=False)
    try:
        for packet in cap:
            for layer in packet.layers:  # tunnels: every TCP layer of the frame
                if layer.layer_name == "tcp":
                    found = {PYSHARK_NAME[f] for f in layer.field_names if f in PYSHARK_NAME}
                    if found:
                        out.setdefault(int(packet.number), set()).update(found)
    except TSharkCrashException:  # a malformed file: what tshark read before it gave up
        pass
    finally:
        with contextlib.suppress(TSharkCrashException):
            cap.close()
    return out


def verifier_labels(path: Path) -> tuple[dict[int, set[str]], int]:
    """What verifier says, and the last frame it read (a file may stop being readable)."""
    analyzer, out, last = Analyzer(), {}, 0
    with open(path, "rb") as f:
        try:
            for frame in read_frames(f):
                last = frame.index
                s = decode(frame)
                if s is not None:
                    found = analyzer.labels(s)
                    if found:
                        out[frame.index] = set(found)
        except CaptureError:
            pass
    return out, last


@pytest.fixture(scope="module")
def wireshark():
    with ProcessPoolExecutor(max_workers=4) as pool:
        return dict(zip(CAPTURES, pool.map(wireshark_labels, CAPTURES)))


def test_the_captures_exercise_every_label(wireshark):
    seen = set().union(*(labels for by_frame in wireshark.values() for labels in by_frame.values()))
    assert seen == set(NAMES)


@pytest.mark.parametrize("path", CAPTURES, ids=[str(p.relative_to(DATA)) for p in CAPTURES])
def test_labels_equal_wiresharks_frame_by_frame(path, wireshark):
    ours, last = verifier_labels(path)
    theirs = {n: labels for n, labels in wireshark[path].items() if n <= last}
    assert ours == theirs
