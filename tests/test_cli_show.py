"""`verifier show`: text and JSON on real captures, one clean line and exit 2 for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
FOREIGN = DATA / "foreign"
MALFORMED = sorted((DATA / "malformed").iterdir())


def verifier(*args):
    return subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True, text=True, timeout=60)


def test_macos_four_packet_close_is_separate():
    out = verifier("show", "--json", str(FOREIGN / "macos-lo0-ipv6-fin.pcap"))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (f,) = doc["files"]
    assert f["packets"] == 12 and f["warnings"] == []
    (c,) = f["connections"]
    assert (c["client"], c["server"]) == ("[::1]:51122", "[::1]:6379")
    assert (c["outcome"], c["fin_ack"], c["zeek_state"]) == ("fin-client-first", "separate", "SF")
    tail = [(s["from"], s["flags"], s["seq"], s["ack"], s["len"]) for s in c["segments"][-4:]]
    assert tail == [("client", "F.", 19, 22, 0), ("server", ".", 22, 20, 0), ("server", "F.", 22, 20, 0), ("client", ".", 20, 23, 0)]
    assert set(c["segments"][0]) >= {"t", "from", "flags", "seq", "ack", "len"}
    assert c["segments"][0]["t"] == pytest.approx(1.0e9, rel=1) and isinstance(c["segments"][0]["t"], float)


def test_linux_three_packet_close_is_piggybacked():
    doc = json.loads(verifier("show", "--json", str(FOREIGN / "linux-sll-lo-fin.pcap")).stdout)
    (c,) = doc["files"][0]["connections"]
    assert (c["outcome"], c["fin_ack"], c["zeek_state"]) == ("fin-client-first", "piggybacked", "SF")
    assert [s["flags"] for s in c["segments"][-3:]] == ["F.", "F.", "."]


def test_macos_refused_then_ipv4_reset():
    doc = json.loads(verifier("show", "--json", str(FOREIGN / "macos-lo0-v6-refused-then-v4-rst.pcap")).stdout)
    a, b = doc["files"][0]["connections"]
    assert (a["server"], a["outcome"], a["zeek_state"]) == ("[::1]:6379", "refused", "REJ")
    assert (b["server"], b["outcome"], b["zeek_state"]) == ("127.0.0.1:6379", "rst-server", "RSTR")


def test_text_output_has_a_header_and_transcript_per_connection():
    out = verifier("show", str(FOREIGN / "macos-lo0-ipv6-fin.pcap"))
    lines = out.stdout.splitlines()
    assert lines[1] == "connection 1: [::1]:51122 > [::1]:6379  outcome fin-client-first  fin_ack separate  zeek SF"
    assert lines[2] == "+0.000000 C > S  S 0:0(0)"
    assert "+0.995900 C > S  F. 19:19(0) ack 22" in lines


def test_several_files_in_one_document():
    out = verifier("show", "--json", str(FOREIGN / "macos-lo0-ipv6-fin.pcap"), str(FOREIGN / "linux-sll-lo-fin.pcap"))
    assert [f["file"].rsplit("/", 1)[1] for f in json.loads(out.stdout)["files"]] == ["macos-lo0-ipv6-fin.pcap", "linux-sll-lo-fin.pcap"]


@pytest.mark.parametrize("path", MALFORMED, ids=[p.name for p in MALFORMED])
def test_malformed_files_end_cleanly(path):
    out = verifier("show", "--json", str(path))
    assert "Traceback" not in out.stderr
    if out.returncode == 0:
        json.loads(out.stdout)
    else:
        assert out.returncode == 2
        (line,) = out.stderr.splitlines()
        assert line.startswith(f"verifier: {path}: ")
        if out.stdout:  # an error after valid records: what was read, as a complete document
            (f,) = json.loads(out.stdout)["files"]
            assert any(w.startswith("stopped reading") for w in f["warnings"])


def test_truncated_file_shows_what_was_valid_with_a_warning():
    out = verifier("show", "--json", str(DATA / "malformed" / "truncated-mid-record.pcap"))
    f = json.loads(out.stdout)["files"][0]
    assert out.returncode == 0 and f["packets"] == 9
    assert any("truncated" in w and "963" in w for w in f["warnings"])
    text = verifier("show", str(DATA / "malformed" / "truncated-mid-record.pcap"))
    assert "warning:" in text.stdout


@pytest.mark.parametrize("name,expected", [
    ("empty-file.pcap", "empty file"),
    ("text-file.pcap", "not a pcap or pcapng file"),
    ("the-tcpdump-group_libpcap_tests_pcap-invalid-version-1.pcap", "unsupported pcap version"),
])
def test_bad_files_name_the_file_and_the_problem(name, expected):
    out = verifier("show", str(DATA / "malformed" / name))
    assert out.returncode == 2 and expected in out.stderr and len(out.stderr.splitlines()) == 1


def test_missing_file_and_directory(tmp_path):
    out = verifier("show", str(tmp_path / "nope.pcap"))
    assert (out.returncode, out.stderr.strip()) == (2, f"verifier: {tmp_path / 'nope.pcap'}: no such file")
    out = verifier("show", str(tmp_path))
    assert out.returncode == 2 and "is a directory" in out.stderr


def test_bad_usage_is_exit_2_in_one_line():
    out = verifier("show")
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
    out = verifier("frobnicate")
    assert out.returncode == 2


def test_error_in_a_later_file_header_prints_nothing(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"")
    out = verifier("show", "--json", str(FOREIGN / "linux-sll-lo-fin.pcap"), str(bad))
    assert out.returncode == 2 and out.stdout == ""


# --------------------------------------------------------------------- standard input, pipes, FIFOs

import os
import select
import signal
import threading
import time

import psutil

from builders import ether, ipv4_tcp, pcap_header, pcap_record

STREAMED = [
    *sorted(FOREIGN.iterdir()),
    *sorted((DATA / "pcapng-variants" / "be").iterdir())[:3],
    *sorted((DATA / "pcapng-variants" / "le").iterdir())[:3],
    *(p for p in MALFORMED if p.name != "empty-file.pcap"),
]


def through_stdin(path: Path, *args) -> subprocess.CompletedProcess:
    """`cat path | verifier show ARGS -`: the bytes come through a pipe."""
    return subprocess.run([sys.executable, "-m", "verifier", "show", *args, "-"], input=path.read_bytes(),
                          capture_output=True, timeout=60)


def named(out: bytes, name: str, *, stream: bool) -> str:
    """The output with the input's name replaced by NAME (the one thing that differs)."""
    text = out.decode()
    if not stream:
        return text.replace(name, "NAME")
    text = text.replace("- (standard input)", "NAME")
    return text.replace("== -\n", "== NAME\n").replace("warning: -: ", "warning: NAME: ").replace('"file": "-"', '"file": "NAME"')


