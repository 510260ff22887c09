"""Faults at a point the program chooses: requests, nft rules, the relay's decisions (pure); on the wire and cleaned up (privileged)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from verifier.lab.fault import Fault, FaultError, nft_rules, nft_table, parse_request
from verifier.lab.relay import (RELAY_MARK, TAP_NAME, Packet, Schedule, nft_relay_table, parse_frame,
                                with_tcp_checksum)

# --- requests -------------------------------------------------------------------------------


def test_a_request_names_the_kind_and_what_it_takes_with_defaults():
    assert parse_request('{"kind": "blackhole"}', 5000) == Fault("blackhole", 5000, "both")
    assert parse_request('{"kind": "reset", "port": 6000}', 5000) == Fault("reset", 6000, "to")
    assert parse_request('{"kind": "drop", "every": 3, "direction": "from"}', 5000) == Fault("drop", 5000, "from", every=3)
    assert parse_request('{"kind": "delay", "ms": 50, "address": "0:0::1"}', 5000) == \
        Fault("delay", 5000, "from", address="::1", ms=50)
    assert parse_request('{"kind": "reorder"}', 5000) == Fault("reorder", 5000, "from", ms=50, every=2)
    assert parse_request('{"kind": "clear"}', 5000) is None


@pytest.mark.parametrize("line,says", [
    ("not json", "one JSON object"),
    ("[1]", "one JSON object"),
    ('{"kind": "netem"}', "unknown fault kind 'netem'"),
    ('{"kind": "drop", "prob": 0.5}', "unknown fault option 'prob'"),
    ('{"kind": "drop", "port": 70000}', "port must be"),
    ('{"kind": "drop", "port": true}', "port must be"),
    ('{"kind": "drop", "address": "localhost"}', "address must be an IP address"),
    ('{"kind": "drop", "direction": "up"}', "direction must be one of"),
    ('{"kind": "delay"}', "delay needs ms"),
    ('{"kind": "delay", "ms": 1.5}', "whole milliseconds"),
    ('{"kind": "delay", "ms": 999999}', "whole milliseconds"),
    ('{"kind": "drop", "every": 0}', "every must be"),
    ('{"kind": "blackhole", "every": 2}', "use drop with every"),
    ('{"kind": "reset", "direction": "from"}', "direction 'to' only"),
    ('{"kind": "reorder", "every": 1}', "at least 2"),
])
def test_a_bad_request_is_refused_saying_what_is_wrong(line, says):
    with pytest.raises(FaultError, match=says):
        parse_request(line, 5000)


def test_a_fault_selects_packets_by_port_direction_and_address():
    to = Fault("drop", 5000, "to", address="::1")
    assert to.matches("::1", 40000, "::1", 5000)
    assert not to.matches("::1", 5000, "::1", 40000)  # from the port: not this direction
    assert not to.matches("127.0.0.1", 40000, "127.0.0.1", 5000)  # another address
    both = Fault("blackhole", 5000, "both")
    assert both.matches("127.0.0.1", 5000, "127.0.0.1", 1) and both.matches("::1", 1, "::1", 5000)
    assert not both.matches("127.0.0.1", 1, "127.0.0.1", 2)


# --- nft rules ------------------------------------------------------------------------------


def test_blackhole_reset_and_drop_are_input_rules():
    assert nft_rules(Fault("blackhole", 5000, "both")) == ["tcp dport 5000 drop", "tcp sport 5000 drop"]
    assert nft_rules(Fault("reset", 5000, "to", address="127.0.0.1")) == \
        ["ip daddr 127.0.0.1 tcp dport 5000 reject with tcp reset"]
    # every Nth deterministically: a counter per rule, the Nth, 2Nth ... matching packet dropped
    assert nft_rules(Fault("drop", 5000, "from", address="::1", every=3)) == \
        ["ip6 saddr ::1 tcp sport 5000 numgen inc mod 3 2 drop"]


def test_the_fault_table_is_replaced_whole_in_its_own_table():
    text = nft_table(["tcp dport 5000 drop"])
    assert text.startswith("table inet verifier_fault\ndelete table inet verifier_fault\n")
    assert "hook input priority -10" in text and "    tcp dport 5000 drop\n" in text


def test_the_relay_table_forwards_from_los_egress_what_the_relay_did_not_send():
    text = nft_relay_table([Fault("delay", 5000, "from", address="::1", ms=10), Fault("reorder", 6000, "both")])
    assert 'type filter hook egress device "lo"' in text
    assert f'meta mark != {RELAY_MARK:#x} ip6 saddr ::1 tcp sport 5000 fwd to "{TAP_NAME}"' in text
    assert f'meta mark != {RELAY_MARK:#x} tcp dport 6000 fwd to "{TAP_NAME}"' in text
    assert f'meta mark != {RELAY_MARK:#x} tcp sport 6000 fwd to "{TAP_NAME}"' in text


# --- the relay's decisions ------------------------------------------------------------------


def frame(src: str, sport: int, dst: str, dport: int, payload: bytes = b"", flags: int = 0x18) -> bytes:
    """An Ethernet frame as lo carries it (zero MACs), TCP over IPv4 or IPv6, checksum 0."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, flags, 65535, 0, 0) + payload
    if ":" in src:
        ip = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + socket.inet_pton(socket.AF_INET6, src) \
            + socket.inet_pton(socket.AF_INET6, dst)
        return b"\0" * 12 + b"\x86\xdd" + ip + tcp
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0) + socket.inet_pton(socket.AF_INET, src) \
        + socket.inet_pton(socket.AF_INET, dst)
    return b"\0" * 12 + b"\x08\x00" + ip + tcp


