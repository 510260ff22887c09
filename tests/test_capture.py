"""Tests for verifier.wire.capture: synthetic pcap/pcapng files, the corpus, and tshark as the oracle."""

from __future__ import annotations

import functools
import io
import shutil
import struct
import subprocess
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from builders import (
    PCAP_MAGIC_MODIFIED, PCAP_MAGIC_NS, block, custom, epb, idb, ipv4_tcp, null, option, pb, pcap_file,
    pcap_header, pcap_record, pcapng_file, shb, spb,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifier.errors import CaptureError
from verifier.wire import capture
from verifier.wire.capture import read_frames
from verifier.wire.model import CaptureInfo

DATA = Path(__file__).parent / "data"
VARIANTS = sorted((DATA / "pcapng-variants").glob("*/*.pcapng"))
FOREIGN = sorted((DATA / "foreign").glob("*"))
MALFORMED = sorted((DATA / "malformed").glob("*"))
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

PKT = ipv4_tcp(flags="S")


def read(data: bytes, info: CaptureInfo | None = None):
    return list(read_frames(io.BytesIO(data), info))


def read_path(path: Path):
    info = CaptureInfo()
    frames, error = [], None
    with open(path, "rb") as f:
        try:
            for fr in read_frames(f, info):
                frames.append(fr)
        except CaptureError as e:
            error = e
    return frames, info, error


def _run_tshark(path: Path, fields: tuple[str, ...]) -> list[list[str]]:
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", *(a for f in fields for a in ("-e", f))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False,
    ).stdout  # stderr: "Running as user root..." and tshark's own verdict on bad files
    return [line.split("\t") for line in out.splitlines()]


_POOL = ThreadPoolExecutor(max_workers=4)  # tshark takes ~0.5 s to start: run them side by side


@functools.lru_cache(maxsize=None)
def _tshark_future(path: Path, fields: tuple[str, ...]):
    return _POOL.submit(_run_tshark, path, fields)


def tshark_rows(path: Path, *fields: str) -> list[list[str]]:
    return _tshark_future(path, fields).result()


PACKET_FIELDS = ("frame.number", "frame.interface_id", "frame.time_epoch", "frame.cap_len", "frame.len", "frame.comment")
PCAP_FIELDS = ("frame.number", "frame.time_epoch", "frame.cap_len", "frame.len")


@pytest.fixture(scope="module", autouse=True)
def _prefetch_tshark():
    if shutil.which("tshark"):
        for p in VARIANTS + FOREIGN + MALFORMED:
            _tshark_future(p, PCAP_FIELDS if p.suffix == ".pcap" and p.parent.name == "foreign" else PACKET_FIELDS)
    yield


# ------------------------------------------------------------------------------ classic pcap


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcap_both_byte_orders(endian):
    info = CaptureInfo()
    frames = read(pcap_file([(1_700_000_000, 123456, PKT), (1_700_000_001, 5, PKT, 1500)], endian=endian,
                            linktype=1, snaplen=65535), info)
    assert [f.index for f in frames] == [1, 2]
    assert frames[0].t == 1_700_000_000.123456
    assert frames[1].t == 1_700_000_001.000005
    assert frames[0].data == PKT and frames[0].orig_len == len(PKT)
    assert frames[1].orig_len == 1500
    assert all(f.linktype == 1 and f.interface == 0 and f.section == 0 and f.comment is None for f in frames)
    assert info.format == "pcap"
    assert info.interfaces == [{"section": 0, "linktype": 1, "snaplen": 65535, "name": None, "tsresol": 1_000_000,
                                "tsoffset": 0, "os": None, "comment": None, "fcs_len": None}]
    assert info.sections[0]["byte_order"] == ("little" if endian == "<" else "big")
    assert info.sections[0]["version"] == "2.4"
    assert info.warnings == []


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcap_nanosecond(endian):
    info = CaptureInfo()
    [f] = read(pcap_file([(1_700_000_000, 123_456_789, PKT)], magic=PCAP_MAGIC_NS, endian=endian), info)
    # the float nearest to the exact decimal, as float("1700000000.123456789") gives
    assert f.t == float("1700000000.123456789")
    assert info.interfaces[0]["tsresol"] == 1_000_000_000