@pytest.mark.parametrize("fmt", [(), ("--json",)], ids=["text", "json"])
@pytest.mark.parametrize("path", STREAMED, ids=[p.name for p in STREAMED])
def test_standard_input_shows_what_the_file_shows(path, fmt):
    from_file = subprocess.run([sys.executable, "-m", "verifier", "show", *fmt, str(path)], capture_output=True, timeout=60)
    piped = through_stdin(path, *fmt)
    assert piped.returncode == from_file.returncode
    assert named(piped.stdout, "-", stream=True) == named(from_file.stdout, str(path), stream=False)
    assert named(piped.stderr, "-", stream=True) == named(from_file.stderr, str(path), stream=False)


def test_a_stream_with_no_capture_is_one_line_naming_standard_input():
    out = subprocess.run([sys.executable, "-m", "verifier", "show", "-"], input=b"GET / HTTP/1.1\r\n\r\n", capture_output=True)
    assert (out.returncode, out.stdout) == (2, b"")
    assert out.stderr.decode().splitlines() == [
        "verifier: - (standard input): not a pcap or pcapng file (unknown magic 0x47455420) (at byte offset 0)"]
    out = subprocess.run([sys.executable, "-m", "verifier", "show", "-"], input=b"", capture_output=True)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1 and b"- (standard input): empty" in out.stderr
    out = subprocess.run([sys.executable, "-m", "verifier", "show", "-", "-"], input=b"", capture_output=True)
    assert out.returncode == 2 and b"named more than once" in out.stderr and len(out.stderr.splitlines()) == 1