def test_frames_are_read_as_lo_carries_them():
    assert parse_frame(frame("127.0.0.1", 5000, "127.0.0.1", 40000)) == Packet("127.0.0.1", 5000, "127.0.0.1", 40000)
    assert parse_frame(frame("::1", 40000, "::1", 5000)) == Packet("::1", 40000, "::1", 5000)
    assert parse_frame(b"\0" * 12 + b"\x86\xdd" + b"\x60" + b"\0" * 60) is None  # not TCP (next header 0)
    assert parse_frame(b"\0" * 20) is None


def checksum_ok(f: bytes) -> bool:
    """The TCP checksum verifies (the ones' complement sum over pseudo-header and segment is 0xFFFF)."""
    if f[12:14] == b"\x08\x00":
        seg = f[34:]
        pseudo = f[26:34] + struct.pack("!HH", 6, len(seg))
    else:
        seg = f[54:]
        pseudo = f[22:54] + struct.pack("!IxxxB", len(seg), 6)
    data = pseudo + seg + (b"\0" if len(seg) % 2 else b"")
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


@pytest.mark.parametrize("src,dst", [("127.0.0.1", "127.0.0.1"), ("::1", "::1")])
@pytest.mark.parametrize("payload", [b"", b"x", b"hello", bytes(range(256)) * 255])
def test_the_relay_computes_the_checksum_lo_left_to_the_hardware(src, dst, payload):
    fixed = with_tcp_checksum(frame(src, 5000, dst, 40000, payload))
    assert checksum_ok(fixed)
    assert with_tcp_checksum(fixed) == fixed


def test_delay_sends_each_packet_ms_later_in_order():
    s = Schedule((Fault("delay", 5000, "from", ms=100),))
    p = Packet("127.0.0.1", 5000, "127.0.0.1", 1)
    assert s.arrive(p, b"a", 1.0) == [(1.1, b"a")]
    assert s.arrive(p, b"b", 1.001) == [(1.101, b"b")]
    other = Packet("127.0.0.1", 1, "127.0.0.1", 5000)  # not selected: goes on at once
    assert s.arrive(other, b"c", 1.002) == [(1.002, b"c")]


def test_reorder_holds_every_nth_packet_until_the_next_has_gone():
    s = Schedule((Fault("reorder", 5000, "from", ms=50, every=2),))
    p = Packet("::1", 5000, "::1", 1)
    assert s.arrive(p, b"1", 0.0) == [(0.0, b"1")]
    assert s.arrive(p, b"2", 0.1) == []  # the 2nd is held
    assert s.next_deadline() == pytest.approx(0.15)
    assert s.arrive(p, b"3", 0.12) == [(0.12, b"3"), (0.12, b"2")]  # the 3rd overtakes it
    assert s.arrive(p, b"4", 0.2) == []
    assert s.expired(0.21) == []
    assert s.expired(0.25) == [(pytest.approx(0.25), b"4")]  # no 5th came: it goes at its deadline
    assert s.next_deadline() is None


def test_the_first_matching_rule_decides():
    s = Schedule((Fault("delay", 5000, "from", address="::1", ms=10), Fault("delay", 5000, "both", ms=30)))
    assert s.arrive(Packet("::1", 5000, "::1", 1), b"a", 0.0) == [(0.01, b"a")]
    assert s.arrive(Packet("127.0.0.1", 5000, "127.0.0.1", 1), b"b", 0.0) == [(0.03, b"b")]


