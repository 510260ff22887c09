"""Read packet records from a classic pcap or pcapng stream, one at a time (no protocol decoding).

`read_frames(stream, info)` yields a `Frame` per packet record and fills `info` (a
`CaptureInfo`) as it goes. It is pure: it only calls `stream.read(n)` on the binary file-like
object it is given, in chunks of at most `CHUNK` bytes, so memory stays bounded whatever the
size of the file (a record is never bigger than `MAX_RECORD`, checked before it is read).

Formats:
- classic pcap: both byte orders; microsecond (0xa1b2c3d4) and nanosecond (0xa1b23c4d) magic;
  Kuznetzov's "modified" pcap (0xa1b2cd34, 24-byte record headers). Major version 2 only (any
  minor, as Wireshark). The link-type field's reserved bits must be zero (libpcap and Wireshark
  reject it otherwise); its FCS bits are recorded as `fcs_len` (bytes) on the interface.
- pcapng: several sections, each with its own byte order (a section header resets the
  interfaces); version 1.0 and 1.2 (as libpcap and Wireshark). Enhanced, simple and obsolete
  packet blocks are packets; every other block is skipped (name resolution, statistics,
  decryption secrets, custom, unknown ones). Custom blocks (0x00000BAD, 0x40000BAD) and systemd
  journal blocks take a frame number without yielding a Frame, because Wireshark shows them as
  records: `Frame.index` is always the number Wireshark shows for that packet.
  A simple packet block has no timestamp: its frame gets the previous frame's timestamp (0.0 if
  it is the first frame), and interface 0 of its section. Several opt_comment options on one
  packet are joined with "\\n".

`info` gets:
- `format`: "pcap" or "pcapng";
- `sections`: one dict per section (one for classic pcap): "version" (text, "2.4" / "1.0"),
  "byte_order" ("little"/"big"), "os", "hardware", "userappl", "comment" (text or None);
- `interfaces`: one dict per interface: "section", "linktype", "snaplen", "name", "tsresol"
  (timestamp units per second, an int: 1000000 for microseconds), "tsoffset" (seconds),
  "os", "comment", "fcs_len";
- `warnings`: e.g. "truncated: last record cut short at byte offset N".

Streams: `stream.read(n)` may return fewer than n bytes (a pipe gives what has arrived); only b""
is the end. A stream may also return None, as a non-blocking raw stream does when nothing is
there: it says the stream *paused* (inputs.Stream does it after a wall-clock pause, when asked
to). `read_records` then yields `PAUSE` (None) in place of a record, at a record boundary, and
reads on; before the file header, or from `read_frames`, a pause is just waited through.

Errors: a file that is not a capture, or whose structure is impossible (unsupported version,
bad block length, a length beyond `MAX_RECORD`, an option running past its block, a packet
naming an interface that does not exist...) raises `CaptureError(message, offset)`, with
the byte offset where it was found; frames before that point have already been yielded (as
tshark prints what it read before reporting the error). A file that simply ends in the middle
of a record or block (after a valid file header) is not an error: the iteration ends normally
and a "truncated" warning is appended to `info.warnings`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from verifier.errors import CaptureError
from verifier.wire.model import CaptureInfo, Frame

CHUNK = 1 << 20  # bytes read from the stream at a time
MAX_RECORD = (256 << 20) + (128 << 10)  # largest record/block accepted (Wireshark's MAX_BLOCK_SIZE)
MAX_SNAPLEN_DEFAULT = 262144  # what libpcap and Wireshark assume when the snaplen says nothing useful
PAUSE = None  # what read_records yields where its stream paused (see "Streams" above)

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_MAGIC_MODIFIED = 0xA1B2CD34
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D

# pcapng block types
_IDB, _PB, _SPB, _NRB, _ISB, _EPB = 1, 2, 3, 4, 5, 6
_BLOCK_NAME = {_EPB: "enhanced packet block", _PB: "packet block"}
_JOURNAL = 9
_CUSTOM = (0x00000BAD, 0x40000BAD)
_NUMBERED_NON_PACKETS = frozenset((*_CUSTOM, _JOURNAL))  # records Wireshark numbers, not packets

# link-type field of a classic pcap header (libpcap's pcap-common.h)
_LT_LINKTYPE = 0x0000FFFF
_LT_RESERVED1 = 0x03FF0000
_LT_FCS_PRESENT = 0x04000000

_S = {
    e: {
        "u32": struct.Struct(e + "I"),
        "u16": struct.Struct(e + "H"),
        "pcap_hdr": struct.Struct(e + "IHHiIII"),  # magic, major, minor, thiszone, sigfigs, snaplen, network
        "pcap_rec": struct.Struct(e + "IIII"),  # ts_sec, ts_frac, incl_len, orig_len
        "pcap_rec_modified": struct.Struct(e + "IIII8x"),  # + ifindex, protocol, pkt_type, pad (skipped)
        "block": struct.Struct(e + "II"),  # type, total length
        "shb": struct.Struct(e + "IHHq"),  # byte-order magic, major, minor, section length
        "idb": struct.Struct(e + "HHI"),  # linktype, reserved, snaplen
        "epb": struct.Struct(e + "IIIII"),  # interface, ts high, ts low, captured len, original len
        "pb": struct.Struct(e + "HHIIII"),  # interface, drops, ts high, ts low, captured len, original len
        "opt": struct.Struct(e + "HH"),  # option code, option length
        "i64": struct.Struct(e + "q"),
    }
    for e in ("<", ">")
}


def read_frames(stream: BinaryIO, info: CaptureInfo | None = None) -> Iterator[Frame]:
    """Yield every packet record of a pcap or pcapng `stream` as a `Frame`, filling `info`."""
    return _frames(read_records(stream, info))  # header errors are raised here, before the first next()


def _frames(records: Iterator[tuple]) -> Iterator[Frame]:
    for r in records:
        if r is PAUSE:
            continue
        frame = Frame(r[0], r[1], r[2], r[3][r[4] : r[5]], r[6], r[7], r[8], r[9])
        del r  # hold no reference to the reader's chunk while it reads the next one
        yield frame


def read_records(stream: BinaryIO, info: CaptureInfo | None = None) -> Iterator[tuple]:
    """`read_frames` without the `Frame`s: for each packet record a tuple
    (index, t, linktype, buf, start, end, orig_len, comment, interface, section) whose captured
    bytes are `buf[start:end]` (`buf` is the reader's current chunk: use it before the next record);
    `PAUSE` (None) where a stream paused (only a stream whose read returns None does).

    For readers that decode in place (`verifier show` on million-packet files): no copy of
    the packet bytes and no object per packet. Same checks, errors, warnings and `info`.
    """
    if info is None:
        info = CaptureInfo()
    buf = _fill(stream, b"", 24)
    if not buf:
        raise CaptureError("empty file", 0)
    if len(buf) < 4:
        raise CaptureError("not a pcap or pcapng file (too short)", 0)
    head = buf[:4]
    if head == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(stream, buf, info)
    for e in ("<", ">"):
        magic = _S[e]["u32"].unpack_from(buf)[0]
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS, PCAP_MAGIC_MODIFIED):
            return _read_pcap(stream, buf, info, e, magic)
    raise CaptureError(f"not a pcap or pcapng file (unknown magic 0x{head.hex()})", 0)


def _fill(stream: BinaryIO, rest: bytes, need: int, pauses: bool = False) -> bytes:
    """`rest` plus what the stream gives, read CHUNK bytes at a time, until `need` bytes or end of file.

    A pause of the stream (read returned None) raises `_Paused` with what was read when `pauses`,
    else it is waited through."""
    parts = [rest] if rest else []
    have = len(rest)
    while have < need:
        data = stream.read(CHUNK)
        if not data:
            if data is None:
                if pauses:
                    raise _Paused(b"".join(parts))
                continue
            break
        parts.append(data)
        have += len(data)
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts) if parts else b""


class _Paused(Exception):
    def __init__(self, rest: bytes):
        self.rest = rest


def _refill(stream: BinaryIO, rest: bytes, need: int):
    """`_fill` for the record loops: yields PAUSE each time the stream pauses, then returns the bytes."""
    while True:
        try:
            return _fill(stream, rest, need, True)
        except _Paused as paused:
            rest = paused.rest
            yield PAUSE


def _truncated(info: CaptureInfo, what: str, offset: int) -> None:
    info.warnings.append(f"truncated: last {what} cut short at byte offset {offset}")


# --------------------------------------------------------------------------- classic pcap


def _read_pcap(stream: BinaryIO, buf: bytes, info: CaptureInfo, e: str, magic: int) -> Iterator[tuple]:
    info.format = "pcap"
    if len(buf) < 24:
        raise CaptureError(f"truncated pcap file header ({len(buf)} of 24 bytes)", 0)
    s = _S[e]
    _, major, minor, _zone, _sigfigs, snaplen, network = s["pcap_hdr"].unpack_from(buf)
    if major != 2:
        raise CaptureError(f"unsupported pcap version {major}.{minor} (only major version 2 exists)", 4)
    if network & _LT_RESERVED1:
        raise CaptureError(f"pcap link-type reserved field not zero (0x{network & _LT_RESERVED1:08x})", 20)
    linktype = network & _LT_LINKTYPE
    fcs_len = ((network >> 28) & 0xF) * 2 if network & _LT_FCS_PRESENT else None
    scale = 1_000_000_000 if magic == PCAP_MAGIC_NS else 1_000_000
    info.sections.append(
        {"version": f"{major}.{minor}", "byte_order": "little" if e == "<" else "big",
         "os": None, "hardware": None, "userappl": None, "comment": None}
    )
    info.interfaces.append(
        {"section": 0, "linktype": linktype, "snaplen": snaplen, "name": None, "tsresol": scale,
         "tsoffset": 0, "os": None, "comment": None, "fcs_len": fcs_len}
    )
    limit = snaplen if MAX_SNAPLEN_DEFAULT < snaplen <= MAX_RECORD else MAX_SNAPLEN_DEFAULT
    return _pcap_records(stream, buf, info, s, magic, linktype, scale, limit)


def _pcap_records(stream, buf, info, s, magic, linktype, scale, limit) -> Iterator[tuple]:
    rec = s["pcap_rec_modified" if magic == PCAP_MAGIC_MODIFIED else "pcap_rec"]
    hlen = rec.size
    unpack_from = rec.unpack_from
    base = 0  # file offset of buf[0]
    pos = 24
    n = len(buf)
    index = 0
    while True:
        if pos + hlen > n:
            base += pos
            buf = buf[pos:]  # let the old chunk go before reading the next one
            buf = yield from _refill(stream, buf, hlen)
            pos, n = 0, len(buf)
            if hlen > n:
                if n:
                    _truncated(info, "record", base)
                return
        sec, frac, incl, orig = unpack_from(buf, pos)
        if incl > limit:
            raise CaptureError(
                f"record {index + 1} claims {incl} captured bytes, more than the maximum of {limit}", base + pos + 8
            )
        start = pos + hlen
        end = start + incl
        if end > n:
            base += pos
            buf = buf[pos:]
            buf = yield from _refill(stream, buf, hlen + incl)
            pos, n = 0, len(buf)
            start, end = hlen, hlen + incl
            if end > n:
                _truncated(info, "record", base)
                return
        index += 1
        yield index, (sec * scale + frac) / scale, linktype, buf, start, end, orig, None, 0, 0
        pos = end


# --------------------------------------------------------------------------------- pcapng


def _options(buf: bytes, pos: int, end: int, s: dict, base: int, where: str) -> list[tuple[int, bytes]]:
    """The (code, value) options between pos and end; CaptureError if one runs past `end`."""
    out = []
    unpack = s["opt"].unpack_from
    while pos + 4 <= end:
        code, length = unpack(buf, pos)
        if code == 0:  # opt_endofopt
            break
        if pos + 4 + length > end:
            raise CaptureError(f"pcapng option {code} of length {length} runs past the end of its {where}", base + pos)
        out.append((code, buf[pos + 4 : pos + 4 + length]))
        pos += 4 + ((length + 3) & ~3)
    return out


def _text(value: bytes) -> str:
    """An option's UTF-8 text, cut at the first NUL as Wireshark does."""
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


def _comment(opts: list[tuple[int, bytes]]) -> str | None:
    texts = [_text(v) for c, v in opts if c == 1]
    return "\n".join(texts) if texts else None


def _read_pcapng(stream: BinaryIO, buf: bytes, info: CaptureInfo) -> Iterator[tuple]:
    info.format = "pcapng"
    # the first section header must be valid, or this is no pcapng file at all: check it now
    # (before the first next()) so that the caller gets the error even for an empty iteration
    buf = _fill(stream, buf, 28)
    if len(buf) < 28:
        raise CaptureError(f"truncated pcapng section header block ({len(buf)} bytes)", 0)
    s = _S[_shb_byte_order(buf, 0, 0)]
    _, major, minor, _ = s["shb"].unpack_from(buf, 8)
    if not (major == 1 and minor in (0, 2)):
        raise CaptureError(f"unsupported pcapng version {major}.{minor}", 12)
    return _pcapng_blocks(stream, buf, info)


def _shb_byte_order(buf: bytes, pos: int, offset: int) -> str:
    bom = buf[pos + 8 : pos + 12]
    if bom == b"\x4d\x3c\x2b\x1a":
        return "<"
    if bom == b"\x1a\x2b\x3c\x4d":
        return ">"
    raise CaptureError(f"bad pcapng byte-order magic 0x{bom.hex()} (not a pcapng file?)", offset + 8)


def _pcapng_blocks(stream: BinaryIO, buf: bytes, info: CaptureInfo) -> Iterator[tuple]:
    base = 0
    pos = 0
    n = len(buf)
    index = 0
    section = -1
    s = _S["<"]
    block_unpack = s["block"].unpack_from
    u32 = s["u32"].unpack_from
    epb_unpack = s["epb"].unpack_from
    ifaces: list[tuple[int, int, int, int]] = []  # per interface of this section: linktype, units/s, offset in units, snaplen
    last_t = 0.0
    while True:
        if pos + 12 > n:
            base += pos
            buf = buf[pos:]
            buf = yield from _refill(stream, buf, 12)
            pos, n = 0, len(buf)
            if n < 12:
                if n:
                    _truncated(info, "block", base)
                return
        btype, blen = block_unpack(buf, pos)
        if btype == PCAPNG_SHB:
            e = _shb_byte_order(buf, pos, base)
            s = _S[e]
            block_unpack = s["block"].unpack_from
            u32 = s["u32"].unpack_from
            epb_unpack = s["epb"].unpack_from
            blen = u32(buf, pos + 4)[0]
        if blen < 12 or blen & 3 or blen > MAX_RECORD:
            raise CaptureError(f"pcapng block of type 0x{btype:08x} has an impossible length {blen}", base + pos + 4)
        end = pos + blen
        if end > n:
            base += pos
            buf = buf[pos:]
            buf = yield from _refill(stream, buf, blen)
            pos, n = 0, len(buf)
            end = blen
            if end > n:
                _truncated(info, "block", base)
                return
        if u32(buf, end - 4)[0] != blen:
            raise CaptureError(
                f"pcapng block of type 0x{btype:08x}: trailing length {u32(buf, end - 4)[0]} differs from leading length {blen}",
                base + end - 4,
            )

        if btype == _EPB or btype == _PB:  # enhanced packet block, or the obsolete packet block
            if blen < 32:
                raise CaptureError(f"{_BLOCK_NAME[btype]} too short ({blen} bytes)", base + pos + 4)
            if btype == _EPB:
                iface, hi, lo, caplen, orig = epb_unpack(buf, pos + 8)
            else:
                iface, _drops, hi, lo, caplen, orig = s["pb"].unpack_from(buf, pos + 8)
            data_end = pos + 28 + caplen
            if data_end > end - 4:
                raise CaptureError(
                    f"{_BLOCK_NAME[btype]}: captured length {caplen} larger than the block", base + pos + 20
                )
            if iface >= len(ifaces):
                raise CaptureError(
                    f"packet names interface {iface}, but section {section} has {len(ifaces)} interface(s)",
                    base + pos + 8,
                )
            lt, units, off, _ = ifaces[iface]
            index += 1
            last_t = (((hi << 32) | lo) + off) / units
            opt_start = pos + 28 + ((caplen + 3) & ~3)
            if opt_start < end - 4:
                comment = _comment(_options(buf, opt_start, end - 4, s, base, _BLOCK_NAME[btype]))
                yield index, last_t, lt, buf, pos + 28, data_end, orig, comment, iface, section
            else:
                yield index, last_t, lt, buf, pos + 28, data_end, orig, None, iface, section
        elif btype == _SPB:
            if blen < 16:
                raise CaptureError(f"simple packet block too short ({blen} bytes)", base + pos + 4)
            if not ifaces:
                raise CaptureError(f"simple packet block, but section {section} has no interface", base + pos)
            lt, _, _, snaplen = ifaces[0]
            orig = u32(buf, pos + 8)[0]
            caplen = min(orig, blen - 16)
            if snaplen and caplen > snaplen:
                caplen = snaplen
            index += 1
            yield index, last_t, lt, buf, pos + 12, pos + 12 + caplen, orig, None, 0, section
        elif btype == _IDB:
            if blen < 20:
                raise CaptureError(f"interface description block too short ({blen} bytes)", base + pos + 4)
            ifaces.append(_idb(buf, pos, end, s, base, section, info))
        elif btype == PCAPNG_SHB:
            if blen < 28:
                raise CaptureError(f"section header block too short ({blen} bytes)", base + pos + 4)
            _, major, minor, _ = s["shb"].unpack_from(buf, pos + 8)
            if not (major == 1 and minor in (0, 2)):
                raise CaptureError(f"unsupported pcapng version {major}.{minor}", base + pos + 12)
            opts = _options(buf, pos + 24, end - 4, s, base, "section header block")
            section += 1
            ifaces = []
            info.sections.append(
                {
                    "version": f"{major}.{minor}",
                    "byte_order": "little" if s is _S["<"] else "big",
                    "hardware": _opt_text(opts, 2),
                    "os": _opt_text(opts, 3),
                    "userappl": _opt_text(opts, 4),
                    "comment": _comment(opts),
                }
            )
        elif btype in _NUMBERED_NON_PACKETS:
            index += 1  # Wireshark shows it as a record: keep frame numbers equal to Wireshark's
        # anything else (NRB, ISB, DSB, unknown): skipped
        pos = end


def _opt_text(opts: list[tuple[int, bytes]], code: int) -> str | None:
    for c, v in opts:
        if c == code:
            return _text(v)
    return None


def _idb(buf: bytes, pos: int, end: int, s: dict, base: int, section: int, info: CaptureInfo):
    linktype, _reserved, snaplen = s["idb"].unpack_from(buf, pos + 8)
    opts = _options(buf, pos + 16, end - 4, s, base, "interface description block")
    units = 1_000_000
    tsoffset = 0
    for code, value in opts:
        if code == 9 and len(value) >= 1:  # if_tsresol
            v = value[0]
            units = 1 << (v & 0x7F) if v & 0x80 else 10 ** v
        elif code == 14 and len(value) >= 8:  # if_tsoffset, seconds
            tsoffset = s["i64"].unpack_from(value)[0]
    info.interfaces.append(
        {
            "section": section,
            "linktype": linktype,
            "snaplen": snaplen,
            "name": _opt_text(opts, 2),
            "tsresol": units,
            "tsoffset": tsoffset,
            "os": _opt_text(opts, 12),
            "comment": _comment(opts),
            "fcs_len": next((v[0] for c, v in opts if c == 13 and v), None),  # if_fcslen
        }
    )
    return linktype, units, tsoffset * units, snaplen
