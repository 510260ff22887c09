"""Test builders: synthesize pcap/pcapng bytes, link-layer frames, IPv4/IPv6 TCP packets and Segments.

Everything here returns plain bytes (or a `Segment`), built with struct only, so tests can make
exactly the malformed or unusual input they need. Typical use:

    ip = ipv4_tcp(sport=40000, dport=5000, flags="S", options=[("mss", 65495)])
    data = pcap_file([ether(ip)])                              # classic pcap, Ethernet
    data = pcapng_file(shb(), idb(linktype=0), epb(null(ip)))  # pcapng, BSD loopback
    seg = segment(flags="F.", seq=1001, ack=5001)              # a Segment with sane defaults
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

from verifier.wire.model import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, Frame, Segment

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_MAGIC_MODIFIED = 0xA1B2CD34

_FLAG_LETTERS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, ".": ACK, "U": URG, "E": ECE, "W": CWR}


def flags_value(flags: int | str) -> int:
    """TCP flag bits from an int or tcpdump's notation ("S", "S.", "FP.", "R.", "SEW")."""
    if isinstance(flags, int):
        return flags
    value = 0
    for ch in flags:
        value |= _FLAG_LETTERS[ch]
    return value


# ------------------------------------------------------------------------------ Segments


def segment(**fields) -> Segment:
    """A `Segment` with sensible defaults (a client SYN 127.0.0.1:40000 -> 127.0.0.1:5000);
    any field can be given; `flags` may be tcpdump notation ("S.", "F.")."""
    values = dict(
        index=1, t=1_700_000_000.0, family=4, src="127.0.0.1", sport=40000, dst="127.0.0.1", dport=5000,
        seq=1000, ack=0, flags=SYN, win=65535, payload_len=0, options=(), ip_id=None, comment=None,
    )
    values.update(fields)
    values["flags"] = flags_value(values["flags"])
    if "family" not in fields and ":" in values["src"]:
        values["family"] = 6
    return Segment(**values)


def frame(data: bytes, linktype: int = 1, index: int = 1, t: float = 0.0, orig_len: int | None = None, **kw) -> Frame:
    """A `Frame` around `data` (orig_len defaults to its length)."""
    return Frame(index, t, linktype, data, len(data) if orig_len is None else orig_len, **kw)


# ----------------------------------------------------------------------------- TCP / IP


def tcp_options(options: Iterable[tuple]) -> bytes:
    """Encode TCP options given as decode()'s tuples, padded with zeros (EOL) to a multiple of 4."""
    out = b""
    for name, value in options:
        if name == "nop":
            out += b"\x01"
        elif name == "eol":
            out += b"\x00"
        elif name == "mss":
            out += struct.pack("!BBH", 2, 4, value)
        elif name == "wscale":
            out += struct.pack("!BBB", 3, 3, value)
        elif name == "sackOK":
            out += b"\x04\x02"
        elif name == "TS":
            out += struct.pack("!BBII", 8, 10, *value)
        elif name == "sack":
            out += struct.pack("!BB", 5, 2 + 8 * len(value)) + b"".join(struct.pack("!II", l, r) for l, r in value)
        elif name.startswith("opt"):
            out += struct.pack("!BB", int(name[3:]), 2 + len(value)) + value
        else:
            raise ValueError(name)
    return out + b"\x00" * (-len(out) % 4)


def tcp(sport: int = 40000, dport: int = 5000, seq: int = 1000, ack: int = 0, flags: int | str = "S",
        win: int = 65535, options: Iterable[tuple] | bytes = b"", payload: bytes = b"", data_offset: int | None = None) -> bytes:
    """A TCP header (checksum 0) plus payload; `options` as bytes or decode()-style tuples."""
    opts = options if isinstance(options, bytes) else tcp_options(options)
    doff = (20 + len(opts)) // 4 if data_offset is None else data_offset
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags_value(flags), win, 0, 0) + opts + payload


def ipv4(payload: bytes, src: str = "127.0.0.1", dst: str = "127.0.0.1", proto: int = 6, ip_id: int = 1,
         frag_offset: int = 0, more_fragments: bool = False, total_len: int | None = None, ip_options: bytes = b"") -> bytes:
    """An IPv4 header (checksum 0) plus payload; `total_len` overrides the length field (0 = TSO)."""
    ihl = (20 + len(ip_options)) // 4
    total = 4 * ihl + len(payload) if total_len is None else total_len
    frag = (0x4000 if not more_fragments and not frag_offset else 0) | (0x2000 if more_fragments else 0) | frag_offset
    return (
        struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, ip_id, frag, 64, proto, 0,
                    ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
        + ip_options + payload
    )