def test_pcap_modified_magic_has_24_byte_records():
    [a, b] = read(pcap_file([(1, 2, PKT), (3, 4, PKT + b"x")], magic=PCAP_MAGIC_MODIFIED))
    assert (a.data, b.data) == (PKT, PKT + b"x")
    assert (a.t, b.t) == (1.000002, 3.000004)


def test_pcap_any_minor_version_of_major_2_reads():
    assert len(read(pcap_file([PKT], version=(2, 5)))) == 1  # as tshark reads pcap-invalid-version-2.pcap


@pytest.mark.parametrize("version", [(1, 4), (3, 0), (0, 0)])
def test_pcap_other_major_version_is_an_error(version):
    with pytest.raises(CaptureError, match=f"unsupported pcap version {version[0]}.{version[1]}") as e:
        read(pcap_file([PKT], version=version))
    assert e.value.offset == 4


def test_pcap_linktype_reserved_bits_rejected_fcs_bits_kept():
    with pytest.raises(CaptureError, match="reserved field not zero"):
        read(pcap_file([PKT], linktype=0x00300001))
    info = CaptureInfo()
    [f] = read(pcap_file([PKT], linktype=0x14000001), info)  # FCS present: one 16-bit word
    assert f.linktype == 1
    assert info.interfaces[0]["fcs_len"] == 2


def test_empty_and_not_a_capture():
    with pytest.raises(CaptureError, match="empty file") as e:
        read(b"")
    assert e.value.offset == 0
    with pytest.raises(CaptureError, match="not a pcap or pcapng file"):
        read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(CaptureError, match="not a pcap or pcapng file"):
        read(b"ab")


def test_short_file_header_is_an_error():
    with pytest.raises(CaptureError, match="truncated pcap file header"):
        read(pcap_header()[:20])
    with pytest.raises(CaptureError, match="truncated pcapng section header"):
        read(shb()[:20])


def test_header_only_file_has_no_frames():
    info = CaptureInfo()
    assert read(pcap_header(linktype=113), info) == []
    assert info.warnings == [] and info.interfaces[0]["linktype"] == 113


@pytest.mark.parametrize("cut", [1, 10, 16, 20])
def test_truncated_record_gives_frames_and_a_warning(cut):
    data = pcap_file([PKT, PKT, PKT])
    info = CaptureInfo()
    frames = read(data[:-cut], info)
    assert len(frames) == 2
    last = 24 + 2 * (16 + len(PKT))
    assert info.warnings == [f"truncated: last record cut short at byte offset {last}"]


def test_lying_record_length_raises_quickly_without_allocating():
    data = pcap_header() + pcap_record(PKT) + pcap_record(PKT, incl_len=0xFFFFFFF0) + b"\0" * 1000
    frames = []
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(CaptureError, match="4294967280 captured bytes") as e:
        for f in read_frames(io.BytesIO(data)):
            frames.append(f)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(frames) == 1  # what was valid before is yielded first
    assert e.value.offset == 24 + 16 + len(PKT) + 8
    assert peak < 4 * capture.CHUNK
    assert elapsed < 1.0


def test_record_larger_than_snaplen_but_within_default_maximum_reads():
    # libpcap and tshark accept a record bigger than the header's snaplen, up to 256 KiB
    [f] = read(pcap_file([PKT + b"x" * 2000], snaplen=96))
    assert len(f.data) == len(PKT) + 2000
    with pytest.raises(CaptureError):
        read(pcap_header(snaplen=96) + pcap_record(b"", incl_len=262145))