# --- for real (privileged) ------------------------------------------------------------------

SERVER_AND_CLIENT = """\
import * as net from "node:net";
import {{ accept, connect, done, env, invoke, listen, log, once, watchServer }} from "./probe.mjs";
import {{ fault }} from "./fault.mjs";
const server = watchServer(net.createServer({{ allowHalfOpen: true }}));
const accepted = accept(server, undefined, {{ errors: ["ECONNRESET"] }});
await listen(server, env.port, "127.0.0.1");
{before}
const client = connect("client", {{ host: "127.0.0.1", port: env.port, allowHalfOpen: true }}, {{ errors: ["ECONNRESET"] }});
await once(client, "connect");
const peer = await accepted;
{after}
done({{ grace: 300 }});
"""

ECHO = """\
peer.on("data", (d) => peer.write(d));
invoke(client, "client", "write", "hello");
await once(client, "data");
invoke(client, "client", "end");
peer.on("end", () => peer.end());
await once(client, "close");
"""


def scenario(folder: Path, name: str, before: str = "", after: str = "", expect: str = "") -> Path:
    program = folder / f"{name}.mjs"
    program.write_text(f"// {name}: a test of the lab's faults\n" + SERVER_AND_CLIENT.format(before=before, after=after))
    (folder / f"{name}.expect").write_text(expect)
    return program


def run_json(tmp_path: Path, *programs: Path) -> dict:
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, "-m", "verifier", "run", *map(str, programs), "--json", str(out),
                           "--no-fixture-check", "-j", "2"], capture_output=True, text=True, timeout=120)
    assert out.exists(), done.stdout + done.stderr
    doc = json.loads(out.read_text())
    doc["output"] = done.stdout + done.stderr
    return doc


def shape(result: dict) -> list[list[tuple]]:
    """What a transcript says of each connection, without ports or times."""
    return [[(s["from"], s["flags"], s["seq"], s["ack"], s["len"]) for s in c["segments"]] for c in result["connections"]]


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "faults"
    path.mkdir()
    for p in [*reversed(path.parents), path]:  # the unprivileged program must reach it
        if p != Path("/"):
            os.chmod(p, os.stat(p).st_mode | 0o005)
    return path


@pytest.mark.privileged
def test_faults_happen_on_the_wire(folder, tmp_path):
    """Blackhole: the data is sent (captured) but never arrives; reset: the network answers RST;
    delay: the server's packets arrive 100 ms late; drop every 2nd: the 2nd is retransmitted."""
    blackhole = scenario(folder, "blackhole", after="""\
await fault("blackhole");
invoke(client, "client", "write", "x");
await new Promise((r) => setTimeout(r, 300));
client.destroy(); peer.destroy();
""", expect="never server data\n")
    reset = scenario(folder, "reset", after="""\
await fault("reset");
invoke(client, "client", "write", "x");
await once(client, "close");
peer.destroy();
""", expect="client error code=ECONNRESET\nnever server data\n")
    delay = scenario(folder, "delay", before='await fault("delay", { ms: 100 });', after=ECHO, expect="never R\n")
    drop = scenario(folder, "drop", before='await fault("drop", { every: 2 });', after=ECHO, expect="never R\n")
    doc = run_json(tmp_path, blackhole, reset, delay, drop)
    results = {r["scenario"]: r for r in doc["results"]}
    assert {n: r["status"] for n, r in results.items()} == dict.fromkeys(results, "held"), doc["output"]
    sent = shape(results["blackhole"])[0]
    assert ("client", "P.", 1, 1, 1) in sent  # on the wire (captured as sent), never delivered
    assert not [s for s in sent if s[0] == "server" and s[3] > 1], "the server never acknowledged the data"
    reset_shape = shape(results["reset"])[0]
    data = reset_shape.index(("client", "P.", 1, 1, 1))
    assert reset_shape[data + 1] == ("server", "R", 1, 0, 0)  # the network's answer, in the server's name
    segments = results["delay"]["connections"][0]["segments"]
    syn, synack = segments[0], segments[1]
    assert (syn["flags"], synack["flags"]) == ("S", "S.")
    assert 0.1 <= synack["t"] - syn["t"] < 0.15  # the SYN-ACK came back 100 ms late
    # every 2nd packet to the server dropped: the handshake's ACK is lost, the data segment carries it
    sent = [(s["flags"], s["seq"], s["len"]) for s in results["drop"]["connections"][0]["segments"] if s["from"] == "client"]
    assert len(sent) > len(set(sent)), f"a dropped segment is sent again: {sent}"


