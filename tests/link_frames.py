"""Test builder: Ethernet frames around an IP packet through stacks of link-layer encapsulations
(VLAN / QinQ tags, MPLS labels, PPPoE session, PBB, VN-Tag), built with struct only.

    frame = encapsulated(ipv4_tcp(...), [("vlan", 0x88A8, 100), ("vlan", 0x8100, 200)])   # QinQ
    frame = encapsulated(ipv6_tcp(...), [("mpls", 16, 17)])                               # two labels
"""

from __future__ import annotations

import struct

B_DST, B_SRC = b"\x00\x1b\x21\x00\x00\x02", b"\x00\x1b\x21\x00\x00\x01"
C_DST, C_SRC = b"\x02\x00\x00\x00\x00\x0b", b"\x02\x00\x00\x00\x00\x0a"


def ip_ethertype(ip: bytes) -> int:
    return 0x86DD if ip and ip[0] >> 4 == 6 else 0x0800


def encapsulated(ip: bytes, stack: list[tuple], macs: bytes = B_DST + B_SRC) -> bytes:
    """An Ethernet frame: `macs`, then the layers of `stack` from the outside in, then `ip`.

    Layers: ("vlan", tpid, vid) a tag of type tpid (0x8100, 0x88a8, 0x9100); ("mpls", label, ...)
    a label stack (0x8847; ("mpls-multicast", ...) for 0x8848), bottom of stack on the last;
    ("pppoe", session) a PPPoE session header and the PPP protocol of the IP version; ("pbb", isid)
    an I-TAG and the customer's Ethernet header; ("vntag", tag) a VN-Tag. MPLS and PPPoE must be
    directly around the IP packet (that is what they can carry here)."""
    etype, payload = ip_ethertype(ip), ip
    for layer in reversed(stack):
        kind, *args = layer
        if kind == "vlan":
            tpid, vid = args
            payload, etype = struct.pack("!HH", vid, etype) + payload, tpid
        elif kind in ("mpls", "mpls-multicast"):
            labels = b"".join(struct.pack("!I", label << 12 | (i == len(args) - 1) << 8 | 64) for i, label in enumerate(args))
            payload, etype = labels + payload, 0x8847 if kind == "mpls" else 0x8848
        elif kind == "pppoe":
            (session,) = args
            proto = 0x0057 if etype == 0x86DD else 0x0021
            payload, etype = struct.pack("!BBHHH", 0x11, 0, session, len(payload) + 2, proto) + payload, 0x8864
        elif kind == "pbb":
            (isid,) = args
            payload, etype = struct.pack("!I", isid & 0xFFFFFF) + C_DST + C_SRC + struct.pack("!H", etype) + payload, 0x88E7
        elif kind == "vntag":
            (tag,) = args
            payload, etype = struct.pack("!IH", tag, etype) + payload, 0x8926
        else:
            raise ValueError(f"unknown layer {kind!r}")
    return macs + struct.pack("!H", etype) + payload
