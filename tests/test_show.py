"""Tests of verifier.wire.show: the compiled loop `show` takes gives, text for text, what the plain
object path gives (connections(), connection_record, connection_text) — on every capture in
tests/data, a synthetic capture of random microsecond timestamps, random captures built to hit
the edges of connection tracking and TCP analysis, and mutated real captures.
`bench/check_fast_paths.py` runs the same checks on the big bench files."""

from __future__ import annotations

import io
import os
import json
import random
import struct
from pathlib import Path

import pytest

from verifier.errors import CaptureError
from verifier.wire import capture, decode
from verifier.wire import show
from verifier.wire.connections import LINGER
from verifier.wire.show import CaptureReading, connection_json, connection_record, connection_text

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(p for p in DATA.rglob("*") if p.suffix in (".pcap", ".pcapng"))
RANDOM_CAPTURES = 150
# the compiled loop's texts (connections_json and connection_texts take it when it is built: JSON,
# transcript, -v transcript), each with what it must equal
LOOPS = ([
    ("compiled", lambda reading, linger: show._compiled_texts(reading, linger, show._Hooks), "json"),
    ("compiled transcript", lambda reading, linger: show._compiled_texts(reading, linger, show._TranscriptHooks), "text"),
    ("compiled -v transcript", lambda reading, linger: show._compiled_texts(reading, linger, show._VerboseTranscriptHooks),
     "verbose"),
] if show._showloop is not None else [])


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
    expected = {"json": [json.dumps(connection_record(c)) for c in conns], "text": [connection_text(c) for c in conns],
                "verbose": [connection_text(c, verbose=True) for c in conns]}
    for name, loop, kind in LOOPS:
        texts = expected[kind]
        quick = CaptureReading(io.BytesIO(data))
        fast_texts, fast_error = drain(loop(quick, LINGER))
        if fast_texts != texts:
            n = next((i for i, (a, b) in enumerate(zip(texts, fast_texts)) if a != b), min(len(texts), len(fast_texts)))
            problems.append(f"{name} loop differs at connection {n + 1} of {len(texts)} ({len(fast_texts)} fast)")
        if (plain.stats, plain.warnings(), plain_error) != (quick.stats, quick.warnings(), fast_error):
            problems.append(f"{name} loop: stats/warnings/error differ: {plain.stats} {quick.stats} {plain_error} {fast_error}")
    if any(connection_json(c) != t for c, t in zip(conns, expected["json"])):
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
    time jumps past the linger and backwards, and packets the fast path hands to decode().
    Copies of one of the last five packets, exact or with one field changed (ip_id, window,
    flags, length, options), come within the duplicate window, exactly at it or just after; the
    capture starts at 0 s sometimes, where a 1 ms difference is exactly DUPLICATE_WINDOW."""
    from builders import PCAP_MAGIC_NS, PCAP_MAGIC_US, ether, ipv4, ipv4_tcp, ipv6_tcp, null, pcap_file, sll, sll2, tcp
    from link_frames import encapsulated

    stacks = [[("vlan", 0x8100, 7)], [("vlan", 0x88A8, 1), ("vlan", 0x8100, 2)], [("mpls", 16, 17)], [("pppoe", 3)],
              [("pbb", 4), ("vlan", 0x8100, 5)], [("vntag", 6)], [("vlan", 0x8100, 8)] * 17]  # the last: too deep
    # the link layer, one per capture: (linktype, wrap(ip, vlan)); the compiled loop's fast path
    # takes each of them (encapsulated Ethernet and odd families or protocols go to decode);
    # Ethernet of zero addresses is Linux lo's, where copies may be the doubling
    linktype, wrap = rng.choice([
        (1, lambda ip, vlan: ether(ip, vlans=[7] if vlan else [])),
        (1, lambda ip, vlan: encapsulated(ip, rng.choice(stacks) if vlan else [], macs=bytes(12))),
        (0, lambda ip, vlan: null(ip, family=rng.choice((None, None, 24, 28, 2 << 24, 99)))),
        (0, lambda ip, vlan: null(ip, byteorder="big")),  # written by a big-endian host: decode reads it too
        (108, lambda ip, vlan: null(ip, byteorder="big")),
        # the link-layer address's last bytes sit where Ethernet's type would be: 0800 or 86dd there
        # must not be read as the protocol
        (113, lambda ip, vlan: sll(ip, protocol=None if not vlan else 0x8100)[:12]
         + rng.choice((b"\0\0", b"\x08\x00", b"\x86\xdd")) + sll(ip, protocol=None if not vlan else 0x8100)[14:]),
        (276, lambda ip, vlan: sll2(ip)),
        (101, lambda ip, vlan: ip),
        (228, lambda ip, vlan: ip),
        (229, lambda ip, vlan: ip),
    ])

    # (ports Zeek takes for servers, 80 and 443, make its verdicts read the ports: see zeek.port_class)
    ends = ([("127.0.0.1", 40000 + i, "127.0.0.1", 5000) for i in range(3)] + [("::1", 41000, "::1", 5000)]
            + [("127.0.0.1", 80, "127.0.0.1", 443), ("127.0.0.1", 443, "127.0.0.1", 40005)])
    flag_pool = ["S", "S.", ".", ".", ".", "P.", "P.", "F.", "FP.", "R", "R.", "SF", "", "U."]
    opt_pool = [b"", b"", bytes.fromhex("0101080a0000000100000002"), bytes.fromhex("0101080a0000000200000001"),
                bytes.fromhex("020440000402080a00000001000000000103030701"), bytes.fromhex("01010402"),
                bytes.fromhex("00000000"), bytes.fromhex("00000001")]  # the last two parse the same (EOL, then junk)
    magic = rng.choice((PCAP_MAGIC_US, PCAP_MAGIC_NS))
    doubled = rng.random() < 0.4  # each packet followed by its copy (mostly), as a sniffer on lo writes them
    unit = 1_000_000 if magic == PCAP_MAGIC_US else 1_000_000_000
    t = rng.choice((1_700_000_000, 0, 1)) * unit
    records = []
    made = []  # (how, src, dst, fields) of the packets so far

    def build(how, src, dst, fields):
        if how == "v6":
            return wrap(ipv6_tcp(src=src, dst=dst, **fields), False)
        if how == "tso":
            return wrap(ipv4_tcp(src=src, dst=dst, total_len=0, **fields), False)
        if how == "ipopt":
            fields = {k: v for k, v in fields.items() if k != "ip_id"}
            return wrap(ipv4(tcp(**fields), src=src, dst=dst, ip_options=b"\x01\x01\x01\x00"), False)
        return wrap(ipv4_tcp(src=src, dst=dst, **fields), how == "vlan")

    for _ in range(rng.randrange(20, 400)):
        roll = rng.random()
        if made and roll < 0.12:  # a copy of a recent packet, exact or with one field changed
            how, src, dst, fields = made[-rng.randrange(1, min(6, len(made)) + 1)]
            fields = dict(fields)
            if roll < 0.05:
                change = rng.choice(("ip_id", "win", "flags", "payload", "options") if "ip_id" in fields
                                    else ("win", "flags", "payload", "options"))
                fields[change] = {"ip_id": fields.get("ip_id", 0) + 1, "win": fields["win"] ^ 1,
                                  "flags": rng.choice(flag_pool), "payload": fields["payload"] + b"y",
                                  "options": rng.choice(opt_pool)}[change]
            t += rng.choice((1, 3, unit // 2000, unit // 1000, unit // 1000 + 1, unit // 500))
            records.append((t // unit, t % unit, build(how, src, dst, fields)))
            continue
        t += rng.choice((unit // 100000, unit // 10000, unit // 1000, unit // 10, 3 * unit, 2 * unit - 1, 2 * unit,
                         2 * unit + 1, 19 * unit // 10, unit // 2))
        if rng.random() < 0.02 and t >= unit:
            t -= unit // 1000  # time goes backwards a little
        src, sport, dst, dport = rng.choice(ends)
        if rng.random() < 0.5:
            src, sport, dst, dport = dst, dport, src, sport
        fields = dict(sport=sport, dport=dport, seq=rng.choice((1000, 1001, 1005, 5000, 5001, (1 << 32) - 1, 0)),
                      ack=rng.choice((0, 1001, 1002, 5001, 5002, 1006)), flags=rng.choice(flag_pool),
                      win=rng.choice((65535, 512, 0)), options=rng.choice(opt_pool),
                      payload=b"x" * rng.choice((0, 0, 0, 1, 5)), ip_id=rng.randrange(3))
        if ":" in src:
            how = "v6"
            del fields["ip_id"]
        elif roll < 0.16:
            how = "tso"
        elif roll < 0.19:
            how = "ipopt"
        elif roll < 0.21:
            records.append((t // unit, t % unit, wrap(ipv4(b"\0" * 8, src=src, dst=dst, proto=17), False)))  # UDP
            continue
        elif roll < 0.23:
            how = "vlan"
        else:
            how = "plain"
        packet = build(how, src, dst, fields)
        if rng.random() < 0.03:
            packet = packet[: rng.randrange(40, len(packet) + 1)]  # cut by the snap length
        else:
            made.append((how, src, dst, fields))
        records.append((t // unit, t % unit, packet))
        if doubled and rng.random() < 0.93:
            copy_t = t + rng.choice((1, 3, 10))
            records.append((copy_t // unit, copy_t % unit, packet))
    return pcap_file(records, linktype=linktype, magic=magic)


def test_the_compiled_loop_is_built_where_it_must_be():
    # an install without a C compiler falls back to the object path; CI must test the compiled loop
    if os.environ.get("CI"):
        assert show._showloop is not None, "verifier/wire/_showloop.c was not built (gcc, Python's headers?)"
    reading = CaptureReading(io.BytesIO(b""))
    assert (reading.connections_json().gi_code is show._compiled_texts.__code__) == (show._showloop is not None)
    assert (reading.connection_texts().gi_code is show._compiled_texts.__code__) == (show._showloop is not None)
    assert (reading.connection_texts(verbose=True).gi_code is show._compiled_texts.__code__) == (show._showloop is not None)


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


def _packets(*specs, proof: int = 0, loopback: bool = True) -> bytes:
    """A microsecond pcap of client (40000) <-> server (5000) segments: (us, side, flags, seq, ack),
    on Linux lo's Ethernet (zero addresses) unless not `loopback`; before them, `proof` RSTs of
    another connection each written twice (as a sniffer that doubles lo writes them)."""
    from builders import ether, ipv4_tcp, pcap_file

    macs = bytes(12) if loopback else b"\x02" * 12
    records = []
    for i in range(proof):
        frame = macs + ether(ipv4_tcp(flags="R", seq=i, sport=39999, dport=5000))[12:]
        records += [(0, 0, frame), (0, 0, frame)]
    for us, side, flags, seq, ack in specs:
        ports = dict(sport=40000, dport=5000) if side == "C" else dict(sport=5000, dport=40000)
        frame = macs + ether(ipv4_tcp(flags=flags, seq=seq, ack=ack, **ports))[12:]
        records.append((us // 1_000_000, us % 1_000_000, frame))
    return pcap_file(records)


def test_a_copy_exactly_one_duplicate_window_later_is_a_duplicate():
    # at 0 s, 0.001 - 0.0 is DUPLICATE_WINDOW exactly (the float); 1 us later it is not a copy
    data = _packets((0, "C", "S", 1000, 0), (1000, "C", "S", 1000, 0), (2001, "C", "S", 1000, 0))
    assert check_bytes(data) == []
    reading = CaptureReading(io.BytesIO(data))
    assert [len(c.segments) for c in reading.connections()] == [2]


def test_a_copy_of_the_fourth_segment_back_is_a_duplicate_the_fifth_is_not():
    base = [(0, "C", "S", 1000, 0), (100, "S", "S.", 5000, 1001), (200, "C", ".", 1001, 5001),
            (300, "C", "P.", 1001, 5001), (400, "S", ".", 5001, 1006)]
    fourth = _packets(*base[1:], (500, "S", "S.", 5000, 1001), proof=12)
    fifth = _packets(*base, (500, "C", "S", 1000, 0), proof=12)
    assert check_bytes(fourth) == [] and check_bytes(fifth) == []
    assert [len(c.segments) for c in CaptureReading(io.BytesIO(fourth)).connections()] == [12, 4]
    assert [len(c.segments) for c in CaptureReading(io.BytesIO(fifth)).connections()] == [12, 6]


def test_copies_are_removed_only_while_the_doubling_is_proven():
    # Doubling's bound, the same in every path: after 6 pairs, the SYN and the SYN-ACK unpaired,
    # the copy of the ACK makes n = 16, k = 7 (8 * 2 <= 16): removed; after 5 pairs
    # (n = 14, k = 6: 8 * 2 > 14) it is kept
    tail = [(0, "C", "S", 1000, 0), (100, "S", "S.", 5000, 1001), (200, "C", ".", 1001, 5001),
            (300, "C", ".", 1001, 5001)]
    for proof, removed in ((6, True), (5, False)):
        data = _packets(*tail, proof=proof)
        assert check_bytes(data) == []
        reading = CaptureReading(io.BytesIO(data))
        assert [len(c.segments) for c in reading.connections()] == [proof, 4 - removed]
        assert reading.stats.duplicates == proof + removed
    # not on Linux lo's link: no copy is removed, however many
    data = _packets(*tail, proof=8, loopback=False)
    assert check_bytes(data) == []
    reading = CaptureReading(io.BytesIO(data))
    assert [len(c.segments) for c in reading.connections()] == [16, 4] and reading.warnings() == []


LOOPBACK = DATA / "loopback"


def _read(path: Path) -> tuple[CaptureReading, list]:
    reading = CaptureReading(io.BytesIO(path.read_bytes()))
    return reading, list(reading.connections())


def test_a_capture_that_doubles_lo_is_read_as_libpcap_read_the_same_traffic():
    # three connections on a netns's lo captured at once by scapy's sniff() (which keeps lo's
    # outgoing copies), tcpdump -i lo and tcpdump -i any (libpcap drops them): the same segments
    doubled, conns = _read(LOOPBACK / "linux-lo-scapy-sniff-doubled.pcap")
    assert doubled.stats.packets == 60 and doubled.stats.duplicates == 30
    (why,) = doubled.warnings()
    assert why.startswith("removed 30 duplicate copies of segments, because this capture shows Linux lo's doubling") and "scapy" in why
    shape = [[(s.side, s.seq, s.ack, s.segment.flags, s.length) for s in c.segments] for c in conns]
    for name in ("linux-lo-tcpdump.pcap", "linux-any-tcpdump-sll2.pcap"):
        single, theirs = _read(LOOPBACK / name)
        assert single.stats.duplicates == 0 and single.warnings() == []
        assert [[(s.side, s.seq, s.ack, s.segment.flags, s.length) for s in c.segments] for c in theirs] == shape
    # the same program's traffic through a packet socket that writes cooked (SLL) records itself:
    # every packet as PACKET_OUTGOING, then as PACKET_HOST, on ARPHRD_LOOPBACK
    cooked, theirs = _read(LOOPBACK / "linux-lo-packet-socket-sll-doubled.pcap")
    assert cooked.stats.packets == 60 and cooked.stats.duplicates == 30
    assert [[(s.side, s.seq, s.ack, s.segment.flags, s.length) for s in c.segments] for c in theirs] == shape


def test_an_ethernet_copy_is_kept_as_the_retransmission_it_is():
    # the capture: a byte-identical copy of a data segment 0.3 ms later, between 10.0.0.1
    # and 10.0.0.2; Wireshark calls it [TCP Retransmission]
    reading, (conn,) = _read(LOOPBACK / "ethernet-copy-retransmission.pcap")
    assert reading.stats.duplicates == 0 and reading.warnings() == []
    assert len(conn.segments) == 11
    data = [s for s in conn.segments if s.length]
    assert [s.segment.index for s in data[:2]] == [4, 5] and data[0].seq == data[1].seq
    assert data[1].t - data[0].t == pytest.approx(0.0003, abs=1e-6)
    assert (data[0].segment.analysis, data[1].segment.analysis) == ((), ("retransmission",))  # labelled, as Wireshark


def test_frames_skipped_for_too_many_link_headers_are_named_in_a_warning():
    reading = CaptureReading(io.BytesIO((DATA / "encapsulations" / "vlan-1000-tags.pcap").read_bytes()))
    conns = list(reading.connections())
    assert [len(c.segments) for c in conns] == [10] and reading.stats.other == 1
    assert reading.warnings() == [
        "skipped 1 frame with more than 16 nested link-layer headers (VLAN tags, MPLS labels, PPPoE, PBB, VN-Tag)"
        " (the first: frame 1)"]


def test_connections_whose_packets_span_zeeks_timers_are_not_memoised_by_shape():
    # the same shape twice (a SYN refused), the second refusal 6 s after its SYN: Zeek's attempt
    # timer has split that one (S0, where the first is REJ); a memo by shape alone would say REJ
    data = _packets((0, "C", "S", 1000, 0), (100, "S", "R.", 0, 1001),
                    (3_000_000, "C", "S", 2000, 0), (9_000_000, "S", "R.", 0, 2001), loopback=False)
    assert check_bytes(data) == []
    from verifier.wire.classify import summary
    assert [summary(c)["zeek_state"] for c in CaptureReading(io.BytesIO(data)).connections()] == ["REJ", "S0"]


@pytest.mark.skipif(show._showloop is None, reason="the compiled loop is not built (CI insists on it)")
def test_the_compiled_loop_leaves_moved_bases_and_long_connections_to_python(monkeypatch):
    calls = []
    monkeypatch.setattr(show._Hooks, "conn_text", staticmethod(lambda state: calls.append(state[0]) or "{}"))
    moved = [(0, "C", ".", 1001, 5001), (100, "C", "S", 1000, 0)]  # data, then the SYN: the client's base moves
    long = [(200 + i, "C", "P.", 7000 + i, 9000) for i in range(show.SHAPE_MAX_SEGMENTS + 1)]
    plain = [(300_000, "C", "R", 1000, 0)]
    from builders import ether, ipv4_tcp, pcap_file

    records = [(us // 10**6, us % 10**6, ether(ipv4_tcp(flags=f, seq=s, ack=a, sport=port, dport=5000)))
               for port, specs in ((40000, moved), (40001, long), (40002, plain)) for us, _, f, s, a in specs]
    records.sort(key=lambda r: r[:2])
    texts = list(show._compiled_texts(CaptureReading(io.BytesIO(pcap_file(records))), LINGER, show._Hooks))
    assert sorted(calls) == [1, 2] and len(texts) == 3 and texts.count("{}") == 2


def test_an_ack_half_the_sequence_space_past_a_fin_does_not_ack_it():
    # both FINs acked: a new SYN on the 4-tuple is a new connection; not acked: the same one
    handshake = [(0, "C", "S", 1000, 0), (100, "S", "S.", 5000, 1001), (200, "C", ".", 1001, 5001),
                 (300, "C", "F.", 1001, 5001), (400, "S", "F.", 5001, 1001)]  # FINs end at 1002 and 5002
    for ack, acked in ((1002 + (1 << 31) - 1, True), (1002 + (1 << 31), False)):
        data = _packets(*handshake, (500, "S", ".", 5002, ack % (1 << 32)), (600, "C", ".", 1002, 5002),
                        (700, "C", "S", 9000, 0))
        assert check_bytes(data) == []
        assert len(list(CaptureReading(io.BytesIO(data)).connections())) == (2 if acked else 1)


def test_ipv4_fragments_are_left_to_decode():
    from builders import ether, ipv4, pcap_file, tcp

    segment = tcp(flags="S", seq=1000)
    records = [ether(ipv4(segment, frag_offset=offset, more_fragments=more))
               for offset, more in ((0, False), (1, False), (0x1000, False), (0, True), (0x1FFF, False))]
    data = pcap_file(records)
    assert check_bytes(data) == []
    reading = CaptureReading(io.BytesIO(data))
    # the unfragmented one and the first fragment (offset 0, more to come) carry the TCP header
    assert [len(c.segments) for c in reading.connections()] == [2] and reading.stats.other == 3


@pytest.mark.parametrize("seed", range(3))
def test_fast_paths_on_mutated_real_captures(seed):
    # bytes changed, cut out and put in at random: lengths that lie, headers cut short, odd flags
    rng = random.Random(seed)
    files = [b for b in (p.read_bytes() for p in CAPTURES) if b]
    for n in range(300):
        data = bytearray(rng.choice(files))
        for _ in range(rng.randrange(1, 20)):
            if not data:
                break
            pos, roll = rng.randrange(len(data)), rng.random()
            if roll < 0.7:
                data[pos] = rng.randrange(256)
            elif roll < 0.85:
                del data[pos : pos + rng.randrange(1, 64)]
            else:
                data[pos:pos] = rng.randbytes(rng.randrange(1, 64))
        assert check_bytes(bytes(data)) == [], f"mutation {n} of seed {seed}"


def test_analysis_labels_of_forgotten_conversations_and_self_connects_match():
    from verifier.wire.analysis import FORGET_AFTER

    later = int(FORGET_AFTER * 1e6) + 5_000_000
    specs = [(0, "C", "S", 1000, 0), (100, "S", "S.", 5000, 1001), (200, "C", ".", 1001, 5001), (300, "C", "R.", 1001, 5001),
             (later, "C", "S", 77, 0), (later + 100, "S", "S.", 99, 78), (later + 200, "C", "S", 77, 0)]
    data = _packets(*specs, loopback=False)
    assert check_bytes(data) == []
    labels = [s.segment.analysis for c in CaptureReading(io.BytesIO(data)).connections() for s in c.segments]
    assert labels[4] == ("reused-ports",) and labels[6] == ("retransmission",)  # the state was forgotten, the bases not
    from builders import ether, ipv4_tcp, pcap_file

    self_connect = [ether(ipv4_tcp(flags=f, seq=s, ack=a, sport=5000, dport=5000))
                    for f, s, a in (("S", 1000, 0), ("S.", 1000, 1001), (".", 1001, 1001), (".", 1001, 1001), ("P.", 1001, 1001))]
    assert check_bytes(pcap_file(self_connect)) == []


def test_the_analysis_forgets_and_clears_as_the_reference_does(monkeypatch):
    # conversations idle a millisecond are forgotten and at most 4 bases kept: every path of the
    # analysis's memory taken in both copies, on random captures (which reuse 4-tuples a lot)
    from verifier.wire import analysis

    monkeypatch.setattr(analysis, "FORGET_AFTER", 0.01)
    monkeypatch.setattr(analysis, "CLOSED_FORGET_AFTER", 0.001)
    monkeypatch.setattr(analysis, "BASES_MAX", 4)
    rng = random.Random(7)
    for n in range(20):
        assert check_bytes(random_capture(rng)) == [], f"random capture {n}"


def test_an_unfinished_connection_does_not_hold_the_rest_back_past_max_waiting(monkeypatch):
    # an unanswered SYN, then short connections: past MAX_WAITING waiting, the SYN's connection is
    # handed on unfinished (said in a warning) and the rest follow; both paths the same
    from verifier.wire import connections

    monkeypatch.setattr(connections, "MAX_WAITING", 3)
    specs = [(0, "C", "S", 1000, 0)]
    records = []
    from builders import ether, ipv4_tcp, pcap_file

    records.append((1_700_000_000, 0, ether(ipv4_tcp(flags="S", seq=1000, sport=39000, dport=5000))))
    for n in range(8):
        us = 1000 + n * 10_000
        for i, (flags, seq, ack, sport, dport) in enumerate((("S", 1000, 0, 40000 + n, 5000), ("R.", 0, 1001, 5000, 40000 + n))):
            records.append((1_700_000_000, us + i, ether(ipv4_tcp(flags=flags, seq=seq, ack=ack, sport=sport, dport=dport))))
    data = pcap_file(records)
    assert check_bytes(data) == []
    reading = CaptureReading(io.BytesIO(data))
    conns = list(reading.connections())
    assert [c.index for c in conns] == list(range(1, 10)) and conns[0].cut_short and not conns[1].cut_short
    assert reading.stats.cut_short == 1
    assert reading.warnings() == ["1 connection handed on unfinished: more than 3 later connections were waiting behind it "
                                  "(a later packet of its 4-tuple starts a new connection)"]
    rng = random.Random(11)
    for n in range(20):  # and on random captures, where it cuts often
        assert check_bytes(random_capture(rng)) == [], f"random capture {n}"