def test_a_stream_cut_mid_record_shows_what_was_read_and_names_the_offset():
    whole = (FOREIGN / "linux-sll-lo-fin.pcap").read_bytes()
    for cut in (30, 24 + 16 + 5, len(whole) - 3):
        out = subprocess.run([sys.executable, "-m", "verifier", "show", "--json", "-"], input=whole[:cut],
                             capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        (f,) = json.loads(out.stdout)["files"]
        (warning,) = f["warnings"]
        assert warning.startswith("truncated: last record cut short at byte offset ")
        assert int(warning.rsplit(" ", 1)[1]) <= cut


def test_dev_stdin_and_a_pipe_read_once(tmp_path):
    path = FOREIGN / "macos-lo0-ipv6-fin.pcap"
    expected = verifier("show", str(path)).stdout.replace(str(path), "/dev/stdin")
    out = subprocess.run([sys.executable, "-m", "verifier", "show", "/dev/stdin"], input=path.read_bytes(), capture_output=True)
    assert (out.returncode, out.stdout.decode()) == (0, expected)


def connection(k: int, t: float, sport: int = 40000) -> list[bytes]:
    """A whole connection (handshake, FIN from the client, FIN back, last ACK): six pcap records from t on."""
    c, s = dict(src="10.0.0.2", dst="10.0.0.1", sport=sport, dport=80), dict(src="10.0.0.1", dst="10.0.0.2", sport=80, dport=sport)
    packets = [ipv4_tcp(**c, seq=1000, flags="S"), ipv4_tcp(**s, seq=5000, ack=1001, flags="S."),
               ipv4_tcp(**c, seq=1001, ack=5001, flags="."), ipv4_tcp(**c, seq=1001, ack=5001, flags="F."),
               ipv4_tcp(**s, seq=5001, ack=1002, flags="F."), ipv4_tcp(**c, seq=1002, ack=5002, flags=".")]
    return [record(ether(p), t + i * 0.0001) for i, p in enumerate(packets)]


def record(data: bytes, t: float) -> bytes:
    us = round(t * 1e6)
    return pcap_record(data, us // 1_000_000, us % 1_000_000)


def lines_until(stream, wanted: str, timeout: float) -> list[str]:
    """Lines read from `stream` (a pipe) until one starts with `wanted` (the last one may lack its
    newline: a JSON record's comes with the next one); AssertionError after `timeout` s."""
    seen, rest, end = [], b"", time.monotonic() + timeout
    fd = stream.fileno()
    while True:
        left = end - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], f"no {wanted!r} within {timeout} s: {seen}"
        data = os.read(fd, 65536)
        assert data, f"output ended before {wanted!r}: {seen}"
        rest += data
        *done, rest = rest.split(b"\n")
        seen += [d.decode() for d in done]
        if any(line.startswith(wanted) for line in seen + [rest.decode()]):
            return seen + [rest.decode()]


@pytest.mark.parametrize("via", ["fifo", "stdin"])
def test_a_finished_connection_is_printed_while_the_capture_is_still_being_written(tmp_path, via):
    fifo = tmp_path / "live.pcap"
    argv = [sys.executable, "-m", "verifier", "show", "-" if via == "stdin" else str(fifo)]
    if via == "fifo":
        os.mkfifo(fifo)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        writer = open(fifo, "wb", buffering=0)  # the reader has it open: this does not block
    else:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        writer = proc.stdin
    try:
        # the header, one whole connection, then (30 s later in capture time: past the linger) a SYN
        writer.write(pcap_header())
        writer.write(b"".join(connection(1, 1000.0)))
        writer.flush()
        time.sleep(0.3)  # the reader waits for input here, the first connection within its linger
        writer.write(record(ether(ipv4_tcp(src="10.0.0.3", dst="10.0.0.1", sport=40001, dport=80, flags="S")), 1030.0))
        writer.flush()
        seen = lines_until(proc.stdout, "connection 1:", timeout=20)  # while the writer is still open
        assert seen[0] == f"== {argv[-1]}" and proc.poll() is None
        assert "connection 2:" not in "\n".join(seen)  # the SYN's connection is not finished: not yet
    finally:
        writer.close()
    rest, err = proc.stdout.read(), proc.stderr.read()
    assert proc.wait(timeout=20) == 0, err
    lines = seen + rest.decode().splitlines()
    assert lines[-1] == "7 packets (7 TCP, 0 other), 2 connections"
    assert any(line.startswith("connection 2: 10.0.0.3:40001 > 10.0.0.1:80  outcome unanswered") for line in lines)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_ctrl_c_shows_what_was_read_closes_the_document_and_exits_130(fmt):
    argv = [sys.executable, "-m", "verifier", "show", *(["--json"] if fmt == "json" else []), "-"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(pcap_header() + b"".join(connection(1, 1000.0)) + b"".join(connection(2, 1030.0, sport=40001)))
        proc.stdin.write(record(ether(ipv4_tcp(src="10.0.0.3", dst="10.0.0.1", sport=40002, dport=80, flags="S")), 1031.0)[:30])
        proc.stdin.flush()
        seen = lines_until(proc.stdout, '  {"client"' if fmt == "json" else "connection 1:", timeout=20)
        proc.send_signal(signal.SIGINT)  # the pipe stays open: only Ctrl-C ends this
        proc.wait(timeout=20)  # (the output is small: the pipes do not fill)
        out, err = "\n".join(seen).encode() + proc.stdout.read(), proc.stderr.read()
    finally:
        proc.stdin.close()
        proc.kill()
    assert proc.returncode == 130
    assert err.decode().splitlines() == ["verifier: interrupted; everything it started was stopped and removed"]
    if fmt == "json":
        (f,) = json.loads(out)["files"]
        assert [c["index"] for c in f["connections"]][-1] == 2 and f["packets"] == 12
        assert [w.split(" after")[0] for w in f["warnings"]] == ["interrupted (Ctrl-C)"]
    else:
        text = out.decode()
        assert "connection 2: 10.0.0.2:40001 > 10.0.0.1:80  outcome fin-client-first" in text
        assert "12 packets (12 TCP, 0 other), 2 connections\nwarning: -: interrupted (Ctrl-C) after byte offset " in text


WRITER = r"""
import struct, sys
n = int(sys.argv[1])
sys.stdout.buffer.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
# one connection: SYN, SYN-ACK, ACK, FIN, FIN (acks it), ACK; client 10.b.b.b:port > 10.0.0.1:80
eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
def pkt(client_to_server, seq, ack, flags):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0x4000, 64, 6, 0, bytes(4), bytes(4))
    tcp = struct.pack("!HHIIBBHHH", 0, 0, seq, ack, 5 << 4, flags, 65535, 0, 0)
    return struct.pack("<IIII", 0, 0, 54, 54) + eth + ip + tcp
conn = [(1, 1000, 0, 0x02), (0, 5000, 1001, 0x12), (1, 1001, 5001, 0x10),
        (1, 1001, 5001, 0x11), (0, 5001, 1002, 0x11), (1, 1002, 5002, 0x10)]
per_block = 1000
block = bytearray(b"".join(pkt(*p[:1], *p[1:]) for _ in range(per_block) for p in conn))
u32, ports, addr = struct.Struct("<II"), struct.Struct("!HH"), struct.Struct("!4s4s")
server = bytes((10, 0, 0, 1))
written = b = 0
while written < n:
    client = bytes((10, (b >> 16) & 255, (b >> 8) & 255, b & 255))
    for j in range(per_block):
        for i, (up, *_) in enumerate(conn):
            off = (j * 6 + i) * 70
            u32.pack_into(block, off, 1_700_000_000 + b, j * 1000 + i * 10)
            addr.pack_into(block, off + 16 + 14 + 12, *((client, server) if up else (server, client)))
            ports.pack_into(block, off + 16 + 34, *((20000 + j, 80) if up else (80, 20000 + j)))
    sys.stdout.buffer.write(block)
    written += per_block * 6
    b += 1
sys.stdout.buffer.flush()
sys.stderr.write(f"{written}\n"); sys.stderr.flush()
sys.stdin.read()  # keep the stream open until the test has measured
"""


def test_memory_stays_flat_on_a_long_stream():
    packets = 2_000_000
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(packets)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc = subprocess.Popen([sys.executable, "-m", "verifier", "show", "-"], stdin=writer.stdout,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdout.close()
    rss = {}
    counted = [0]
    total = -(-packets // 6000) * 1000  # connections: the writer writes blocks of 1000

    def read_output():
        for line in proc.stdout:
            if line.startswith(b"connection "):
                counted[0] += 1
                if counted[0] == total // 10:
                    rss["start"] = psutil.Process(proc.pid).memory_info().rss
                if counted[0] == total * 9 // 10:
                    rss["end"] = psutil.Process(proc.pid).memory_info().rss
            else:
                rss.setdefault("tail", []).append(line)

    reader = threading.Thread(target=read_output)
    reader.start()
    try:
        written = int(writer.stderr.readline())  # the writer has written everything and keeps the pipe open
        assert written >= packets
    finally:
        writer.stdin.close()
        writer.wait(timeout=120)
        reader.join(timeout=300)
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()
    assert counted[0] == written // 6  # every connection printed: connections that were printed are dropped, not lost
    growth = rss["end"] - rss["start"]
    # holding the ~270k connections printed in between would take hundreds of MB
    assert growth < 20 << 20, f"RSS grew {growth >> 20} MiB from 10 % to 90 % of the stream"


def test_without_the_compiled_loop_show_says_once_it_takes_the_slow_path(monkeypatch, capsys):
    from verifier.cli import main
    from verifier.wire import show

    capture = Path(__file__).parent / "data" / "analysis" / "keepalive.pcap"
    assert main(["show", "--json", str(capture)]) == 0
    fast = capsys.readouterr()
    monkeypatch.setattr(show, "_showloop", None)
    assert main(["show", "--json", str(capture), str(capture)]) == 0
    slow = capsys.readouterr()
    assert slow.out == fast.out.replace("]}\n", "") + slow.out[len(fast.out.replace("]}\n", "")):]  # same document start
    assert slow.err.count("slow path") == 1 and "slow path" not in fast.err
    doc = __import__("json").loads(slow.out)
    labels = [s["analysis"] for s in doc["files"][0]["connections"][0]["segments"]]
    assert labels[5:7] == [["keep-alive"], ["keep-alive-ack"]]


@pytest.mark.parametrize("fmt", [(), ("--json",)], ids=["text", "json"])
def test_when_traffic_stops_a_finished_connection_is_printed_after_the_linger_in_wall_clock_time(fmt):
    from verifier.wire.connections import LINGER

    proc = subprocess.Popen([sys.executable, "-m", "verifier", "show", *fmt, "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(pcap_header() + b"".join(connection(1, 1000.0)))  # then nothing: no later packet
        proc.stdin.flush()
        started = time.monotonic()
        seen = lines_until(proc.stdout, '  {"client"' if fmt else "connection 1:", timeout=LINGER + 20)
        assert time.monotonic() - started >= LINGER * 0.9  # not before the linger has passed
        assert proc.poll() is None
    finally:
        proc.stdin.close()
    rest = proc.stdout.read().decode()
    assert proc.wait(timeout=20) == 0
    out = "\n".join(seen) + rest
    if fmt:
        assert [c["index"] for c in json.loads(out)["files"][0]["connections"]] == [1]
    else:
        assert out.count("connection 1:") == 1 and out.endswith("6 packets (6 TCP, 0 other), 1 connection\n")
