"""Hostile captures against `show`: the fuzz pass of `make test`, the fuzzer's regressions, and the limits.

A short coverage-guided run of fuzz/run.py (FUZZ_TEST_SECONDS, default 30: under a minute with its
start and coverage pass) must end with no finding, after running every seed; a heap overflow and a
signed overflow planted in a copy of the C loop must come out as findings (so a run that finds
nothing has really run under AddressSanitizer and UndefinedBehaviorSanitizer); every input the
fuzzer ever found (tests/data/fuzz) is replayed through the normal build. In CI a missing clang,
sanitizer runtime or atheris fails here (it never skips); elsewhere it skips, saying how to get them.
The limits (issue 13): a snap length cutting TCP headers, giant length fields on a stream, deep
encapsulation stacks, a million tiny connections on a pipe: a warning or one line, bounded memory,
never a crash (docs/fuzzing.md has the numbers; test_cli_show has the endless stream)."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from test_show import check_file
from verifier.wire import show

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "fuzz" / "run.py"
REGRESSIONS = sorted((Path(__file__).parent / "data" / "fuzz").glob("*.pcap*"))
SECONDS = int(os.environ.get("FUZZ_TEST_SECONDS") or 30)


def fuzz(tmp_path: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(RUN), "--corpus", str(tmp_path / "corpus"), "--findings",
                           str(tmp_path / "findings"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode == 3:  # the environment: clang, Python's headers, atheris
        message = f"the fuzz run cannot start: {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the sanitizer build: make test installs clang and atheris)")
        pytest.skip(message)
    return done


def test_a_short_fuzz_run_of_the_sanitizer_build_finds_nothing(tmp_path):
    done = fuzz(tmp_path, "--seconds", str(SECONDS), timeout=SECONDS + 240)
    out = done.stdout
    assert done.returncode == 0, out[-6000:] + done.stderr[-2000:]
    assert "fuzz: the sanitizer build " in out and "-fsanitize=address,undefined" in out
    seeds = int(re.search(r"fuzz: (\d+) seeds", out).group(1))
    summary = re.search(r"fuzz: (\d+) executions .* coverage (\d+) edges .* (\d+) findings?", out)
    assert summary, out[-3000:]
    executions, coverage, findings = map(int, summary.groups())
    assert seeds > 100 and executions >= seeds and coverage > 0 and findings == 0
    assert not any((tmp_path / "findings").iterdir())
    reached = re.search(r"the C loop's coverage by the corpus and seeds: (\d+) of (\d+) edges", out)
    assert reached and 0 < int(reached.group(1)) < int(reached.group(2)), out[-2000:]


PLANTED = {
    "heap-buffer-overflow": "{ char *volatile p = malloc(4); p[4] = 1; free(p); }",
    "runtime error: signed integer overflow": "{ volatile int x = INT_MAX; x = x + (self != NULL); }",
}


@pytest.mark.parametrize("report", PLANTED)
def test_a_memory_error_or_undefined_behaviour_in_the_c_loop_is_a_finding(tmp_path, report):
    # the same source with one bug at the top of Loop_next, built as the fuzzer's build
    sys.path.insert(0, str(ROOT / "fuzz"))
    from build_sanitized import SOURCE, build, target

    source = tmp_path / "_showloop.c"
    text = SOURCE.read_text()
    anchor = "static PyObject *Loop_next(Loop *self) {\n"
    assert text.count(anchor) == 1
    source.write_text(text.replace(anchor, anchor + "    " + PLANTED[report] + "\n"))
    try:
        module = build(quiet=True, source=source, out=tmp_path / "bad" / target().name)
    except SystemExit as e:  # no clang: as the short run
        if os.environ.get("CI"):
            pytest.fail(f"the sanitizer build cannot be made: {e.code}")
        pytest.skip(f"the sanitizer build cannot be made: {e.code}")
    done = fuzz(tmp_path, "--seconds", "30", "--module", str(module), timeout=240)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert report in done.stdout and "fuzz: FINDING" in done.stdout
    assert [p.name[:6] for p in (tmp_path / "findings").iterdir()] == ["crash-"]
    assert "1 finding" in done.stdout and "replay it with full stacks" in done.stdout


def test_zeek_timers_fire_once_each_however_long_the_gap(monkeypatch):
    # the fuzzer's first finding: one frame stamped 1971 among frames of 2026 made wire.zeek fire
    # its self-rescheduling expire timer once per tcp_session_timer interval of the 56-year gap
    from verifier.wire import zeek
    from verifier.wire.show import CaptureReading

    fired = []

    def counted(rule):
        def fire(c, t):
            fired.append(t)
            assert len(fired) < 1000, "a timer fires again and again within one gap"
            return rule(c, t)
        return fire

    for kind, rule in list(zeek.TIMER_RULES.items()):
        monkeypatch.setitem(zeek.TIMER_RULES, kind, counted(rule))
    data = (Path(__file__).parent / "data" / "fuzz" / "zeek-timers-after-a-time-jump.pcap").read_bytes()
    import io

    conns = list(CaptureReading(io.BytesIO(data)).connections())
    states = [zeek.zeek_state(c) for c in conns]
    assert states == ['SF', 'SF', 'OTH', 'SF'] and len(fired) < 10, (len(fired), states)


def test_the_fuzz_regressions_are_there():
    # tests/data/NOTICE names each; tests/test_show.py replays them among all captures too
    notice = (Path(__file__).parent / "data" / "NOTICE").read_text()
    for path in REGRESSIONS:
        assert path.name in notice, f"{path.name} has no provenance line in tests/data/NOTICE"


def test_fuzz_regressions_read_the_same_on_both_paths_and_end_cleanly():
    # one test, not one per file: an empty folder must not be a skip (CI fails on skips)
    for path in REGRESSIONS:
        assert check_file(path) == [], path.name
        done = subprocess.run([sys.executable, "-m", "verifier", "show", "--json", str(path)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode in (0, 2) and "Traceback" not in done.stderr, (path.name, done.stderr)
        assert len(done.stderr.strip().splitlines()) <= 1 + (show._showloop is None), (path.name, done.stderr)


# ------------------------------------------------------------------------------------ limits


def show_cli(*args: str, data: bytes | None = None, limit_mb: int | None = None) -> subprocess.CompletedProcess:
    """`verifier show ARGS` (stdin: data), its address space capped at limit_mb when given."""
    import resource

    def cap():
        if limit_mb:
            resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    return subprocess.run([sys.executable, "-m", "verifier", "show", *args], input=data, capture_output=True,
                          timeout=120, preexec_fn=cap)


def _connection(snap: int | None, options) -> bytes:
    from builders import ether, ipv4_tcp, pcap_file

    records = []
    for i, (side, flags, seq, ack, payload) in enumerate([
            ("C", "S", 1000, 0, b""), ("S", "S.", 5000, 1001, b""), ("C", ".", 1001, 5001, b""),
            ("C", "P.", 1001, 5001, b"x" * 100), ("S", ".", 5001, 1101, b""), ("C", "F.", 1101, 5001, b""),
            ("S", "F.", 5001, 1102, b""), ("C", ".", 1102, 5002, b"")]):
        ports = dict(sport=40000, dport=80) if side == "C" else dict(sport=80, dport=40000)
        frame = ether(ipv4_tcp(flags=flags, seq=seq, ack=ack, payload=payload, options=options if "S" in flags else [],
                               **ports))
        records.append((1_700_000_000, i * 1000, frame[:snap], len(frame)))
    return pcap_file(records, snaplen=snap or 262144)


SYN_OPTIONS = [("mss", 1460), ("sackOK", None), ("TS", (1, 0)), ("nop", None), ("wscale", 7)]


def test_a_snap_length_that_cuts_tcp_headers_is_a_warning_not_silence():
    from test_show import check_bytes

    for snap in (40, 50):  # inside the IP header's TCP payload: no ports, no flags
        data = _connection(snap, SYN_OPTIONS)
        assert check_bytes(data) == []
        done = show_cli("-", data=data)
        assert done.returncode == 0 and done.stderr == b""
        assert done.stdout.decode().splitlines()[-2:] == [
            "8 packets (0 TCP, 8 other), 0 connections",
            "warning: -: skipped 8 frames with the TCP header cut by the snap length (the first: frame 1)"]
    # snap 64: the fixed header is there, the SYNs' options are cut after sackOK: read as tshark reads them
    data = _connection(64, SYN_OPTIONS)
    assert check_bytes(data) == []
    done = show_cli("-v", "-", data=data)
    assert done.returncode == 0 and done.stderr == b""
    assert b"S 0:0(0) win 65535 <mss 1460,sackOK>" in done.stdout and b"outcome fin-client-first" in done.stdout
    # a frame that is short on the wire (orig_len = captured) is malformed, not cut: no such warning
    from builders import ether, ipv4, pcap_file

    short = pcap_file([ether(ipv4(b"\0" * 10, proto=6))])
    assert b"snap length" not in show_cli("-", data=short).stderr


def test_giant_length_fields_on_a_stream_end_in_one_line_or_are_read_within_the_record_bound():
    from builders import epb, idb, pcap_header, pcap_record, pcapng_file, shb
    from verifier.wire import capture

    pkt = _connection(None, [])[24 + 16 : 24 + 16 + 54]
    # a pcap record claiming 4 GiB, and a pcapng block claiming more than MAX_RECORD: one line, exit 2,
    # under a 1 GiB address space (nothing is allocated for the claim)
    for data in (pcap_header() + pcap_record(pkt) + pcap_record(pkt, incl_len=0xFFFFFFF0) + bytes(1000),
                 pcapng_file(shb(), idb(), epb(pkt)) + struct.pack("<II", 6, capture.MAX_RECORD + 4) + bytes(1000)):
        done = show_cli("-", data=data, limit_mb=1024)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert b"Traceback" not in done.stderr and b"MemoryError" not in done.stderr
    # a block of 200 MiB, all there: read (the bound is MAX_RECORD, 256 MiB), then the capture goes on
    body = bytes(200 << 20)
    big = struct.pack("<II", 0x0BADBEEF, len(body) + 12) + body + struct.pack("<I", len(body) + 12)  # unknown type: skipped
    data = pcapng_file(shb(), idb(), epb(pkt)) + big + epb(pkt)
    done = show_cli("--json", "-", data=data, limit_mb=1536)
    assert done.returncode == 0, done.stderr[-500:]
    import json

    (doc,) = json.loads(done.stdout)["files"]
    assert doc["packets"] == 2


def test_deep_encapsulation_stacks_are_skipped_with_a_warning():
    from builders import ipv4_tcp, pcap_file
    from link_frames import encapsulated
    from test_show import check_bytes

    ip = ipv4_tcp(flags="S")
    mpls = encapsulated(ip, [("mpls", *range(16, 16 + 15000))])  # 15,000 labels: a 60 KB label stack
    vlans = encapsulated(ip, [("vlan", 0x8100, 7)] * 15000)
    plain = encapsulated(ip, [("vlan", 0x8100, 7)] * 16)  # 16 is the bound: still read
    data = pcap_file([mpls, vlans, plain])
    assert check_bytes(data) == []
    done = show_cli("-", data=data)
    assert done.returncode == 0 and b"3 packets (1 TCP, 2 other), 1 connection" in done.stdout
    assert b"skipped 2 frames with more than 16 nested link-layer headers" in done.stdout


TINY = r"""
import struct, sys
n = int(sys.argv[1])
# n one-packet connections (a RST each: finished), 1 ms apart, each its own 4-tuple
out = sys.stdout.buffer
out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
frame = bytearray(struct.pack("<IIII", 0, 0, 54, 54) + b"\x02" * 12 + b"\x08\x00"
                  + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, bytes(4), b"\x7f\0\0\x02")
                  + struct.pack("!HHIIBBHHH", 0, 5000, 1, 0, 5 << 4, 0x04, 0, 0, 0))