class Trickle(io.RawIOBase):
    """A stream that returns at most `step` bytes per read and counts what it gave."""

    def __init__(self, data: bytes, step: int):
        self.data, self.pos, self.step, self.largest_read = data, 0, step, 0

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.step if n < 0 else min(n, self.step)
        self.largest_read = max(self.largest_read, n)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_short_reads_give_the_same_frames(step):
    data = pcap_file([PKT, PKT + b"ab", PKT])
    assert list(read_frames(Trickle(data, step))) == read(data)
    ng = pcapng_file(shb(), idb(), epb(PKT, opts=[(1, "hi")]), spb(PKT), epb(PKT))
    assert list(read_frames(Trickle(ng, step))) == read(ng)


def test_streaming_memory_does_not_grow_with_the_file(tmp_path):
    big = tmp_path / "big.pcap"
    payload = PKT + b"\0" * 1000
    with open(big, "wb") as f:
        f.write(pcap_header())
        for _ in range(6000):  # ~6 MB
            f.write(pcap_record(payload))
    stream = Trickle(big.read_bytes(), 1 << 30)
    tracemalloc.start()
    count = sum(1 for _ in read_frames(open(big, "rb")))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 6000
    assert peak < 3 * capture.CHUNK
    # reads are bounded by CHUNK, whatever the stream could give
    sum(1 for _ in read_frames(stream))
    assert stream.largest_read <= capture.CHUNK


# ------------------------------------------------------------------------------------ pcapng


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_sections_interfaces_options(endian):
    data = pcapng_file(
        shb(endian, opts=[(2, "x86_64"), (3, "Linux 6.1"), (4, "verifier 0.1"), (1, "first section")]),
        idb(1, 65535, [(2, "lo"), (12, "Linux"), (1, "loopback")], endian),
        idb(0, 0, [(2, "lo0"), (9, 9), (14, struct.pack(endian + "q", 100))], endian),  # ns, +100 s
        epb(PKT, 0, ts=1_700_000_000_250_000, endian=endian),
        epb(null(PKT), 1, ts=1_700_000_000_123_456_789, endian=endian, opts=[(1, "client end()"), (1, "second")]),
        shb(">" if endian == "<" else "<", opts=[(3, "Darwin")]),  # other byte order; interfaces reset
        idb(113, 0, [(9, 0x80 | 10)], ">" if endian == "<" else "<"),  # 2^-10 s
        epb(PKT, 0, ts=3 * 1024 + 512, endian=">" if endian == "<" else "<"),
    )
    info = CaptureInfo()
    frames = read(data, info)
    assert [(f.index, f.section, f.interface, f.linktype) for f in frames] == [(1, 0, 0, 1), (2, 0, 1, 0), (3, 1, 0, 113)]
    assert frames[0].t == 1_700_000_000.25
    assert frames[1].t == float("1700000100.123456789")
    assert frames[2].t == 3.5
    assert frames[1].comment == "client end()\nsecond" and frames[0].comment is None
    assert frames[1].data == null(PKT)
    assert info.format == "pcapng"
    assert [s["os"] for s in info.sections] == ["Linux 6.1", "Darwin"]
    assert info.sections[0]["hardware"] == "x86_64" and info.sections[0]["userappl"] == "verifier 0.1"
    assert info.sections[0]["comment"] == "first section"
    assert info.sections[1]["byte_order"] == ("big" if endian == "<" else "little")
    assert [(i["section"], i["linktype"], i["name"], i["tsresol"], i["tsoffset"]) for i in info.interfaces] == [
        (0, 1, "lo", 1_000_000, 0), (0, 0, "lo0", 1_000_000_000, 100), (1, 113, None, 1024, 0)]
    assert info.interfaces[0]["os"] == "Linux" and info.interfaces[0]["comment"] == "loopback"
    assert info.interfaces[0]["snaplen"] == 65535