@pytest.mark.privileged
def test_a_no_fault_run_through_the_relay_is_the_plain_run(folder, tmp_path):
    """Relaying every packet both ways with no delay changes nothing in the transcript: each
    packet is captured once (lo's egress hook takes it before the taps; it is captured when re-sent)."""
    plain = scenario(folder, "plain", after=ECHO, expect="never R\n")
    relayed = scenario(folder, "relayed", before='await fault("delay", { ms: 0, direction: "both" });', after=ECHO,
                       expect="never R\n")
    doc = run_json(tmp_path, plain, relayed)
    results = {r["scenario"]: r for r in doc["results"]}
    assert [r["status"] for r in results.values()] == ["held", "held"], doc["output"]
    assert shape(results["relayed"]) == shape(results["plain"])
    assert results["relayed"]["connections"][0]["outcome"] == results["plain"]["connections"][0]["outcome"]


@pytest.mark.privileged
def test_a_refused_fault_fails_the_program_with_the_labs_reason(folder, tmp_path):
    bad = scenario(folder, "bad", before='await fault("delay", { ms: -1 });', expect="never R\n")
    result = run_json(tmp_path, bad)["results"][0]
    assert result["status"] == "error"
    assert "ms must be whole milliseconds" in " ".join(result["mismatches"] + result.get("problems", [])) or \
        "ms must be whole milliseconds" in json.dumps(result)


@pytest.mark.privileged
def test_the_channel_and_relay_stop_and_leave_nothing(tmp_path):
    from verifier.lab.fault import FaultChannel
    from verifier.lab.netns import Namespace

    with Namespace("faulttest") as ns:
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        channel = FaultChannel(ns, work, (os.getuid(), os.getgid()), 5000)
        with channel:
            assert channel.handle(b'{"kind": "delay", "ms": 5}') == {"ok": True}
            assert channel.handle(b'{"kind": "blackhole", "port": 6000}') == {"ok": True}
            assert "error" in channel.handle(b'{"kind": "nope"}')
            threads = {t.name for t in threading.enumerate()}
            assert f"relay-{ns.name}" in threads and f"fault-{ns.name}" in threads
            devices = subprocess.run(ns.command(["ip", "-o", "link"]), capture_output=True, text=True).stdout
            assert TAP_NAME in devices
            ruleset = subprocess.run(ns.command(["nft", "list", "ruleset"]), capture_output=True, text=True).stdout
            assert "tcp dport 6000 drop" in ruleset and "fwd to" in ruleset
            # through the socket, as a program asks
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(channel.path))
                s.sendall(b'{"kind": "clear"}\n')
                assert json.loads(s.makefile().readline()) == {"ok": True}
        threads = {t.name for t in threading.enumerate()}
        assert f"relay-{ns.name}" not in threads and f"fault-{ns.name}" not in threads
        assert not channel.path.exists()
        devices = subprocess.run(ns.command(["ip", "-o", "link"]), capture_output=True, text=True).stdout
        assert TAP_NAME not in devices  # the TAP device went with its file
        assert channel.problems() == []


SLOW_RELAYED = """\
// slow-relayed: a delay fault in place, then runs until it is stopped
// timeout: 60
import { done } from "./probe.mjs";
import { fault } from "./fault.mjs";
await fault("delay", { ms: 10 });
setTimeout(done, 30000);
/* expect
*/
"""


@pytest.mark.privileged
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_relayed_run_leaves_nothing_behind(sig, code, folder):
    program = folder / "slow-relayed.mjs"
    program.write_text(SLOW_RELAYED)
    proc = subprocess.Popen([sys.executable, "-m", "verifier", "run", str(program)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    namespaces: list[str] = []
    while time.monotonic() < deadline and not namespaces:
        names = [p.name for p in Path("/run/netns").glob(f"verifier-{proc.pid}-*")]
        for name in names:  # the relay's TAP exists once the fault is in place
            links = subprocess.run(["ip", "netns", "exec", name, "ip", "-o", "link"], capture_output=True, text=True).stdout
            if TAP_NAME in links:
                namespaces = names
        time.sleep(0.05)
    assert namespaces, "the relayed program never got its fault"
    kids = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert list(Path("/run/netns").glob(f"verifier-{proc.pid}-*")) == []
    assert list(Path(tempfile.gettempdir()).glob(f"verifier-run-{proc.pid}-*")) == []
    time.sleep(0.2)
    assert [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE] == []