block = []
for i in range(n):
    struct.pack_into("<II", frame, 0, 1_700_000_000 + i // 1000, i % 1000 * 1000)
    struct.pack_into("!I", frame, 16 + 26, 0x0A000000 + i // 60000)
    struct.pack_into("!H", frame, 16 + 34, 1024 + i % 60000)
    block.append(bytes(frame))
    if len(block) == 10000:
        out.write(b"".join(block))
        block = []
out.write(b"".join(block))
out.flush()
"""


def test_a_million_tiny_connections_on_a_pipe_keep_memory_flat():
    import threading

    import psutil

    n = 1_000_000
    writer = subprocess.Popen([sys.executable, "-c", TINY, str(n)], stdout=subprocess.PIPE)
    proc = subprocess.Popen([sys.executable, "-m", "verifier", "show", "--json", "-"], stdin=writer.stdout,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdout.close()
    rss, seen = {}, [0]

    def read_output():
        for line in proc.stdout:
            if line.startswith(b'  {"client"'):
                seen[0] += 1
                if seen[0] in (n // 10, n * 9 // 10):
                    rss[seen[0]] = psutil.Process(proc.pid).memory_info().rss

    reader = threading.Thread(target=read_output)
    reader.start()
    try:
        writer.wait(timeout=300)
        reader.join(timeout=300)
        proc.wait(timeout=60)
    finally:
        for p in (writer, proc):
            if p.poll() is None:
                p.kill()
    assert proc.returncode == 0, proc.stderr.read()[-500:]
    assert seen[0] == n
    growth = rss[n * 9 // 10] - rss[n // 10]
    print(f"RSS at 10 %: {rss[n // 10] >> 20} MiB, at 90 %: {rss[n * 9 // 10] >> 20} MiB")
    # 800,000 connections printed in between: held, they would take hundreds of MB
    assert growth < 20 << 20, f"RSS grew {growth >> 20} MiB from 10 % to 90 % of the stream"