def test_pcapng_simple_and_obsolete_packet_blocks():
    data = pcapng_file(shb(), idb(101, snaplen=30), spb(PKT), pb(PKT, ts=2_000_000, opts=[(1, "old")]), spb(PKT))
    frames = read(data)
    # SPB: no timestamp -> the previous frame's (0.0 before any); interface 0; captured
    # length = min(original length, snaplen)
    assert [(f.t, len(f.data), f.orig_len, f.comment) for f in frames] == [
        (0.0, 30, len(PKT), None), (2.0, len(PKT), len(PKT), "old"), (2.0, 30, len(PKT), None)]


def test_pcapng_skips_other_blocks_but_numbers_custom_blocks_like_wireshark():
    data = pcapng_file(
        shb(), custom(), idb(), block(4, b"\0" * 4), epb(PKT), block(5, b"\0" * 12), custom(copy=False),
        block(0x0A, b"\0" * 8), block(0x12345678, b"whatever"), epb(PKT),
    )
    assert [f.index for f in read(data)] == [2, 4]


def test_pcapng_comment_is_cut_at_nul_like_wireshark():
    [f] = read(pcapng_file(shb(), idb(), epb(PKT, opts=[(1, b"Packet #1\0garbage")])))
    assert f.comment == "Packet #1"


@pytest.mark.parametrize(
    "bad, message",
    [
        (pcapng_file(shb(version=(2, 0))), "unsupported pcapng version 2.0"),
        (pcapng_file(shb(version=(1, 1))), "unsupported pcapng version 1.1"),
        (b"\x0a\x0d\x0d\x0a" + struct.pack("<I", 28) + b"\x11\x22\x33\x44" + b"\0" * 16, "byte-order magic"),
        (pcapng_file(shb(), block(1, b"\0" * 8, length=22)), "impossible length 22"),
        (pcapng_file(shb(), block(1, b"", length=8)), "impossible length 8"),
        (pcapng_file(shb(), block(6, b"\0" * 20, length=0xFFFFFFF0)), "impossible length 4294967280"),
        (pcapng_file(shb(), idb(), block(6, b"\0" * 20, trailer=99)), "trailing length 99"),
        (pcapng_file(shb(), idb(), epb(PKT, iface=1)), "interface 1"),
        (pcapng_file(shb(), epb(PKT)), "interface 0"),
        (pcapng_file(shb(), spb(PKT)), "no interface"),
        (pcapng_file(shb(), idb(), epb(PKT, caplen=len(PKT) + 100)), "captured length"),
        (pcapng_file(shb(), idb(), block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 2, 200) + b"lo\0\0")),
         "option 2 of length 200 runs past"),
    ],
)
def test_pcapng_structural_errors(bad, message):
    with pytest.raises(CaptureError, match=message) as e:
        read(bad)
    assert e.value.offset is not None


def test_pcapng_error_after_valid_frames_yields_them_first():
    data = pcapng_file(shb(), idb(), epb(PKT), epb(PKT, iface=7))
    frames = []
    with pytest.raises(CaptureError):
        for f in read_frames(io.BytesIO(data)):
            frames.append(f)
    assert len(frames) == 1


@pytest.mark.parametrize("cut", [1, 4, 8, 11, 40])
def test_pcapng_truncated_block_gives_frames_and_a_warning(cut):
    data = pcapng_file(shb(), idb(), epb(PKT), epb(PKT))
    info = CaptureInfo()
    frames = read(data[:-cut], info)
    assert len(frames) == 1
    assert info.warnings == [f"truncated: last block cut short at byte offset {len(data) - len(epb(PKT))}"]


def test_pcapng_large_block_length_in_small_file_warns_without_allocating():
    data = pcapng_file(shb(), idb(), epb(PKT), block(6, b"\0" * 40, length=200 << 20))
    info = CaptureInfo()
    tracemalloc.start()
    frames = read(data, info)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(frames) == 1 and info.warnings[0].startswith("truncated")
    assert peak < 4 * capture.CHUNK


