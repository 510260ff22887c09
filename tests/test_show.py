"""Tests of verifier.wire.show: the fast paths `show --json` takes give, text for text, what the
plain object path gives (connections(), connection_record) — on every capture in tests/data, a
synthetic capture of random microsecond timestamps, and random captures built to hit the edges
of connection tracking. `bench/check_fast_paths.py` runs the same checks on the big bench files."""

from __future__ import annotations

import io
import json
import random
import struct
from pathlib import Path

import pytest

from verifier.errors import CaptureError
from verifier.wire import capture, decode
from verifier.wire.show import CaptureReading, connection_json, connection_record

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(p for p in DATA.rglob("*") if p.suffix in (".pcap", ".pcapng"))
RANDOM_CAPTURES = 150


def drain(iterable):
    """The items, then the error that ended the iteration (or None)."""
    out = []
    try:
        for item in iterable:
            out.append(item)
    except CaptureError as e:
        return out, (e.message, e.offset)
    return out, None


def check_file(path: Path) -> list[str]:
    return check_bytes(path.read_bytes())


def check_bytes(data: bytes) -> list[str]:
    problems = []
    try:
        slow, slow_error = drain(decode.decode(f) for f in capture.read_frames(io.BytesIO(data)))
        fast, fast_error = drain(decode.segments(capture.read_records(io.BytesIO(data))))
    except CaptureError:
        return []  # not a capture at all: both refuse it at the header (test_capture covers that)
    if (slow, slow_error) != (fast, fast_error):
        problems.append("decode.segments differs from decode()")

    plain = CaptureReading(io.BytesIO(data))
    conns, plain_error = drain(plain.connections())
    texts = [json.dumps(connection_record(c)) for c in conns]
    quick = CaptureReading(io.BytesIO(data))
    fast_texts, fast_error = drain(quick.connections_json())
    if fast_texts != texts:
        n = next((i for i, (a, b) in enumerate(zip(texts, fast_texts)) if a != b), min(len(texts), len(fast_texts)))
        problems.append(f"connections_json differs at connection {n + 1} of {len(texts)} ({len(fast_texts)} fast)")
    if (plain.stats, plain.warnings(), plain_error) != (quick.stats, quick.warnings(), fast_error):
        problems.append(f"stats/warnings/error differ: {plain.stats} {quick.stats} {plain_error} {fast_error}")
    if any(connection_json(c) != t for c, t in zip(conns, texts)):
        problems.append("connection_json differs from json.dumps(connection_record)")
    return problems


