"""Tests for verifier.lab.capture: both backends see each packet once, without markers, and agree."""

from __future__ import annotations

import io
import socket
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

from verifier.errors import EXIT_ENVIRONMENT, EXIT_FAILED, EnvironmentProblem, UsageError
from verifier.lab import capture, netns
from verifier.lab.capture import (
    BACKENDS,
    MARKER_PREFIX,
    CaptureFailed,
    CaptureResult,
    ScapyCapture,
    TcpdumpCapture,
    capture_backend,
    marker_token,
)
from verifier.lab.netns import Namespace

pytestmark = pytest.mark.privileged

DROP_UDP = """
table inet verifier_test {
    chain output {
        type filter hook output priority 0; policy accept;
        meta l4proto udp drop
    }
}
"""


@pytest.fixture
def ns():
    with Namespace("capture") as namespace:
        yield namespace


def tcp_exchange(ns: Namespace, payload: bytes = b"hello") -> None:
    """A connect, one write, and a close from both ends, between two sockets inside `ns`."""
    with ns.entered():
        server = socket.socket()
        client = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client.connect(server.getsockname())
    accepted, _ = server.accept()
    client.sendall(payload)
    received = b""
    while len(received) < len(payload):
        received += accepted.recv(1 << 20)
    assert received == payload
    client.close()
    assert accepted.recv(100) == b""
    accepted.close()
    server.close()


def segments(pcap: bytes) -> list[tuple[str, int, int, int]]:
    packets = rdpcap(io.BytesIO(pcap))
    assert all(TCP in packet for packet in packets), [packet.summary() for packet in packets]
    return [(str(p[TCP].flags), p[TCP].seq, p[TCP].ack, len(p[TCP].payload)) for p in packets]


@pytest.mark.parametrize("backend_class", [ScapyCapture, TcpdumpCapture])
def test_tcp_exchange_is_captured_once_per_packet_without_markers(ns, backend_class):
    backend = backend_class()
    backend.start(ns)
    tcp_exchange(ns)
    result = backend.stop()

    assert result.backend == backend_class.name
    assert result.dropped == 0
    assert MARKER_PREFIX not in result.pcap
    flags = [flag for flag, *_ in segments(result.pcap)]
    assert result.packets == len(flags)
    assert flags[:3] == ["S", "SA", "A"]
    assert flags.count("S") == 1 and flags.count("SA") == 1
    assert flags.count("PA") == 1
    assert flags.count("FA") == 2
    assert len(flags) in (7, 8)  # the FIN's ACK may ride on the other FIN
    seqs = segments(result.pcap)
    assert len(set(seqs)) == len(seqs), "a packet was captured twice"


@pytest.mark.parametrize("backend_class", [ScapyCapture, TcpdumpCapture])
def test_pcap_is_classic_ethernet_with_nanosecond_timestamps(ns, backend_class):
    backend = backend_class()
    backend.start(ns)
    tcp_exchange(ns)
    pcap = backend.stop().pcap
    magic, major, minor, _, _, snaplen, linktype = struct.unpack("=IHHiIII", pcap[:24])
    assert magic == 0xA1B23C4D
    assert (major, minor) == (2, 4)
    assert linktype == 1
    assert snaplen >= 65536 + 14


def test_empty_capture_is_a_valid_pcap(ns):
    for backend_class in (ScapyCapture, TcpdumpCapture):
        backend = backend_class()
        backend.start(ns)
        result = backend.stop()
        assert result.packets == 0
        assert len(result.pcap) == 24
        assert len(rdpcap(io.BytesIO(result.pcap))) == 0


def test_both_backends_capture_the_same_segments_of_the_same_traffic(ns):
    scapy_backend, tcpdump_backend = ScapyCapture(), TcpdumpCapture()
    with scapy_backend, tcpdump_backend:
        scapy_backend.start(ns)
        tcpdump_backend.start(ns)
        tcp_exchange(ns, b"x" * 100_000)  # several segments, some of them 64 KiB
        by_tcpdump = tcpdump_backend.stop()
        by_scapy = scapy_backend.stop()
    assert segments(by_scapy.pcap) == segments(by_tcpdump.pcap)
    assert by_scapy.packets == by_tcpdump.packets >= 8
    assert sum(length for *_, length in segments(by_scapy.pcap)) == 100_000
    # one timeline: each packet's two timestamps are microseconds apart
    times_scapy = [packet.time for packet in rdpcap(io.BytesIO(by_scapy.pcap))]
    times_tcpdump = [packet.time for packet in rdpcap(io.BytesIO(by_tcpdump.pcap))]
    assert all(abs(a - b) < 0.01 for a, b in zip(times_scapy, times_tcpdump, strict=True))