def ipv6(payload: bytes, src: str = "::1", dst: str = "::1", next_header: int = 6, payload_len: int | None = None,
         ext: Iterable[tuple[int, bytes]] = ()) -> bytes:
    """An IPv6 header plus extension headers plus payload. `ext` is a list of (header type, body)
    in order; each body is padded so the header is a multiple of 8 bytes (4 for AH), and the
    next-header chain ends with `next_header`."""
    ext = list(ext)
    chain = b""
    for i, (htype, body) in enumerate(ext):
        nh = ext[i + 1][0] if i + 1 < len(ext) else next_header
        if htype == 44:  # fragment: fixed 8 bytes; body = 2-byte offset/flags + 4-byte id
            chain += struct.pack("!BB", nh, 0) + body.ljust(6, b"\0")[:6]
        elif htype == 51:  # AH: length in 4-byte units minus 2
            body = body.ljust(max(10, len(body) + (-(len(body) + 2) % 4)), b"\0")
            chain += struct.pack("!BB", nh, (len(body) + 2) // 4 - 2) + body
        else:
            body = body.ljust(max(6, len(body) + (-(len(body) + 2) % 8)), b"\0")
            chain += struct.pack("!BB", nh, (len(body) + 2) // 8 - 1) + body
    first = ext[0][0] if ext else next_header
    plen = len(chain) + len(payload) if payload_len is None else payload_len
    return (
        struct.pack("!IHBB16s16s", 0x60000000, plen, first, 64,
                    ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
        + chain + payload
    )


def ipv4_tcp(src: str = "127.0.0.1", dst: str = "127.0.0.1", ip_id: int = 1, total_len: int | None = None, **tcp_fields) -> bytes:
    """An IPv4 packet carrying `tcp(**tcp_fields)`."""
    return ipv4(tcp(**tcp_fields), src=src, dst=dst, ip_id=ip_id, total_len=total_len)


def ipv6_tcp(src: str = "::1", dst: str = "::1", ext: Iterable[tuple[int, bytes]] = (), **tcp_fields) -> bytes:
    """An IPv6 packet carrying `tcp(**tcp_fields)`."""
    return ipv6(tcp(**tcp_fields), src=src, dst=dst, ext=ext)


# ------------------------------------------------------------------------------ link layers


def ether(ip: bytes, ethertype: int | None = None, vlans: Iterable[int] = (), pad_to: int = 0) -> bytes:
    """Ethernet II around `ip` (type from the IP version unless given), with 802.1Q tags, padded
    with zeros to `pad_to` bytes (60 is the Ethernet minimum)."""
    if ethertype is None:
        ethertype = 0x86DD if ip and ip[0] >> 4 == 6 else 0x0800
    tags = b"".join(struct.pack("!HH", 0x8100, v) for v in vlans)
    out = b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack("!H", ethertype) + ip
    return out.ljust(pad_to, b"\0")


def null(ip: bytes, family: int | None = None, byteorder: str = "little") -> bytes:
    """BSD loopback (LINKTYPE_NULL 0, or LOOP 108 with byteorder="big") header; family defaults to
    2 for IPv4 and 30 (macOS) for IPv6."""
    if family is None:
        family = 30 if ip and ip[0] >> 4 == 6 else 2
    return family.to_bytes(4, byteorder) + ip


def sll(ip: bytes, protocol: int | None = None) -> bytes:
    """Linux cooked capture v1 (LINKTYPE 113) header."""
    if protocol is None:
        protocol = 0x86DD if ip and ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, protocol) + ip


def sll2(ip: bytes, protocol: int | None = None) -> bytes:
    """Linux cooked capture v2 (LINKTYPE 276) header."""
    if protocol is None:
        protocol = 0x86DD if ip and ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHIHBB8s", protocol, 0, 1, 772, 0, 6, b"\0" * 8) + ip


# -------------------------------------------------------------------------------- pcap


def pcap_header(linktype: int = 1, snaplen: int = 262144, magic: int = PCAP_MAGIC_US, endian: str = "<",
                version: tuple[int, int] = (2, 4)) -> bytes:
    return struct.pack(endian + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)


def pcap_record(data: bytes, sec: int = 1_700_000_000, frac: int = 0, orig_len: int | None = None,
                endian: str = "<", modified: bool = False, incl_len: int | None = None) -> bytes:
    """One record; `frac` in the file's unit (µs or ns); `incl_len` overrides the length field."""
    incl = len(data) if incl_len is None else incl_len
    hdr = struct.pack(endian + "IIII", sec, frac, incl, len(data) if orig_len is None else orig_len)
    if modified:
        hdr += struct.pack(endian + "IHBB", 1, 0x0800, 0, 0)
    return hdr + data


def pcap_file(records: Iterable[bytes | tuple], linktype: int = 1, snaplen: int = 262144, magic: int = PCAP_MAGIC_US,
              endian: str = "<", version: tuple[int, int] = (2, 4)) -> bytes:
    """A classic pcap file. Each record is packet bytes, or (sec, frac, data) / (sec, frac, data, orig_len)."""
    out = [pcap_header(linktype, snaplen, magic, endian, version)]
    for i, rec in enumerate(records):
        if isinstance(rec, bytes):
            rec = (1_700_000_000 + i, 0, rec)
        out.append(pcap_record(rec[2], rec[0], rec[1], rec[3] if len(rec) > 3 else None, endian,
                               magic == PCAP_MAGIC_MODIFIED))
    return b"".join(out)


# ------------------------------------------------------------------------------- pcapng


def option(code: int, value: bytes | str | int, endian: str = "<") -> bytes:
    """One pcapng option; str is UTF-8, an int is one byte (if_tsresol)."""
    if isinstance(value, str):
        value = value.encode()
    elif isinstance(value, int):
        value = bytes([value])
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def options(opts: Iterable[tuple[int, bytes | str | int]], endian: str = "<") -> bytes:
    opts = list(opts)
    if not opts:
        return b""
    return b"".join(option(c, v, endian) for c, v in opts) + struct.pack(endian + "HH", 0, 0)


def block(btype: int, body: bytes, endian: str = "<", length: int | None = None, trailer: int | None = None) -> bytes:
    """A pcapng block: `body` padded to 4 bytes; `length`/`trailer` override the length fields."""
    body = body + b"\0" * (-len(body) % 4)
    real = 12 + len(body)
    return (struct.pack(endian + "II", btype, real if length is None else length) + body
            + struct.pack(endian + "I", real if trailer is None else trailer))


def shb(endian: str = "<", opts: Iterable = (), version: tuple[int, int] = (1, 0)) -> bytes:
    """Section header block; opts like [(3, "Linux 6.1"), (1, "a comment")]."""
    return block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, version[0], version[1], -1)
                 + options(opts, endian), endian)