def test_option_helper_round_trip():
    assert option(1, "abcde") == struct.pack("<HH", 1, 5) + b"abcde\0\0\0"


# ---------------------------------------------------------------------------- real captures


@needs_tshark
@pytest.mark.parametrize("path", VARIANTS + [p for p in FOREIGN if p.suffix == ".pcapng"], ids=lambda p: p.parent.name + "/" + p.name)
def test_pcapng_files_read_like_tshark(path):
    frames, info, error = read_path(path)
    rows = tshark_rows(path, *PACKET_FIELDS)
    # tshark also lists custom blocks as records (no interface id): we skip them but keep its numbering
    packets = [r for r in rows if r[1] != ""]
    assert [f.index for f in frames] == [int(r[0]) for r in packets]
    for f, r in zip(frames, packets):
        assert f.interface == int(r[1])
        if r[2]:  # a simple packet block has no timestamp (tshark: empty; we: previous frame's)
            assert f.t == float(r[2]), f.index
        assert (len(f.data), f.orig_len) == (int(r[3]), int(r[4]))
        assert f.comment == (r[5] or None)
    if path.name == "test901.pcapng":
        # tshark: 1 frame, then "pcapng: unknown SHB version 2.0" (the second section). We too.
        assert error is not None and "unsupported pcapng version 2.0" in error.message
    else:
        assert error is None and info.warnings == []


@needs_tshark
@pytest.mark.parametrize("path", [p for p in FOREIGN if p.suffix == ".pcap"], ids=lambda p: p.name)
def test_pcap_files_timestamps_like_tshark(path):
    frames, info, error = read_path(path)
    rows = tshark_rows(path, *PCAP_FIELDS)
    assert error is None and info.warnings == []
    assert [(f.index, f.t, len(f.data), f.orig_len) for f in frames] == [
        (int(r[0]), float(r[1]), int(r[2]), int(r[3])) for r in rows]


def test_foreign_headers():
    _, info, _ = read_path(DATA / "foreign" / "macos-lo0-shb-os.pcapng")
    assert info.interfaces[0]["name"] == "lo0" and info.interfaces[0]["linktype"] == 0
    assert info.sections[0]["os"]
    # despite its name (and the corpus README) this is mergecap output: ONE section whose two
    # interfaces come from a Linux and a Windows host (if_os), as tshark's interface ids 0/1 show
    _, info, _ = read_path(DATA / "foreign" / "pcapng-two-sections-windows-linux.pcapng")
    assert len(info.sections) == 1
    assert [i["os"][:5] for i in info.interfaces] == ["Linux", "64-bi"]
    assert [i["tsresol"] for i in info.interfaces] == [1_000_000_000, 1_000_000]
    _, info, _ = read_path(DATA / "foreign" / "linux-pcapng-multi-interface.pcapng")
    assert {i["linktype"] for i in info.interfaces} == {1, 113}


