"""Decode one captured frame into the TCP segment it carries (link layer, IPv4/IPv6, TCP), or None.

`decode(frame)` never raises for a bad packet: a non-TCP packet, an unknown link type, a
non-first IP fragment or a fixed header cut short by the snap length all give None.

Link layers (LINKTYPE_* values as they appear in pcap/pcapng files):
- 1 Ethernet, through the encapsulations Zeek and tshark look into, nested in any order:
  802.1Q / 802.1ad / QinQ tags (0x8100, 0x88a8, 0x9100), MPLS label stacks (0x8847, 0x8848:
  labels to the bottom-of-stack bit, then IPv4 or IPv6 by the first nibble), PPPoE session
  (0x8864, PPP protocol 0x0021 IPv4 / 0x0057 IPv6), 802.1ah PBB (0x88e7: the I-TAG, then the
  customer's Ethernet header), VN-Tag (0x8926). At most `MAX_LINK_HEADERS` of them: a deeper
  stack is skipped (None), and named in the `skipped` dict when one is given, so that a reader
  can warn (a frame of 1000 VLAN tags costs one bounded loop, never a recursion);
- 0 BSD loopback (NULL): a 4-byte address family in the capturing host's byte order (read
  little-endian; if that is no known family, big-endian); 108 LOOP: the same in network order.
  Family 2 is IPv4; 24 (NetBSD/OpenBSD/Npcap), 28 (FreeBSD) and 30 (macOS) are IPv6;
- 101 raw IP (and 12, 14, which some systems wrote for raw IP), 228 raw IPv4, 229 raw IPv6;
- 113 Linux cooked (SLL), 276 Linux cooked v2 (SLL2); their protocol field goes through the same
  encapsulations as Ethernet's type.

`Segment.loopback` says whether the link header is Linux `lo`'s: Ethernet with both addresses
zero, or a cooked header with ARPHRD_LOOPBACK (772). Only there can a sniffer see every packet
twice (see connections.Doubling).

`payload_len` comes from the IP header's lengths (what was on the wire), not from the captured
bytes; only an IPv4 total length of 0 (TCP segmentation offload) or an IPv6 payload length of 0
(jumbogram) falls back to the captured length.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator

from verifier.wire.model import Frame, Segment

_U16 = struct.Struct("!H")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct("!I")
_IPV4 = struct.Struct("!BBHHHxBxx4s4s")  # ver/ihl, TOS, total length, id, flags/fragment, protocol, src, dst
_IPV6 = struct.Struct("!BBxxHBx16s16s")  # version (and traffic class), payload length, next header, src, dst
_TCP = struct.Struct("!HHIIBBH")  # sport, dport, seq, ack, data offset, flags, window
_TS = struct.Struct("!II")

_AF_INET = 2
_AF_INET6 = frozenset((24, 28, 30))
_KNOWN_AF = frozenset((2, 24, 28, 30))
_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_VLAN = frozenset((0x8100, 0x88A8, 0x9100))
_MPLS = frozenset((0x8847, 0x8848))
_PPPOE_SESSION, _PBB, _VNTAG = 0x8864, 0x88E7, 0x8926
_PPP_IP = {0x0021: 4, 0x0057: 6}
MAX_LINK_HEADERS = 16  # VLAN tags, MPLS labels, PPPoE/PBB/VN-Tag headers around one IP packet
TOO_DEEP = f"more than {MAX_LINK_HEADERS} nested link-layer headers (VLAN tags, MPLS labels, PPPoE, PBB, VN-Tag)"
# a TCP frame the snap length cut inside its fixed header (tshark shows it, marked "Packet size
# limited during capture"; without ports, seq and flags it belongs to no connection here)
TCP_CUT = "the TCP header cut by the snap length"
_ZERO_MACS = bytes(12)
_ARPHRD_LOOPBACK = 772
_IPV6_EXT = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options: (len + 1) * 8 bytes

_NOP = ("nop", None)
_EOL = ("eol", None)
_SACK_OK = ("sackOK", None)

_addr_cache: dict[bytes, str] = {}
_ADDR_CACHE_MAX = 65536  # cleared when full: memory must not grow with the capture


def _addr(raw: bytes) -> str:
    text = _addr_cache.get(raw)
    if text is None:
        if len(_addr_cache) >= _ADDR_CACHE_MAX:
            _addr_cache.clear()
        text = "%d.%d.%d.%d" % tuple(raw) if len(raw) == 4 else str(ipaddress.IPv6Address(raw))
        _addr_cache[raw] = text
    return text


# Linux cooked captures: linktype -> (IP header offset, offset of the 2-byte protocol field,
# offset of the 2-byte ARPHRD type)
_COOKED = {113: (16, 14, 2), 276: (20, 0, 8)}


def _encapsulated(data: bytes, n: int, etype: int, off: int) -> tuple[int, int]:
    """(IP version, offset of the IP header) of a payload of type `etype` at `off`, through the
    encapsulations this module reads: version 4 or 6, 0 for anything else or a header cut short,
    -1 for more than MAX_LINK_HEADERS headers."""
    depth = 0
    while True:
        if etype == _ETH_IPV4:
            return 4, off
        if etype == _ETH_IPV6:
            return 6, off
        depth += 1
        if depth > MAX_LINK_HEADERS:
            return -1, off
        if etype in _VLAN:  # tag control (2), then the next type
            if n < off + 4:
                return 0, off
            etype = (data[off + 2] << 8) | data[off + 3]
            off += 4
        elif etype in _MPLS:  # 4-byte labels down to the bottom-of-stack bit; then IP by its version
            while True:
                if n < off + 4:
                    return 0, off
                off += 4
                if data[off - 2] & 1:
                    break
                depth += 1
                if depth > MAX_LINK_HEADERS:
                    return -1, off
            if n < off + 1:
                return 0, off
            version = data[off] >> 4
            return (version if version == 4 or version == 6 else 0), off
        elif etype == _PPPOE_SESSION:  # ver/type, code, session id, length; then the PPP protocol
            if n < off + 8:
                return 0, off
            return _PPP_IP.get((data[off + 6] << 8) | data[off + 7], 0), off + 8
        elif etype == _PBB:  # I-TAG (4), the customer's destination and source (12), then the type
            if n < off + 18:
                return 0, off
            etype = (data[off + 16] << 8) | data[off + 17]
            off += 18
        elif etype == _VNTAG:  # the tag (4), then the type
            if n < off + 6:
                return 0, off
            etype = (data[off + 4] << 8) | data[off + 5]
            off += 6
        else:
            return 0, off


def decode(frame: Frame, skipped: dict | None = None) -> Segment | None:
    """The TCP segment in `frame`, or None (not TCP, unknown link type, truncated headers...).

    A frame skipped for a reason worth a warning (TOO_DEEP, TCP_CUT) is counted in `skipped` when given:
    reason -> [frames, the first one's number]."""
    data = frame.data
    lt = frame.linktype
    n = len(data)
    loopback = False
    # ---- link layer: find the IP header's offset and which IP version to expect
    if lt == 1:  # Ethernet
        if n < 14:
            return None
        etype = (data[12] << 8) | data[13]
        loopback = data[:12] == _ZERO_MACS
        if etype == _ETH_IPV4:
            off, version = 14, 4
        elif etype == _ETH_IPV6:
            off, version = 14, 6
        else:
            version, off = _encapsulated(data, n, etype, 14)
    elif lt == 0 or lt == 108:  # BSD loopback NULL / LOOP
        if n < 4:
            return None
        if lt == 0:
            family = _U32_LE.unpack_from(data)[0]
            if family not in _KNOWN_AF:
                family = _U32_BE.unpack_from(data)[0]
        else:
            family = _U32_BE.unpack_from(data)[0]
        off = 4
        version = 4 if family == _AF_INET else 6 if family in _AF_INET6 else 0
    elif lt in _COOKED:  # Linux cooked SLL / SLL2: the protocol field, then its payload at a fixed offset
        off, proto, hatype = _COOKED[lt]
        if n < off:
            return None
        loopback = ((data[hatype] << 8) | data[hatype + 1]) == _ARPHRD_LOOPBACK
        version, off = _encapsulated(data, n, (data[proto] << 8) | data[proto + 1], off)
    elif lt == 101 or lt == 12 or lt == 14:  # raw IP: the version nibble says which
        if n < 1:
            return None
        off = 0
        version = data[0] >> 4
    elif lt == 228:
        off, version = 0, 4
    elif lt == 229:
        off, version = 0, 6
    else:
        return None
    if version < 0:
        if skipped is not None:
            seen = skipped.setdefault(TOO_DEEP, [0, frame.index])
            seen[0] += 1
        return None

    # ---- network layer: find the TCP header's offset and the IP payload length
    if version == 4:
        if n < off + 20:
            return None
        vihl, tos, total, ip_id, frag, proto, src, dst = _IPV4.unpack_from(data, off)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20 or proto != 6 or frag & 0x1FFF:
            return None  # not IPv4, bad header length, not TCP, or not the first fragment
        if total:
            if total < ihl:
                return None
            ip_payload = total - ihl
        else:  # TSO: the length was left for the NIC to fill in
            ip_payload = n - off - ihl
        p = off + ihl
        family = 4
    elif version == 6:
        if n < off + 40:
            return None
        vtc, tc2, plen, nh, src, dst = _IPV6.unpack_from(data, off)
        if vtc >> 4 != 6:
            return None
        tos = (vtc & 0x0F) << 4 | tc2 >> 4  # the traffic class
        p = off + 40
        ext = 0  # bytes of extension headers
        while nh != 6:
            if nh in _IPV6_EXT:
                if n < p + 2:
                    return None
                hlen = (data[p + 1] + 1) * 8
            elif nh == 44:  # fragment
                if n < p + 8:
                    return None
                if ((data[p + 2] << 8) | data[p + 3]) & 0xFFF8:
                    return None  # not the first fragment
                hlen = 8
            elif nh == 51:  # authentication header
                if n < p + 2:
                    return None
                hlen = (data[p + 1] + 2) * 4
            else:  # ESP (50), no next header (59), or an upper layer other than TCP
                return None
            nh = data[p]
            p += hlen
            ext += hlen
        ip_payload = plen - ext if plen else n - p
        ip_id = None
        family = 6
    else:
        return None

    # ---- TCP
    if n < p + 20:
        if skipped is not None and frame.orig_len > n:
            seen = skipped.setdefault(TCP_CUT, [0, frame.index])
            seen[0] += 1
        return None
    sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(data, p)
    thl = (doff >> 4) * 4
    if thl < 20 or ip_payload < thl:
        return None
    if n < p + thl:
        # options cut short by the snap length: the fixed header is there, as tshark reads it
        options = _options(data, p + 20, n)
    elif thl == 20:
        options = ()
    elif thl == 32 and data[p + 20 : p + 24] == b"\x01\x01\x08\x0a":  # NOP NOP TS: the usual case
        options = (_NOP, _NOP, ("TS", _TS.unpack_from(data, p + 24)))
    else:
        options = _options(data, p + 20, p + thl)
    src_text = _addr_cache.get(src) or _addr(src)
    dst_text = _addr_cache.get(dst) or _addr(dst)
    return Segment(
        frame.index, frame.t, family, src_text, sport, dst_text, dport, seq, ack, flags, win,
        ip_payload - thl, options, ip_id, frame.comment, loopback, tos=tos,
    )


def _options(data: bytes, i: int, end: int) -> tuple:
    """TCP options between i and end as tuples; an option that runs past `end` stops the parse."""
    out = []
    while i < end:
        kind = data[i]
        if kind == 0:
            out.append(_EOL)
            break
        if kind == 1:
            out.append(_NOP)
            i += 1
            continue
        if i + 1 >= end:
            break
        length = data[i + 1]
        if length < 2 or i + length > end:
            break
        if kind == 2 and length == 4:
            out.append(("mss", (data[i + 2] << 8) | data[i + 3]))
        elif kind == 3 and length == 3:
            out.append(("wscale", data[i + 2]))
        elif kind == 4 and length == 2:
            out.append(_SACK_OK)
        elif kind == 8 and length == 10:
            out.append(("TS", _TS.unpack_from(data, i + 2)))
        elif kind == 5 and length % 8 == 2:
            out.append(("sack", tuple(_TS.iter_unpack(data[i + 2 : i + length]))))
        else:
            out.append((f"opt{kind}", data[i + 2 : i + length]))
        i += length
    return tuple(out)


# --- the fast path: many records decoded in one loop ---------------------------------------------
# Ethernet + IPv4 (no IP options) or IPv6 (no extension headers) + TCP with no options or the usual
# NOP NOP TS (other options parsed in place), one struct call each; anything else goes through
# `decode`. The same Segments as `decode` (bench/check_fast_paths.py compares them on every capture).
_ETH_IPV4_TCP = struct.Struct("!12xHBBHHHxBxx4s4sHHIIBBH")  # ethertype, IPv4 (as _IPV4), TCP (as _TCP)
_ETH_IPV6_TCP = struct.Struct("!12xHBBxxHBx16s16sHHIIBBH")  # ethertype, IPv6 (as _IPV6), TCP (as _TCP)
_NOP_NOP_TS = b"\x01\x01\x08\x0a"


def ethernet_tcp(buf: bytes, start: int, end: int) -> tuple | None:
    """The fast path's fields of the Ethernet frame `buf[start:end]` when it is IPv4 without options
    or IPv6 without extension headers, then TCP with all its options captured: (family, src, sport,
    dst, dport, seq, ack, flags, win, payload_len, ip_id, options_start, options_end, tos), addresses
    packed, the options being `buf[options_start:options_end]`; None for anything else (`decode` it)."""
    if end - start < 54:
        return None
    b = buf[start + 12]
    if b == 0x08:
        et, vihl, tos, total, ip_id, frag, proto, src, dst, sport, dport, seq, ack, doff, flags, win = (
            _ETH_IPV4_TCP.unpack_from(buf, start))
        if et == 0x0800 and vihl == 0x45 and proto == 6 and not frag & 0x1FFF and total >= 40:
            thl = (doff >> 4) << 2
            if thl == 20 or (thl > 20 and total - 20 >= thl and end - start >= 34 + thl):
                return (4, src, sport, dst, dport, seq, ack, flags, win, total - 20 - thl, ip_id, start + 54, start + 34 + thl,
                        tos)
    elif b == 0x86 and end - start >= 74:
        et, vtc, tc2, plen, nh, src, dst, sport, dport, seq, ack, doff, flags, win = _ETH_IPV6_TCP.unpack_from(buf, start)
        if et == 0x86DD and vtc >> 4 == 6 and nh == 6 and plen >= 20:
            thl = (doff >> 4) << 2
            if thl == 20 or (thl > 20 and plen >= thl and end - start >= 54 + thl):
                return (6, src, sport, dst, dport, seq, ack, flags, win, plen - thl, None, start + 74, start + 54 + thl,
                        (vtc & 0x0F) << 4 | tc2 >> 4)
    return None


def segments(records, skipped: dict | None = None) -> Iterator[Segment | None]:
    """For each record of `capture.read_records`, the TCP segment it carries or None (as `decode`,
    which counts frames skipped with a warning in `skipped`)."""
    fast = ethernet_tcp
    ts = _TS.unpack_from
    cache_get = _addr_cache.get
    nop_nop_ts = _NOP_NOP_TS
    nop = _NOP
    seg_new = Segment
    zero_macs = _ZERO_MACS
    for index, t, lt, buf, start, end, orig, comment, iface, section in records:
        f = fast(buf, start, end) if lt == 1 else None
        if f is None:
            yield decode(Frame(index, t, lt, buf[start:end], orig, comment, iface, section), skipped)
            continue
        family, src, sport, dst, dport, seq, ack, flags, win, length, ip_id, o0, o1, tos = f
        if o0 == o1:
            options = ()
        elif o1 - o0 == 12 and buf[o0 : o0 + 4] == nop_nop_ts:  # the usual case
            options = (nop, nop, ("TS", ts(buf, o0 + 4)))
        else:
            options = _options(buf, o0, o1)
        yield seg_new(index, t, family, cache_get(src) or _addr(src), sport, cache_get(dst) or _addr(dst), dport,
                      seq, ack, flags, win, length, options, ip_id, comment, buf[start : start + 12] == zero_macs, (), tos)
