"""The non-Linux lab path: loopback interface + port filter, no namespaces (macOS lo0, Npcap)."""

import io
import socket
import threading

import pytest

from verifier.errors import VerifierError
from verifier.lab import host
from verifier.lab.capture import TcpdumpCapture, marker_token
from verifier.lab.netns import Namespace
from verifier.lab.run import capture_for, place_for
from verifier.scenario import builtin
from verifier.wire.show import CaptureReading


def test_os_family():
    assert [host.os_family(p) for p in ("linux", "darwin", "win32", "cygwin", "sunos5")] == ["linux", "darwin", "windows", "windows", "any"]


def test_capture_filter_names_the_ports_and_the_marker():
    assert host.capture_filter([5000, 5001], 40000) == "(tcp port 5000 or tcp port 5001) or (udp port 40000)"
    assert host.capture_filter([5000]) == "tcp port 5000"
    with pytest.raises(ValueError):
        host.capture_filter([])


def test_capture_commands_per_os():
    mac = host.capture_argv("darwin", "tcpdump", "lo0", "/tmp/f.pcap", "tcp port 5000")
    assert mac[:3] == ["tcpdump", "-i", "lo0"] and "--immediate-mode" in mac and "-U" in mac and mac[-1] == "tcp port 5000"
    win = host.capture_argv("windows", "dumpcap", r"\Device\NPF_Loopback", "C:/t/f.pcap", "tcp port 5000")
    assert win[:3] == ["dumpcap", "-i", r"\Device\NPF_Loopback"] and "-P" in win and win[-2:] == ["-f", "tcp port 5000"]


def test_drops_from_each_tools_report():
    assert host.drops_from_report("/usr/sbin/tcpdump", "12 packets captured\n12 packets received by filter\n3 packets dropped by kernel\n") == 3
    dumpcap = "Packets captured: 40\nPackets received/dropped on interface '\\Device\\NPF_Loopback': 40/2 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0) (100.0%)\n"
    assert host.drops_from_report("C:/Program Files/Wireshark/dumpcap.exe", dumpcap) == 2
    assert host.drops_from_report("tcpdump", "nothing said") is None


def test_program_runs_as_the_invoking_user_on_macos():
    assert host.run_as("darwin", ["node", "x.mjs"], (501, 20)) == ["sudo", "-n", "-u", "#501", "-g", "#20", "--", "node", "x.mjs"]
    assert host.run_as("windows", ["node", "x.mjs"], (501, 20)) == ["node", "x.mjs"]
    h = host.Host("darwin")
    assert h.interface == "lo0" and h.name == "host-darwin" and h.processes() == []
    with h.entered() as same:
        assert same is h


def test_place_and_capture_per_os():
    scenarios = {s.name: s for s in builtin()}
    assert isinstance(place_for(scenarios["client-end"], "darwin"), host.Host)
    with pytest.raises(VerifierError, match="only Linux namespaces"):
        place_for(scenarios["attempt-timeout"], "darwin")  # its blackhole is an nftables rule
    cap = capture_for("scapy", "darwin", scenarios["client-end"])
    assert isinstance(cap, TcpdumpCapture) and cap.interface == "lo0" and cap.ports == (5000, 5001)
    assert isinstance(place_for(scenarios["client-end"], "linux"), Namespace)


def test_syn_rto_is_a_cgroup_on_linux_and_ignored_with_a_note_elsewhere():
    import contextlib
    import io

    from verifier.lab.run import SYN_RTO_IGNORED, ScenarioResult, syn_rto_for
    from verifier.lab.runtime import Runtime
    from verifier.lab.synrto import SynRtoCgroup
    from verifier.report import ResultsTable, result_record

    scenarios = {s.name: s for s in builtin()}
    timed = scenarios["attempt-timeout"]
    assert timed.syn_rto == 0.1
    linux = syn_rto_for(timed, "linux")
    assert isinstance(linux, SynRtoCgroup) and linux.seconds == 0.1 and not linux.path  # made on enter
    for family in ("darwin", "windows"):
        assert isinstance(syn_rto_for(timed, family), contextlib.nullcontext)
    assert isinstance(syn_rto_for(scenarios["client-end"], "linux"), contextlib.nullcontext)
    # the note is printed for a run that held, and in the JSON
    result = ScenarioResult(timed, Runtime("node", "node", "20.0.0"), "tcpdump", "held", notes=[SYN_RTO_IGNORED])
    out = io.StringIO()
    ResultsTable(out, total=1).finish([result], 1.0, [])
    assert "note: attempt-timeout (node): 'syn-rto:' ignored: only Linux" in out.getvalue()
    assert result_record(result)["notes"] == [SYN_RTO_IGNORED]


def test_marker_token_on_bsd_null_frames():
    import struct

    payload = b"verifier-marker-start-00"
    ip = bytes([0x45, 0, 0, 28 + len(payload), 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1])
    udp = struct.pack("!HHHH", 1, 2, 8 + len(payload), 0)
    assert marker_token(struct.pack("<I", 2) + ip + udp + payload, linktype=0) == payload
    assert marker_token(struct.pack("<I", 2) + ip + udp + payload, linktype=1) is None


@pytest.mark.privileged
def test_port_filtered_capture_keeps_only_the_scenarios_ports():
    """The host path's capture, exercised inside a namespace: traffic on other ports is left out."""
    with Namespace("hostpath") as ns:
        cap = TcpdumpCapture(interface="lo", ports=(5000,), family="linux")
        cap.start(ns)
        try:
            with ns.entered():
                servers = [socket.create_server(("127.0.0.1", p)) for p in (5000, 6000)]
            accepted = []

            def serve(s):
                c, _ = s.accept()
                accepted.append(c)

            threads = [threading.Thread(target=serve, args=(s,)) for s in servers]
            for t in threads:
                t.start()
            with ns.entered():
                clients = [socket.create_connection(("127.0.0.1", p)) for p in (5000, 6000)]
            for t in threads:
                t.join()
            for c in clients + accepted + servers:
                c.close()
        finally:
            result = cap.stop()
    conns = list(CaptureReading(io.BytesIO(result.pcap)).connections())
    assert [c.server[1] for c in conns] == [5000]
    assert conns[0].segments[0].flags == 0x02