# What each malformed corpus file gives: (frames, error text or None, warning text or None).
# tshark's verdict is in the comment.
MALFORMED_EXPECTED = {
    "empty-file.pcap": (0, "empty file", None),  # tshark: prints nothing
    "google_gopacket_pcapgo_tests_le_test901.pcapng": (1, "unsupported pcapng version 2.0", None),  # 1 + same error
    "kbandla_dpkt_examples_data_truncated_dns_2.pcap": (1, None, "truncated"),  # 1 + "cut short"
    "rusticata_pcap-parser_assets_modified-format.pcap": (1, None, None),  # 1
    "rusticata_pcap-parser_assets_test017-le.pcapng": (0, None, None),  # 4 custom-block records, no packet
    "text-file.pcap": (0, "not a pcap or pcapng file", None),  # "isn't a capture file"
    "the-tcpdump-group_libpcap_tests_linktype-reserved-field-not-zero.pcap": (0, "reserved field not zero", None),
    "the-tcpdump-group_libpcap_tests_pcap-invalid-version-1.pcap": (0, "unsupported pcap version 1.4", None),
    "the-tcpdump-group_libpcap_tests_pcap-invalid-version-2.pcap": (1, None, None),  # 2.5: tshark reads 1
    "the-tcpdump-group_libpcap_tests_pcapng-invalid-vers-1.pcapng": (0, "unsupported pcapng version 0.1", None),
    "the-tcpdump-group_libpcap_tests_pcapng-invalid-vers-2.pcapng": (0, "unsupported pcapng version 1.1", None),
    # tshark: "Not enough data to handle option of length 12336"; the block's trailer is broken too
    "the-tcpdump-group_libpcap_tests_shb-option-too-long.pcapng": (0, "trailing length", None),
    "the-tcpdump-group_tcpdump_tests_heapoverflow-tcp_print.pcap": (1, None, None),  # 1 (decode: None)
    "the-tcpdump-group_tcpdump_tests_tcp_eight_lowest_weight_flags_set.pcap": (1, None, None),
    # 3; its microsecond fields are 1000000 and 2^31: we carry them into the seconds, tshark does not
    "the-tcpdump-group_tcpdump_tests_timestamp_invalid_micro.pcap": (3, None, None),
    "truncated-mid-record.pcap": (9, None, "truncated: last record cut short at byte offset 963"),  # 9 + "cut short"
}


def test_every_malformed_file_is_covered():
    assert sorted(MALFORMED_EXPECTED) == sorted(p.name for p in MALFORMED)


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.name)
def test_malformed_files_give_frames_and_warnings_or_a_capture_error(path):
    count, error_text, warning_text = MALFORMED_EXPECTED[path.name]
    frames, info, error = read_path(path)  # any exception other than CaptureError fails here
    assert len(frames) == count
    if error_text is None:
        assert error is None
    else:
        assert error is not None and error_text in error.message and error.offset is not None
    if warning_text is None:
        assert info.warnings == []
    else:
        assert len(info.warnings) == 1 and warning_text in info.warnings[0]


@needs_tshark
@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.name)
def test_malformed_files_frame_count_like_tshark(path):
    frames, _, _ = read_path(path)
    packets = [r for r in tshark_rows(path, *PACKET_FIELDS) if not (path.suffix == ".pcapng" and r[1] == "")]
    assert len(frames) == len(packets)


def test_timestamp_invalid_micro_is_carried_into_seconds():
    frames, _, _ = read_path(DATA / "malformed" / "the-tcpdump-group_tcpdump_tests_timestamp_invalid_micro.pcap")
    assert [f.t for f in frames] == [1418145369.999999, 1418145371.0, 1418145370 + 2147.483648]


# ---------------------------------------------------------------------------------- fuzzing

SEEDS = [
    pcap_file([PKT, PKT + b"abc"]),
    pcap_file([PKT], magic=PCAP_MAGIC_NS, endian=">"),
    pcapng_file(shb(opts=[(3, "Linux")]), idb(opts=[(2, "lo"), (9, 9)]), epb(PKT, opts=[(1, "c")]), spb(PKT),
                custom(), pb(PKT), shb(">"), idb(endian=">"), epb(PKT, endian=">")),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 400))
def test_mutated_files_never_raise_anything_but_capture_error(seed, edits, cut):
    data = bytearray(seed)
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    data = bytes(data[: len(data) - cut if cut < len(data) else len(data)])
    info = CaptureInfo()
    try:
        for f in read_frames(io.BytesIO(data), info):
            assert isinstance(f.data, bytes) and f.index >= 1
    except CaptureError as e:
        assert e.offset is None or 0 <= e.offset <= len(data)