def idb(linktype: int = 1, snaplen: int = 0, opts: Iterable = (), endian: str = "<") -> bytes:
    """Interface description block; opts like [(2, "lo"), (9, 9) (ns), (14, struct.pack("<q", 10))]."""
    return block(1, struct.pack(endian + "HHI", linktype, 0, snaplen) + options(opts, endian), endian)


def epb(data: bytes, iface: int = 0, ts: int = 1_700_000_000_000_000, orig_len: int | None = None,
        opts: Iterable = (), endian: str = "<", caplen: int | None = None) -> bytes:
    """Enhanced packet block; `ts` in the interface's units (µs by default)."""
    return block(6, struct.pack(endian + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF,
                                len(data) if caplen is None else caplen, len(data) if orig_len is None else orig_len)
                 + data + b"\0" * (-len(data) % 4) + options(opts, endian), endian)


def spb(data: bytes, orig_len: int | None = None, endian: str = "<") -> bytes:
    """Simple packet block (no timestamp, interface 0)."""
    return block(3, struct.pack(endian + "I", len(data) if orig_len is None else orig_len) + data, endian)


def pb(data: bytes, iface: int = 0, ts: int = 1_700_000_000_000_000, opts: Iterable = (), endian: str = "<") -> bytes:
    """Obsolete packet block (type 2)."""
    return block(2, struct.pack(endian + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
                 + data + b"\0" * (-len(data) % 4) + options(opts, endian), endian)


def custom(data: bytes = b"hello", pen: int = 32473, copy: bool = True, endian: str = "<") -> bytes:
    """Custom block (0x00000BAD, or 0x40000BAD when it must not be copied)."""
    return block(0x00000BAD if copy else 0x40000BAD, struct.pack(endian + "I", pen) + data, endian)


def pcapng_file(*blocks: bytes) -> bytes:
    return b"".join(blocks)
