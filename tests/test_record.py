"""Tests of verifier.record and verifier.wire.pcapng: fixture pcapng (events as packet comments), transcripts, atomic writes."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from builders import PCAP_MAGIC_NS, ether, ipv4_tcp, pcap_file
from verifier import __version__, record
from verifier.expectation import parse
from verifier.lab.runtime import Runtime
from verifier.match import match
from verifier.record import (
    FIXTURE_SNAPLEN, atomic_write, event_comments, fixture_dir, pcapng_for, stable_events, transcript_for,
    write_fixture,
)
from verifier.scenario import Scenario
from verifier.timeline import segment_lines
from verifier.wire import pcapng
from verifier.wire.capture import read_frames
from verifier.wire.model import CaptureInfo
from verifier.wire.show import CaptureReading
from verifier.wire.transcript import EventLine

SEC = 1_700_000_000
STEP_NS = 100_000  # 0.1 ms between packets
PLAT = {"os": "linux", "kernel": "6.1.0-test", "label": "linux-6.1", "machine": "x86_64", "python": "3.11"}
CLIENT_PORT = 40123
PAYLOAD = 1000


def tcp_frames() -> list[bytes]:
    """Handshake, 1000 bytes from the server, its ACK, then a FIN close (client first, piggybacked)."""
    c, s = dict(sport=CLIENT_PORT, dport=5000), dict(sport=5000, dport=CLIENT_PORT)
    packets = [
        ipv4_tcp(**c, seq=100, flags="S", options=[("mss", 65495)]),
        ipv4_tcp(**s, seq=500, ack=101, flags="S.", options=[("mss", 65495)]),
        ipv4_tcp(**c, seq=101, ack=501, flags="."),
        ipv4_tcp(**s, seq=501, ack=101, flags="P.", payload=b"x" * PAYLOAD),
        ipv4_tcp(**c, seq=101, ack=501 + PAYLOAD, flags="."),
        ipv4_tcp(**c, seq=101, ack=501 + PAYLOAD, flags="F."),
        ipv4_tcp(**s, seq=501 + PAYLOAD, ack=102, flags="F."),
        ipv4_tcp(**c, seq=102, ack=502 + PAYLOAD, flags="."),
    ]
    return [ether(p) for p in packets]


def capture_bytes(frames: list[bytes] | None = None) -> bytes:
    frames = tcp_frames() if frames is None else frames
    return pcap_file([(SEC, 123_456_789 + i * STEP_NS, f) for i, f in enumerate(frames)], magic=PCAP_MAGIC_NS)


def frame_times(pcap: bytes) -> list[float]:
    return [f.t for f in read_frames(io.BytesIO(pcap))]


def fake_result(pcap: bytes, events: list[EventLine], name: str = "demo") -> SimpleNamespace:
    """What record needs of a lab ScenarioResult."""
    scenario = Scenario(name, Path(f"/x/{name}.mjs"), "a demo of the fixtures")
    return SimpleNamespace(
        scenario=scenario, runtime=Runtime("node", "/usr/bin/node", "20.20.2"), backend="scapy",
        pcap=pcap, events=events, connections=list(CaptureReading(io.BytesIO(pcap)).connections()),
    )


def demo_events(times: list[float]) -> list[EventLine]:
    return [
        EventLine("listener", "listening", (("address", "127.0.0.1"), ("port", 5000)), times[0] - 0.001),
        EventLine("client", "connect", (("localPort", CLIENT_PORT), ("remotePort", 5000)), times[2]),  # exactly at frame 3
        EventLine("server", "write()", (("len", PAYLOAD),), times[2] + 0.00005),  # between frames 3 and 4
        EventLine("client", "end()", (), times[4] + 0.00001),
        EventLine("client", "close", (("hadError", False),), times[-1] + 0.0002),  # after the last packet
        EventLine("listener", "close", (), times[-1] + 0.0003),
    ]


# --- event_comments -------------------------------------------------------------------------


def test_event_comments_first_packet_at_or_after_each_event():
    frames = [1.0, 2.0, 3.0]
    events = [
        EventLine("client", "a", (), 0.5),
        EventLine("client", "b", (), 1.0),  # at a packet's time: that packet
        EventLine("server", "c", (("n", 1),), 1.25),
        EventLine("server", "d", (), 3.5),
        EventLine("client", "e", (), 4.0),
    ]
    out = event_comments(frames, events)
    assert out == {
        0: "client a (500000 us before this packet)\nclient b (0 us before this packet)",
        1: "server c n=1 (750000 us before this packet)",
        2: "server d (500000 us after this packet)\nclient e (1000000 us after this packet)",
    }
    assert event_comments([], events) == {}
    assert event_comments(frames, []) == {}


# --- pcapng_for -----------------------------------------------------------------------------


def test_pcapng_reads_back_with_comments_on_the_right_packets():
    pcap = capture_bytes()
    times = frame_times(pcap)
    result = fake_result(pcap, demo_events(times))
    info = CaptureInfo()
    frames = list(read_frames(io.BytesIO(pcapng_for(result, PLAT)), info))
    assert info.format == "pcapng" and len(frames) == 8
    assert [f.t for f in frames] == pytest.approx(times, abs=1e-6)
    comments = [f.comment for f in frames]
    assert comments[0] == "listener listening address=127.0.0.1 port=5000 (1000 us before this packet)"
    assert comments[2] == f"client connect localPort={CLIENT_PORT} remotePort=5000 (0 us before this packet)"
    assert comments[3] == f"server write() len={PAYLOAD} (50 us before this packet)"
    assert comments[5] == "client end() (90 us before this packet)"
    assert comments[7] == "client close hadError=false (200 us after this packet)\nlistener close (300 us after this packet)"
    assert [n for n, c in enumerate(comments) if c is None] == [1, 4, 6]
    (section,) = info.sections
    assert section["os"] == "Linux 6.1.0-test" and section["hardware"] == "x86_64"
    assert section["userappl"] == f"verifier {__version__}; runtime node 20.20.2; scenario demo; backend scapy"
    assert section["comment"] == "demo: a demo of the fixtures"
    (iface,) = info.interfaces
    assert iface["linktype"] == 1 and iface["snaplen"] == FIXTURE_SNAPLEN and iface["name"] == "lo"
    assert iface["tsresol"] == 10**9


def test_pcapng_keeps_headers_only_with_exact_lengths():
    pcap = capture_bytes()
    original = list(read_frames(io.BytesIO(pcap)))
    fixture = pcapng_for(fake_result(pcap, []), PLAT)
    frames = list(read_frames(io.BytesIO(fixture)))
    assert [f.orig_len for f in frames] == [f.orig_len for f in original]
    assert [len(f.data) for f in frames] == [min(len(f.data), FIXTURE_SNAPLEN) for f in original]
    assert frames[3].orig_len == 14 + 20 + 20 + PAYLOAD and len(frames[3].data) == FIXTURE_SNAPLEN
    assert [f.data for f in frames] == [f.data[:FIXTURE_SNAPLEN] for f in original]
    # the cut payload changes nothing the wire core reports: lengths come from the IP header
    def transcript(data):
        return [[(s.side, s.flags, s.seq, s.ack, s.length) for s in c.segments]
                for c in CaptureReading(io.BytesIO(data)).connections()]
    assert transcript(fixture) == transcript(pcap)
    assert (1 << 3 | 1 << 4, 1, PAYLOAD) in [(f, q, n) for _, f, q, _, n in transcript(fixture)[0]]


def test_pcapng_without_packets_keeps_the_event_count():
    pcap = capture_bytes([])
    events = [EventLine("client", "error", (("code", "ENOTFOUND"),), 1.0)]
    info = CaptureInfo()
    frames = list(read_frames(io.BytesIO(pcapng_for(fake_result(pcap, events), PLAT)), info))
    assert frames == []
    assert info.sections[0]["comment"] == "demo: a demo of the fixtures\nevents before the first packet or without one: 1"
    assert info.interfaces[0]["linktype"] == 1


def test_pcapng_packet_block_layout():
    block = pcapng.packet(1.5, b"abc", orig_len=70, comment="hi", ts_ns=1_500_000_000)
    assert len(block) % 4 == 0
    assert int.from_bytes(block[4:8], "little") == len(block) == int.from_bytes(block[-4:], "little")
    data = pcapng.section_header(os="x") + pcapng.interface(1) + block
    (frame,) = read_frames(io.BytesIO(data))
    assert (frame.t, frame.data, frame.orig_len, frame.comment) == (1.5, b"abc", 70, "hi")


@pytest.fixture
def fixture_file(tmp_path):
    pcap = capture_bytes()
    result = fake_result(pcap, demo_events(frame_times(pcap)))
    pcap_path, txt_path = write_fixture(tmp_path / "f", result, PLAT)
    return pcap_path, txt_path, pcap


def run_tool(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("capinfos") is None, reason="capinfos (wireshark-common) not installed")
def test_capinfos_reads_the_section_header(fixture_file):
    pcap_path, _, _ = fixture_file
    out = run_tool("capinfos", str(pcap_path))
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}
    assert fields["File type"].endswith("pcapng")
    assert fields["Number of packets"] == "8"
    assert fields["Capture oper-sys"] == "Linux 6.1.0-test"
    assert fields["Capture hardware"] == "x86_64"
    assert fields["Capture application"] == f"verifier {__version__}; runtime node 20.20.2; scenario demo; backend scapy"
    assert fields["Capture comment"] == "demo: a demo of the fixtures"
    assert f"Capture length = {FIXTURE_SNAPLEN}" in out


def test_tshark_reads_comments_and_lengths(fixture_file):
    pcap_path, _, _ = fixture_file
    out = run_tool("tshark", "-r", str(pcap_path), "-T", "fields", "-E", "separator=|",
                   "-e", "frame.number", "-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.comment")
    rows = [line.split("|") for line in out.splitlines()]
    assert [r[0] for r in rows] == [str(n) for n in range(1, 9)]
    assert rows[3][1:3] == [str(14 + 20 + 20 + PAYLOAD), str(FIXTURE_SNAPLEN)]
    assert rows[2][3] == f"client connect localPort={CLIENT_PORT} remotePort=5000 (0 us before this packet)"
    assert rows[1][3] == "" and rows[0][3].startswith("listener listening")
    # two comments on one packet: tshark shows the newline escaped
    assert rows[7][3] == "client close hadError=false (200 us after this packet)\\nlistener close (300 us after this packet)"


def test_fixture_timestamps_are_exact(fixture_file, tmp_path):
    pcap_path, _, pcap = fixture_file
    original = tmp_path / "original.pcap"
    original.write_bytes(pcap)
    def stamps(path):
        return run_tool("tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch").split()
    assert stamps(pcap_path) == stamps(original)


# --- transcripts ----------------------------------------------------------------------------


def test_stable_events_wildcard_ephemeral_ports_only():
    events = [
        EventLine("client", "connect", (("localPort", 40123), ("remotePort", 5000), ("localAddress", "::1")), 1.0),
        EventLine("listener", "connection", (("localPort", 5000), ("remotePort", 40123)), 1.1),
        EventLine("client", "connectionAttempt", (("ip", "::1"), ("port", 5000), ("family", 6)), 1.2),
        EventLine("client", "error", (("port", 5001), ("ports", [5001, 5001]), ("bytesRead", 40123)), 1.3),
        EventLine("client", "odd", (("port", "40123"), ("remotePort", None)), 1.4),
    ]
    out = stable_events(events, {5000, 5001})
    assert [e.args for e in out] == [
        (("localPort", "*"), ("remotePort", 5000), ("localAddress", "::1")),
        (("localPort", 5000), ("remotePort", "*")),
        (("ip", "::1"), ("port", 5000), ("family", 6)),
        (("port", 5001), ("ports", [5001, 5001]), ("bytesRead", 40123)),  # not a port key: kept
        (("port", "40123"), ("remotePort", None)),  # not a number: kept
    ]
    assert [(e.side, e.name, e.t) for e in out] == [(e.side, e.name, e.t) for e in events]


def test_transcript_for_is_stable_and_a_valid_expectation():
    pcap = capture_bytes()
    result = fake_result(pcap, demo_events(frame_times(pcap)))
    text = transcript_for(result)
    lines = text.splitlines()
    assert lines[0] == "# demo: a demo of the fixtures"
    assert "client connect localPort=* remotePort=5000" in lines
    assert "S > C  P. 1:1001(1000) ack 1" in lines
    assert not any(line.startswith("+") for line in lines)  # no times: the same from run to run
    assert str(CLIENT_PORT) not in text
    exp = parse(text, "linux", "demo.txt")
    assert match(exp, segment_lines(result.connections), result.events) == []
    # another run from another ephemeral port prints the same transcript
    moved = capture_bytes([f.replace(CLIENT_PORT.to_bytes(2, "big"), (CLIENT_PORT + 7).to_bytes(2, "big")) for f in tcp_frames()])
    other = fake_result(moved, [
        EventLine(e.side, e.name, tuple((k, CLIENT_PORT + 7 if v == CLIENT_PORT else v) for k, v in e.args), e.t)
        for e in result.events
    ])
    assert transcript_for(other) == text


def test_fixture_dir():
    assert fixture_dir(Path("captures"), "linux-6.1", "node-20") == Path("captures/linux-6.1/node-20")


def test_write_fixture_writes_both_files(fixture_file):
    pcap_path, txt_path, _ = fixture_file
    assert pcap_path.name == "demo.pcapng" and txt_path.name == "demo.txt"
    assert pcap_path.parent == txt_path.parent and pcap_path.parent.name == "f"
    assert len(list(read_frames(io.BytesIO(pcap_path.read_bytes())))) == 8
    assert txt_path.read_text().startswith("# demo: ")
    assert sorted(p.name for p in pcap_path.parent.iterdir()) == ["demo.pcapng", "demo.txt"]


# --- atomic_write ---------------------------------------------------------------------------


def test_atomic_write_creates_folders_and_file(tmp_path):
    target = tmp_path / "a" / "b" / "x.txt"
    atomic_write(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert target.stat().st_mode & 0o777 == 0o644
    assert os.listdir(target.parent) == ["x.txt"]


def test_atomic_write_replaces_by_rename(tmp_path):
    target = tmp_path / "x.txt"
    target.write_bytes(b"old contents")
    before = target.stat().st_ino
    with open(target, "rb") as reader:  # a reader that opened the old file keeps reading it whole
        atomic_write(target, b"new")
        assert reader.read() == b"old contents"
    assert target.read_bytes() == b"new"
    assert target.stat().st_ino != before  # a new file renamed over the old one, not rewritten in place
    assert os.listdir(tmp_path) == ["x.txt"]


@pytest.mark.parametrize("fail_in", ["fsync", "replace", "interrupt"])
def test_atomic_write_failure_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, fail_in):
    target = tmp_path / "x.txt"
    target.write_bytes(b"old")
    error = KeyboardInterrupt if fail_in == "interrupt" else OSError

    def boom(*args, **kwargs):
        raise error("injected")

    monkeypatch.setattr(record.os, "replace" if fail_in == "replace" else "fsync", boom)
    with pytest.raises(error):
        atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.txt"]


# --- runs with no packet, and runs that cannot be fixtures -----------------------------------


def test_write_fixture_of_a_run_with_no_packet_at_all(tmp_path):
    # Deno's resetAndDestroy() before connect: events, nothing on the wire; that is behaviour too
    events = [EventLine("client", "resetAndDestroy()", (), 1.0), EventLine("client", "close", (("hadError", False),), 1.1)]
    result = fake_result(capture_bytes([]), events, name="reset-while-connecting")
    assert result.connections == [] and record.not_recorded_reason(result) is None
    pcap_path, txt_path = write_fixture(tmp_path, result, PLAT)
    info = CaptureInfo()
    assert list(read_frames(io.BytesIO(pcap_path.read_bytes()), info)) == []
    assert info.format == "pcapng" and len(info.sections) == 1 and len(info.interfaces) == 1
    assert txt_path.read_text() == ("# reset-while-connecting: a demo of the fixtures\n"
                                    "client resetAndDestroy()\nclient close hadError=false\n")
    from verifier.diff import parse_transcript

    back = parse_transcript(txt_path.read_text(), str(txt_path))
    assert back.connections == [] and [e.name for e in back.events] == ["resetAndDestroy()", "close"]


def test_write_fixture_of_a_run_with_neither_packet_nor_event(tmp_path):
    _, txt_path = write_fixture(tmp_path, fake_result(capture_bytes([]), [], name="quiet"), PLAT)
    assert txt_path.read_text() == "# quiet: a demo of the fixtures\n"


def test_not_recorded_reason_only_for_a_run_without_a_capture():
    failed = SimpleNamespace(pcap=capture_bytes(), problems=["the program exited with status 1"])
    assert record.not_recorded_reason(failed) is None  # a failed or error run that was captured is recorded
    lost = SimpleNamespace(pcap=b"", problems=["namespace setup failed: ip: exit 1"])
    assert record.not_recorded_reason(lost) == "no capture: namespace setup failed: ip: exit 1"
    silent = SimpleNamespace(pcap=b"", problems=[])
    assert record.not_recorded_reason(silent) == "no capture: the run stopped before it was captured"