# Lying length fields, byte flips and truncation of REAL captures, through the whole show path
# (read, decode, connections, classification): only data or CaptureError, bounded time and memory.
_REAL = [p.read_bytes() for p in sorted((DATA / "foreign").glob("*.pcap*"))]


def _length_field_offsets(data: bytes) -> list[int]:
    """Where length fields sit: pcap record incl_len/orig_len, pcapng block/option lengths."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return [4, 8, 12, 24, 28, 32, 36] + list(range(40, min(len(data), 400), 4))
    return [16, 20, 32, 36] + list(range(40, min(len(data), 400), 4))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(_REAL) - 1), lies=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 0xFFFFFFFF)), max_size=3),
       flips=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), max_size=4), keep=st.floats(0.0, 1.0))
def test_real_captures_with_lying_lengths_end_cleanly_in_bounded_time_and_memory(which, lies, flips, keep):
    import struct
    import time
    import tracemalloc

    from verifier.wire.show import CaptureReading, connection_record

    data = bytearray(_REAL[which])
    offsets = _length_field_offsets(bytes(data))
    for k, value in lies:
        pos = offsets[k % len(offsets)]
        if pos + 4 <= len(data):
            struct.pack_into("<I", data, pos, value)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    data = bytes(data[: max(0, int(len(data) * keep))])
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        reading = CaptureReading(io.BytesIO(data))
        for conn in reading.connections():
            connection_record(conn)
    except CaptureError as e:
        assert e.offset is None or 0 <= e.offset <= len(data)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - t0 < 2.0
    assert peak < 16 << 20, f"peak {peak} bytes for a {len(data)}-byte file"


def outcome(stream):
    """The frames, the warnings and the error (message, offset) of reading `stream` to its end."""
    info = CaptureInfo()
    frames, error = [], None
    try:
        for f in read_frames(stream, info):
            frames.append(f)
    except CaptureError as e:
        error = (e.message, e.offset)
    return frames, info.warnings, error


@pytest.mark.parametrize("step", [1, 61, 65536])
def test_a_pipe_s_short_reads_give_the_same_records_warnings_and_errors_on_every_capture(step):
    # a pipe gives what has arrived (verifier show - reads it so): nothing may depend on full reads
    for path in [*VARIANTS, *FOREIGN, *MALFORMED]:
        data = path.read_bytes()
        if step == 1 and len(data) > 20000:
            data = data[:20000]  # (a byte per read is slow: the start of big ones is enough)
        assert outcome(Trickle(data, step)) == outcome(io.BytesIO(data)), path.name


class Pausing(Trickle):
    """A Trickle that pauses (read returns None, as a non-blocking stream with nothing there) every other read."""

    def __init__(self, data: bytes, step: int):
        super().__init__(data, step)
        self.reads = self.pauses = 0

    def read(self, n=-1):
        self.reads += 1
        if self.reads % 2:
            self.pauses += 1
            return None
        return super().read(n)


def records_and_pauses(stream):
    """(frame number, t, bytes) of each record, how many PAUSEs came between them, and the error."""
    records, pauses, error = [], 0, None
    try:
        for r in capture.read_records(stream):
            if r is capture.PAUSE:
                pauses += 1
            else:
                records.append((r[0], r[1], bytes(r[3][r[4] : r[5]])))
    except CaptureError as e:
        error = (e.message, e.offset)
    return records, pauses, error


@pytest.mark.parametrize("path", [*FOREIGN, *VARIANTS[:4], *MALFORMED], ids=lambda p: p.name)
def test_a_paused_stream_yields_pause_between_records_and_the_same_records(path):
    data = path.read_bytes()[:50000]
    records, pauses, error = records_and_pauses(Pausing(data, 97))
    assert (records, error) == records_and_pauses(io.BytesIO(data))[::2]
    if records and len(data) > 400:
        assert pauses > 0
    assert outcome(Pausing(data, 97)) == outcome(io.BytesIO(data))  # read_frames waits pauses through