def relative_segments(pcap: bytes) -> list[tuple[str, str, int, int, int]]:
    """(client|server, flags, seq, ack, len) with each side's ISN as 0, as Wireshark shows them."""
    packets = rdpcap(io.BytesIO(pcap))
    client = (packets[0][IP].src, packets[0][TCP].sport)
    isn: dict[tuple[str, int], int] = {}
    rows = []
    for packet in packets:
        sender = (packet[IP].src, packet[TCP].sport)
        receiver = (packet[IP].dst, packet[TCP].dport)
        isn.setdefault(sender, packet[TCP].seq)
        ack = (packet[TCP].ack - isn[receiver]) % (1 << 32) if "A" in str(packet[TCP].flags) else 0
        rows.append((
            "client" if sender == client else "server",
            str(packet[TCP].flags),
            (packet[TCP].seq - isn[sender]) % (1 << 32),
            ack,
            len(packet[TCP].payload),
        ))
    return rows


def test_each_backend_alone_gives_the_same_relative_segments(ns):
    results = {}
    for backend_class in (ScapyCapture, TcpdumpCapture):
        backend = backend_class()
        backend.start(ns)
        tcp_exchange(ns)
        results[backend_class.name] = relative_segments(backend.stop().pcap)
    assert results["scapy"] == results["tcpdump"]
    assert results["scapy"][:3] == [("client", "S", 0, 0, 0), ("server", "SA", 0, 1, 0), ("client", "A", 1, 1, 0)]


@pytest.mark.parametrize("backend_class", [ScapyCapture, TcpdumpCapture])
def test_start_fails_clearly_when_the_marker_is_never_seen(ns, backend_class, monkeypatch):
    monkeypatch.setattr(capture, "marker_token", lambda frame, *rest: None)  # a sniffer blind to the marker
    backend = backend_class()
    with pytest.raises(CaptureFailed, match="start marker within 0.3 s") as caught:
        backend.start(ns, timeout=0.3)
    assert caught.value.exit_code == EXIT_FAILED
    assert ns.processes() == []  # tcpdump was not left running


@pytest.mark.parametrize("backend_class", [ScapyCapture, TcpdumpCapture])
def test_start_fails_clearly_when_the_firewall_drops_the_marker(backend_class):
    with Namespace("nomarker", nft_ruleset=DROP_UDP) as namespace:
        backend = backend_class()
        with pytest.raises(CaptureFailed, match="cannot send the capture marker"):
            backend.start(namespace)
        assert namespace.processes() == []


@pytest.mark.parametrize("backend_class", [ScapyCapture, TcpdumpCapture])
def test_stop_fails_clearly_when_the_end_marker_is_never_seen(ns, backend_class, monkeypatch):
    backend = backend_class()
    backend.start(ns)
    monkeypatch.setattr(capture, "marker_token", lambda frame, *rest: None)
    with pytest.raises(CaptureFailed, match="end marker within 0.2 s"):
        backend.stop(timeout=0.2)
    assert ns.processes() == []


def test_kernel_drops_fail_the_capture_but_keep_the_result():
    result = CaptureResult(pcap=b"", packets=0, dropped=3, backend="scapy")
    with pytest.raises(CaptureFailed, match="dropped 3 packets") as caught:
        ScapyCapture()._checked(result, allow_drops=False)
    assert caught.value.result is result
    assert ScapyCapture()._checked(result, allow_drops=True) is result


def test_missing_tcpdump_names_its_package(monkeypatch):
    netns._tool_path.cache_clear()
    monkeypatch.setattr(netns.shutil, "which", lambda *args, **kwargs: None)
    try:
        with pytest.raises(EnvironmentProblem, match="package tcpdump") as caught:
            TcpdumpCapture()
        assert caught.value.exit_code == EXIT_ENVIRONMENT
    finally:
        netns._tool_path.cache_clear()


def test_backends_by_cli_name():
    assert set(BACKENDS) == {"scapy", "tcpdump"}
    assert isinstance(capture_backend("scapy"), ScapyCapture)
    with pytest.raises(UsageError, match="unknown capture backend"):
        capture_backend("wireshark")


def test_marker_token_recognises_ipv4_and_ipv6_udp_markers_only():
    payload = MARKER_PREFIX + b"start-0123"
    v4 = bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=1, dport=2) / Raw(payload))
    v6 = bytes(Ether() / IPv6(src="::1", dst="::1") / UDP(sport=1, dport=2) / Raw(payload))
    tcp = bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP() / Raw(payload))
    other_udp = bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP() / Raw(b"hello"))
    assert marker_token(v4) == payload
    assert marker_token(v6) == payload
    assert marker_token(tcp) is None
    assert marker_token(other_udp) is None
    assert marker_token(b"") is None


def test_capture_module_does_not_import_scapy_until_needed():
    import subprocess
    import sys

    code = "import sys, verifier.lab.capture; print(any(m.startswith('scapy') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert capture.import_scapy() >= 0