def synthetic_capture(n: int = 50_000, seed: int = 1) -> bytes:
    """A classic microsecond pcap of n one-packet connections (Ethernet, IPv4, TCP RST, distinct
    ports) at random times: seconds from 1 to 2**32 - 1, fractions with 0-6 trailing zeros."""
    rng = random.Random(seed)
    times = []
    for _ in range(n):
        sec = rng.choice((rng.randrange(1, 1 << 32), rng.randrange(1, 10), rng.randrange(1_600_000_000, 1_900_000_000)))
        frac = rng.randrange(1_000_000) // 10 ** rng.randrange(7) * 10 ** rng.randrange(7) % 1_000_000
        times.append((sec, frac))
    times.sort()
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, (sec, frac) in enumerate(times):
        tcp = struct.pack("!HHIIBBHHH", 1024 + i % 60000, 5000 + i // 60000, i, 0, 5 << 4, 0x04, 0, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, b"\x7f\0\0\1", b"\x7f\0\0\2")
        frame = b"\0" * 12 + b"\x08\x00" + ip + tcp
        out.append(struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def random_capture(rng: random.Random) -> bytes:
    """A capture of random TCP traffic on a few 4-tuples: every flag mix, seq/ack values that
    repeat (duplicates, retransmissions, SYNs after data, reuse of finished 4-tuples), options,
    time jumps past the linger and backwards, and packets the fast path hands to decode()."""
    from builders import PCAP_MAGIC_NS, PCAP_MAGIC_US, ether, ipv4, ipv4_tcp, ipv6_tcp, pcap_file

    ends = [("127.0.0.1", 40000 + i, "127.0.0.1", 5000) for i in range(3)] + [("::1", 41000, "::1", 5000)]
    flag_pool = ["S", "S.", ".", ".", ".", "P.", "P.", "F.", "FP.", "R", "R.", "SF", "", "U."]
    opt_pool = [b"", b"", bytes.fromhex("0101080a0000000100000002"), bytes.fromhex("0101080a0000000200000001"),
                bytes.fromhex("020440000402080a00000001000000000103030701"), bytes.fromhex("01010402"),
                bytes.fromhex("00000000")]
    magic = rng.choice((PCAP_MAGIC_US, PCAP_MAGIC_NS))
    unit = 1_000_000 if magic == PCAP_MAGIC_US else 1_000_000_000
    t = 1_700_000_000 * unit
    records = []
    last = None
    for _ in range(rng.randrange(20, 400)):
        roll = rng.random()
        if last is not None and roll < 0.08:  # an identical copy within the duplicate window, or a bit later
            t += rng.choice((1, 3, unit // 2000, unit // 500))
            records.append((t // unit, t % unit, last))
            continue
        t += rng.choice((unit // 100000, unit // 10000, unit // 1000, unit // 10, 3 * unit, 2 * unit - 1, 2 * unit,
                         2 * unit + 1, 19 * unit // 10))
        if rng.random() < 0.02:
            t -= unit // 1000  # time goes backwards a little
        src, sport, dst, dport = rng.choice(ends)
        if rng.random() < 0.5:
            src, sport, dst, dport = dst, dport, src, sport
        fields = dict(sport=sport, dport=dport, seq=rng.choice((1000, 1001, 1005, 5000, 5001, (1 << 32) - 1, 0)),
                      ack=rng.choice((0, 1001, 1002, 5001, 5002, 1006)), flags=rng.choice(flag_pool),
                      win=rng.choice((65535, 512)), options=rng.choice(opt_pool),
                      payload=b"x" * rng.choice((0, 0, 0, 1, 5)))
        if ":" in src:
            packet = ether(ipv6_tcp(src=src, dst=dst, **fields))
        elif roll < 0.12:
            packet = ether(ipv4_tcp(src=src, dst=dst, ip_id=rng.randrange(3), total_len=0, **fields))  # TSO
        elif roll < 0.15:
            from builders import tcp

            packet = ether(ipv4(tcp(**fields), src=src, dst=dst, ip_options=b"\x01\x01\x01\x00"))
        elif roll < 0.17:
            packet = ether(ipv4(b"\0" * 8, src=src, dst=dst, proto=17))  # UDP: not TCP
        elif roll < 0.19:
            packet = ether(ipv4_tcp(src=src, dst=dst, **fields), vlans=[7])
        else:
            packet = ether(ipv4_tcp(src=src, dst=dst, ip_id=rng.randrange(3), **fields))
        if rng.random() < 0.03:
            packet = packet[: rng.randrange(40, len(packet) + 1)]  # cut by the snap length
        last = packet
        records.append((t // unit, t % unit, packet))
    return pcap_file(records, magic=magic)




@pytest.mark.parametrize("path", CAPTURES, ids=[str(p.relative_to(DATA)) for p in CAPTURES])
def test_fast_paths_equal_the_plain_path_on_real_captures(path):
    assert check_file(path) == []


def test_fast_paths_on_random_microsecond_timestamps():
    assert check_bytes(synthetic_capture(20_000)) == []


@pytest.mark.parametrize("seed", range(RANDOM_CAPTURES // 50))
def test_fast_paths_on_random_tracking_edge_cases(seed):
    rng = random.Random(seed)
    for n in range(50):
        data = random_capture(rng)
        assert check_bytes(data) == [], f"random capture {n} of seed {seed}"
