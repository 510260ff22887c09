"""Tests for verifier.wire.decode: synthetic frames of every link type, TCP options, and tshark as the oracle."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from builders import ether, frame, ipv4, ipv4_tcp, ipv6, ipv6_tcp, null, segment, sll, sll2, tcp, tcp_options
from hypothesis import given, settings
from hypothesis import strategies as st
from link_frames import encapsulated

from verifier.wire.capture import read_frames
from verifier.wire.decode import MAX_LINK_HEADERS, TOO_DEEP, decode
from verifier.wire.model import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, Segment

DATA = Path(__file__).parent / "data"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

SYN_OPTS = [("mss", 65495), ("sackOK", None), ("TS", (123, 0)), ("nop", None), ("wscale", 7)]


def key(s: Segment):
    return (s.family, s.src, s.sport, s.dst, s.dport, s.seq, s.ack, s.flags, s.win, s.payload_len)


# ---------------------------------------------------------------------------- link layers

V4 = ipv4_tcp(src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=5000, seq=7, ack=9, flags="P.", win=512,
              payload=b"hello", ip_id=77)
V6 = ipv6_tcp(src="2001:db8::1", dst="::1", sport=40000, dport=5000, seq=7, ack=9, flags="P.", win=512, payload=b"hello")
EXPECT_V4 = (4, "10.0.0.1", 40000, "10.0.0.2", 5000, 7, 9, PSH | ACK, 512, 5)
EXPECT_V6 = (6, "2001:db8::1", 40000, "::1", 5000, 7, 9, PSH | ACK, 512, 5)


@pytest.mark.parametrize(
    "linktype, data, expected",
    [
        (1, ether(V4), EXPECT_V4),
        (1, ether(V6), EXPECT_V6),
        (1, ether(V4, vlans=[100]), EXPECT_V4),
        (1, ether(V6, vlans=[100, 200]), EXPECT_V6),
        (0, null(V4, 2, "little"), EXPECT_V4),
        (0, null(V4, 2, "big"), EXPECT_V4),  # a big-endian capturing host
        (0, null(V6, 30, "little"), EXPECT_V6),  # macOS
        (0, null(V6, 28, "little"), EXPECT_V6),  # FreeBSD
        (0, null(V6, 24, "big"), EXPECT_V6),  # NetBSD/OpenBSD on a big-endian host
        (108, null(V4, 2, "big"), EXPECT_V4),  # LOOP: network byte order
        (108, null(V6, 30, "big"), EXPECT_V6),
        (101, V4, EXPECT_V4),
        (101, V6, EXPECT_V6),
        (12, V4, EXPECT_V4),
        (14, V6, EXPECT_V6),
        (228, V4, EXPECT_V4),
        (229, V6, EXPECT_V6),
        (113, sll(V4), EXPECT_V4),
        (113, sll(V6), EXPECT_V6),
        (276, sll2(V4), EXPECT_V4),
        (276, sll2(V6), EXPECT_V6),
    ],
)
def test_link_layers(linktype, data, expected):
    s = decode(frame(data, linktype, index=3, t=1.5, comment="ev"))
    assert key(s) == expected
    assert (s.index, s.t, s.comment) == (3, 1.5, "ev")
    assert s.ip_id == (77 if expected[0] == 4 else None)


@pytest.mark.parametrize(
    "linktype, data",
    [
        (1, ether(V4, ethertype=0x0806)),  # ARP
        (0, null(V4, 7)),  # unknown family
        (108, null(V4, 2, "little")),  # LOOP is always network order
        (113, sll(V4, protocol=0x0806)),
        (147, V4),  # a user link type
        (1, b""),
        (0, b"\x02\0"),
        (101, b""),
        (228, V6),  # raw IPv4 link type, IPv6 inside
    ],
)
def test_not_tcp_or_unknown_link_gives_none(linktype, data):
    assert decode(frame(data, linktype)) is None


# ------------------------------------------------------------------------ encapsulations

QINQ = [("vlan", 0x88A8, 100), ("vlan", 0x8100, 200)]


@pytest.mark.parametrize("stack", [
    QINQ,
    [("vlan", 0x9100, 300), ("vlan", 0x8100, 301)],  # the pre-standard QinQ type
    [("vlan", 0x8100, 7), ("vlan", 0x8100, 8), ("vlan", 0x8100, 9)],  # stacked 802.1Q
    [("mpls", 16)],
    [("mpls", 16, 17, 18)],  # a label stack: IP after the bottom-of-stack bit
    [("mpls-multicast", 19)],
    [("vlan", 0x8100, 5), ("mpls", 20, 21)],  # MPLS in a VLAN (Zeek's mpls-in-vlan trace)
    [("pppoe", 0x1234)],  # PPP protocol 0x0021 or 0x0057 by the IP version
    [("vlan", 0x8100, 5), ("pppoe", 0x1234)],
    [("pbb", 0x10203)],  # I-TAG, then the customer's Ethernet header
    [("vlan", 0x88A8, 10), ("pbb", 0x10203), ("vlan", 0x8100, 11)],  # a B-tag, then a C-tag inside
    [("vntag", 0x80010002)],
    [("vlan", 0x8100, 12), ("vntag", 0x00050006), ("vlan", 0x8100, 13)],  # Zeek's vntag_vlan_sandwich
])
@pytest.mark.parametrize("ip, expected", [(V4, EXPECT_V4), (V6, EXPECT_V6)], ids=["v4", "v6"])
def test_encapsulations(stack, ip, expected):
    assert key(decode(frame(encapsulated(ip, stack)))) == expected


def test_encapsulations_in_linux_cooked_captures():
    # SLL's protocol field names the same types Ethernet's does
    inner = encapsulated(V4, QINQ)[14:]
    assert key(decode(frame(sll(inner, protocol=0x88A8), 113))) == EXPECT_V4
    assert key(decode(frame(sll2(encapsulated(V6, [("mpls", 16)])[14:], protocol=0x8847), 276))) == EXPECT_V6


@pytest.mark.parametrize("data", [
    encapsulated(V4, [("mpls", 16)])[:-len(V4)] + b"\x00" + V4[1:],  # after the labels: no IP version (a pseudowire)
    encapsulated(V4, [("pppoe", 1)])[:20] + b"\xc0\x21" + V4,  # PPP's LCP, not IP
    encapsulated(V4, [("vlan", 0x8100, 5)])[:16] + b"\x08\x06" + V4,  # ARP inside the tag
])
def test_encapsulations_of_something_else_give_none(data):
    assert decode(frame(data)) is None


@pytest.mark.parametrize("stack", [QINQ, [("mpls", 16, 17)], [("pppoe", 1)], [("pbb", 1)], [("vntag", 1)]])
def test_encapsulation_headers_cut_short_give_none(stack):
    data = encapsulated(V4, stack)
    for cut in range(12, len(data) - len(V4) + 1):
        assert decode(frame(data[:cut])) is None


def test_nested_link_headers_are_bounded_with_a_reason():
    # MAX_LINK_HEADERS tags or labels are read; one more and the frame is skipped and counted
    skipped = {}
    for kind in ("vlan", "mpls"):
        stack = ([("vlan", 0x8100, i) for i in range(MAX_LINK_HEADERS)] if kind == "vlan"
                 else [("mpls", *range(16, 16 + MAX_LINK_HEADERS))])
        assert key(decode(frame(encapsulated(V4, stack)), skipped)) == EXPECT_V4
        deeper = [("vlan", 0x8100, 1)] + stack
        assert decode(frame(encapsulated(V4, deeper), index=7), skipped) is None
    assert skipped == {TOO_DEEP: [2, 7]}
    # a malicious stack of 1000 tags: one bounded loop (no recursion), skipped with the reason
    thousand = encapsulated(V4, [("vlan", 0x8100, i % 4096) for i in range(1000)])
    assert decode(frame(thousand, index=9), skipped) is None and skipped == {TOO_DEEP: [3, 7]}
    assert decode(frame(thousand)) is None  # without a dict: skipped all the same
    assert "16 nested link-layer headers" in TOO_DEEP


@pytest.mark.parametrize("linktype, data, loopback", [
    (1, b"\0" * 12 + ether(V4)[12:], True),  # Linux lo: an Ethernet header of zero addresses
    (1, ether(V4), False),
    (1, b"\0" * 12 + encapsulated(V4, QINQ)[12:], True),
    (113, sll(V4), True),  # ARPHRD_LOOPBACK (772)
    (113, sll(V4)[:2] + b"\x00\x01" + sll(V4)[4:], False),  # ARPHRD_ETHER
    (276, sll2(V4), True),
    (276, sll2(V4)[:8] + b"\x00\x01" + sll2(V4)[10:], False),
    (0, null(V4, 2, "little"), False),  # macOS/BSD lo0: never doubled
    (101, V4, False),
])
def test_the_link_says_whether_it_is_linux_lo(linktype, data, loopback):
    assert decode(frame(data, linktype)).loopback is loopback


def test_ethernet_padding_does_not_count_as_payload():
    s = decode(frame(ether(ipv4_tcp(flags="."), pad_to=60)))
    assert s.payload_len == 0


# ------------------------------------------------------------------------------------- IPv4


def test_payload_len_comes_from_ip_lengths_not_captured_bytes():
    data = ether(ipv4_tcp(flags="P.", payload=b"x" * 1000))[:100]  # snaplen 100
    assert decode(frame(data, orig_len=1054)).payload_len == 1000


def test_tso_total_length_zero_falls_back_to_captured_length():
    assert decode(frame(ipv4_tcp(payload=b"x" * 30, total_len=0), 101)).payload_len == 30


def test_ip_options_are_skipped():
    data = ipv4(tcp(flags="S", payload=b"ab"), ip_options=b"\x01\x01\x01\x00")
    assert decode(frame(data, 101)).payload_len == 2


def test_ipv4_fragments():
    first = ipv4(tcp(flags="P.", payload=b"x" * 40), more_fragments=True)
    later = ipv4(b"x" * 40, frag_offset=5)
    assert decode(frame(first, 101)) is not None
    assert decode(frame(later, 101)) is None


def test_other_ip_protocols_give_none():
    assert decode(frame(ipv4(b"\0" * 8, proto=17), 101)) is None
    assert decode(frame(ipv6(b"\0" * 8, next_header=58), 101)) is None


@pytest.mark.parametrize("cut", [10, 19, 20, 33, 39])
def test_truncated_headers_give_none(cut):
    data = ipv4_tcp(options=SYN_OPTS)  # 20 + 40 bytes
    assert decode(frame(data[:cut], 101)) is None


@pytest.mark.parametrize("cut", [40, 41, 50])
def test_options_cut_by_the_snap_length_keep_the_fixed_header(cut):
    # as tshark: the 20-byte TCP header is there, the options are read as far as captured
    seg = decode(frame(ipv4_tcp(options=SYN_OPTS)[:cut], 101))
    assert seg is not None and seg.payload_len == 0
    assert len(seg.options) < 5


def test_bogus_lengths_give_none():
    assert decode(frame(ipv4_tcp(total_len=30), 101)) is None  # IP says less than a TCP header
    assert decode(frame(ipv4_tcp(total_len=10), 101)) is None  # IP says less than its own header
    assert decode(frame(ipv4(tcp(data_offset=3)), 101)) is None  # TCP header length 12
    assert decode(frame(ipv4(tcp(data_offset=15)), 101)) is None  # header past the captured bytes


# ------------------------------------------------------------------------------------- IPv6


def test_ipv6_extension_headers_are_skipped():
    ext = [(0, b"\0" * 6), (60, b"\0" * 14), (43, b"\0" * 6), (44, b"\0\0\0\0\0\1"), (51, b"\0" * 10)]
    data = ipv6_tcp(ext=ext, flags="S", payload=b"abc")
    s = decode(frame(data, 101))
    assert s is not None and s.flags == SYN and s.payload_len == 3


def test_ipv6_non_first_fragment_esp_and_no_next_give_none():
    assert decode(frame(ipv6_tcp(ext=[(44, b"\x00\x08\0\0\0\1")]), 101)) is None  # offset 1 (x8 bytes)
    assert decode(frame(ipv6(b"\0" * 40, next_header=50), 101)) is None
    assert decode(frame(ipv6(b"", next_header=59), 101)) is None


def test_ipv6_jumbo_payload_length_zero_uses_captured_length():
    data = ipv6(tcp(payload=b"x" * 12), payload_len=0)
    assert decode(frame(data, 101)).payload_len == 12


def test_ipv6_addresses_print_like_ipaddress():
    s = decode(frame(ipv6_tcp(src="fe80::a00:27ff:fef4:4dcf", dst="::ffff:127.0.0.1"), 101))
    assert (s.src, s.dst) == ("fe80::a00:27ff:fef4:4dcf", "::ffff:7f00:1")
    assert decode(frame(ipv6_tcp(src="::1"), 101)).src == "::1"  # cached and uncached alike


# ------------------------------------------------------------------------------------- TCP


def test_all_eight_flag_bits_and_ns_ignored():
    raw = bytearray(ipv4_tcp(flags=0xFF))
    raw[20 + 12] |= 0x01  # NS bit, in the data-offset byte
    s = decode(frame(bytes(raw), 101))
    assert s.flags == FIN | SYN | RST | PSH | ACK | URG | ECE | CWR == 0xFF


def test_options_parsed():
    opts = [("mss", 65495), ("sackOK", None), ("TS", (4294967295, 17)), ("nop", None), ("wscale", 14),
            ("nop", None), ("nop", None), ("sack", ((1, 2),)), ("opt30", b"\x01\x02"), ("eol", None)]
    s = decode(frame(ipv4_tcp(options=opts), 101))
    assert s.options == tuple(opts)


def test_sack_blocks():
    s = decode(frame(ipv4_tcp(flags=".", options=[("nop", None), ("nop", None), ("sack", ((1, 2), (3, 4), (5, 6)))]), 101))
    assert s.options == (("nop", None), ("nop", None), ("sack", ((1, 2), (3, 4), (5, 6))))


def test_usual_nop_nop_ts_options():
    s = decode(frame(ipv4_tcp(flags=".", options=[("nop", None), ("nop", None), ("TS", (5, 6))]), 101))
    assert s.options == (("nop", None), ("nop", None), ("TS", (5, 6)))


def test_unexpected_option_lengths_and_malformed_options():
    # a known kind with an odd length is kept raw; a length that runs past the header stops the parse
    weird = bytes([2, 3, 9]) + bytes([1]) + bytes([8, 40, 0, 0])
    s = decode(frame(ipv4(tcp(options=weird)), 101))
    assert s.options == (("opt2", b"\x09"), ("nop", None))
    s = decode(frame(ipv4(tcp(options=bytes([3, 0, 0, 0]))), 101))  # length 0
    assert s.options == ()


@settings(max_examples=400, deadline=None)
@given(linktype=st.sampled_from([0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 999]), data=st.binary(max_size=120))
def test_garbage_never_raises(linktype, data):
    decode(frame(data, linktype))


@settings(max_examples=200, deadline=None)
@given(body=st.binary(min_size=1, max_size=80), cut=st.integers(0, 140))
def test_mutated_tcp_never_raises(body, cut):
    base = ether(ipv4_tcp(options=SYN_OPTS, payload=b"x" * 10))
    data = (base[:54] + body + base[54 + len(body):])[:cut]
    decode(frame(data, 1))


# ------------------------------------------------------------------------------- builders


def test_segment_builder_defaults_and_notation():
    s = segment(flags="F.", seq=5)
    assert (s.flags, s.seq, s.family, s.src) == (FIN | ACK, 5, 4, "127.0.0.1")
    assert segment(src="::1", dst="::1").family == 6
    assert tcp_options([("mss", 1460)]) == b"\x02\x04\x05\xb4"


# ---------------------------------------------------------------------------- real captures

TSHARK_FIELDS = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", "tcp.seq_raw",
                 "tcp.ack_raw", "tcp.flags", "tcp.len", "tcp.window_size_value"]


def tshark_segments(path: Path):
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", *(a for f in TSHARK_FIELDS for a in ("-e", f))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False,
    ).stdout
    rows = []
    for line in out.splitlines():
        r = line.split("\t")
        if not r[2]:
            rows.append(None)
            continue
        rows.append((r[0] or r[1], int(r[2]), r[3] or r[4], int(r[5]), int(r[6]), int(r[7]), int(r[8], 16) & 0xFF,
                     int(r[9]), int(r[10])))
    return rows


def ours(path: Path):
    with open(path, "rb") as f:
        segs = [decode(fr) for fr in read_frames(f)]
    return [None if s is None else (s.src, s.sport, s.dst, s.dport, s.seq, s.ack, s.flags, s.payload_len, s.win)
            for s in segs]


@needs_tshark
@pytest.mark.parametrize("name", [
    "foreign/macos-lo0-ipv6-fin.pcap",  # DLT_NULL, AF 30
    "foreign/linux-sll-lo-fin.pcap",  # LINUX_SLL
    "foreign/macos-lo0-v6-refused-then-v4-rst.pcap",  # DLT_NULL, AF 30 and AF 2
    "foreign/macos-lo0-shb-os.pcapng",
    "foreign/linux-pcapng-multi-interface.pcapng",  # Ethernet + SLL
    "foreign/macos-pcapng-11-interfaces.pcapng",
    "malformed/the-tcpdump-group_tcpdump_tests_tcp_eight_lowest_weight_flags_set.pcap",
    *(f"encapsulations/{p.name}" for p in sorted((DATA / "encapsulations").glob("*.pcap"))),
    # Zeek's traces of these encapsulations (tests/data/zeek: MPLS in VLAN, mixed, PBB, VN-Tag)
    "zeek/traces/mixed-vlan-mpls.pcap", "zeek/traces/mpls-in-vlan.pcap", "zeek/traces/pbb.pcap",
    "zeek/traces/vntag_vlan_sandwich_clean.pcap",
])
def test_real_captures_decode_like_tshark(name):
    expected = tshark_segments(DATA / name)
    got = ours(DATA / name)
    assert got == expected
    assert any(s is not None for s in got)


def test_macos_ipv6_capture_is_the_4_packet_close():
    segs = [decode(f) for f in read_frames(open(DATA / "foreign" / "macos-lo0-ipv6-fin.pcap", "rb"))]
    assert all(s.family == 6 and s.src == "::1" for s in segs)
    assert [s.flags for s in segs[-4:]] == [FIN | ACK, ACK, FIN | ACK, ACK]
    assert segs[0].options == (("mss", 16324), ("nop", None), ("wscale", 6), ("nop", None), ("nop", None),
                               ("TS", (0x3E8C7AD7, 0)), ("sackOK", None), ("eol", None))  # what follows EOL is padding


def test_freebsd_af28_is_ipv6_but_not_tcp():
    frames = list(read_frames(open(DATA / "foreign" / "freebsd-lo-af28-icmpv6.pcap", "rb")))
    assert len(frames) == 6
    assert all(f.linktype == 0 and f.data[:4] == struct.pack("<I", 28) for f in frames)
    assert [decode(f) for f in frames] == [None] * 6  # ICMPv6
    # the same frames with the ICMPv6 replaced by TCP decode as IPv6: AF 28 is understood
    f = frames[0]
    tcp_instead = f.data[:4] + ipv6_tcp(src="2001:db8:1:0:a00:27ff:fef4:4dcf")
    assert decode(frame(tcp_instead, 0)).src == "2001:db8:1:0:a00:27ff:fef4:4dcf"


def test_crafted_tcp_header_reads_as_tshark_does():
    # tcpdump's heap-overflow test: a 60-byte TCP header of which only part was captured; tshark
    # still shows its fixed fields (seq 808464432, len 12256), and so do we
    [f] = read_frames(open(DATA / "malformed" / "the-tcpdump-group_tcpdump_tests_heapoverflow-tcp_print.pcap", "rb"))
    seg = decode(f)
    assert (seg.sport, seg.seq, seg.ack, seg.payload_len) == (12336, 808464432, 808464432, 12256)
