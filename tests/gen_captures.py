"""Write tests/data/encapsulations/*.pcap and tests/data/loopback/ethernet-copy-retransmission.pcap with
scapy: complete TCP connections inside link-layer encapsulations, and an Ethernet copy that is a
retransmission. Run it by hand (`.venv/bin/python tests/gen_captures.py`); the files are checked in.

Each file's TCP frames are checked against tshark by tests/test_oracle.py (it reads every capture
in tests/data); tests/test_decode.py and tests/test_show.py say what verifier must find in them."""

from __future__ import annotations

from pathlib import Path

from scapy.all import (IP, PPP, TCP, Dot1AD, Dot1Q, Ether, IPv6, Packet, PPPoE, Raw, ShortField, X3BytesField,
                       XByteField, XIntField, XShortField, bind_layers, wrpcap)
from scapy.contrib.mpls import MPLS

DATA = Path(__file__).parent / "data"
T0 = 1_767_225_600.0  # 2026-01-01, whole microseconds from here on
B_SRC, B_DST = "00:1b:21:00:00:01", "00:1b:21:00:00:02"  # a provider's (or the only) Ethernet header
C_SRC, C_DST = "02:00:00:00:00:0a", "02:00:00:00:00:0b"  # the customer's, inside PBB


class ITag(Packet):
    """802.1ah I-TAG (after ethertype 0x88e7): priority/DEI/flags, the 24-bit I-SID; the customer's
    Ethernet header follows."""

    name = "PBB I-TAG"
    fields_desc = [XByteField("flags", 0), X3BytesField("isid", 0)]


class VNTag(Packet):
    """Cisco VN-Tag (after ethertype 0x8926): 4 bytes of tag, then the next ethertype."""

    name = "VN-Tag"
    fields_desc = [XIntField("tag", 0), XShortField("type", 0x0800)]


class DeepTag(Packet):
    """A bare 802.1Q tag (TCI, next type) for the deep-stack capture: scapy's Dot1Q recurses per tag."""

    name = "tag"
    fields_desc = [ShortField("tci", 0), XShortField("type", 0x8100)]


bind_layers(Ether, ITag, type=0x88E7)
bind_layers(Dot1AD, ITag, type=0x88E7)
bind_layers(Dot1Q, ITag, type=0x88E7)
bind_layers(ITag, Ether)
bind_layers(Ether, VNTag, type=0x8926)
bind_layers(Dot1Q, VNTag, type=0x8926)
bind_layers(VNTag, Dot1Q, type=0x8100)
bind_layers(VNTag, IP, type=0x0800)
bind_layers(VNTag, IPv6, type=0x86DD)


def connection(ip, client: str, server: str, sport: int, request: bytes = b"GET / HTTP/1.0\r\n\r\n",
               response: bytes = b"HTTP/1.0 200 OK\r\n\r\nhello") -> list:
    """A whole TCP connection as IP packets: handshake, a request and its response, each ACKed,
    the client's FIN, the server's FIN piggybacking its ACK, the last ACK."""
    c, s = 1000, 5000
    up = lambda **kw: ip(src=client, dst=server) / TCP(sport=sport, dport=80, window=64240, **kw)  # noqa: E731
    down = lambda **kw: ip(src=server, dst=client) / TCP(sport=80, dport=sport, window=65160, **kw)  # noqa: E731
    return [
        up(flags="S", seq=c, options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]),
        down(flags="SA", seq=s, ack=c + 1, options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]),
        up(flags="A", seq=c + 1, ack=s + 1),
        up(flags="PA", seq=c + 1, ack=s + 1) / Raw(request),
        down(flags="A", seq=s + 1, ack=c + 1 + len(request)),
        down(flags="PA", seq=s + 1, ack=c + 1 + len(request)) / Raw(response),
        up(flags="A", seq=c + 1 + len(request), ack=s + 1 + len(response)),
        up(flags="FA", seq=c + 1 + len(request), ack=s + 1 + len(response)),
        down(flags="FA", seq=s + 1 + len(response), ack=c + 2 + len(request)),
        up(flags="A", seq=c + 2 + len(request), ack=s + 2 + len(response)),
    ]


def timed(frames: list, t0: float, step: float = 0.0002) -> list:
    for i, f in enumerate(frames):
        f.time = t0 + i * step
    return frames


def v4(n: int) -> list:
    return connection(IP, f"192.0.2.{n}", "198.51.100.80", 40000 + n)


def v6(n: int) -> list:
    return connection(IPv6, f"2001:db8::{n}", "2001:db8:80::80", 40000 + n)


def eth(etype: int | None = None):
    return Ether(src=B_SRC, dst=B_DST) if etype is None else Ether(src=B_SRC, dst=B_DST, type=etype)


def captures() -> dict[str, list]:
    out = {}
    # 802.1ad / QinQ: an S-tag (0x88a8) over a C-tag; the old QinQ type 0x9100; two stacked 802.1Q tags
    out["encapsulations/qinq.pcap"] = (timed([eth() / Dot1AD(vlan=100) / Dot1Q(vlan=200) / p for p in v4(1)], T0)
                        + timed([eth(0x9100) / Dot1Q(vlan=300, type=0x8100) / Dot1Q(vlan=301) / p for p in v4(2)], T0 + 1)
                        + timed([eth() / Dot1Q(vlan=7) / Dot1Q(vlan=8) / p for p in v6(3)], T0 + 2))
    # MPLS: a two-label stack (unicast 0x8847) over IPv4; one multicast (0x8848) label over IPv6
    out["encapsulations/mpls.pcap"] = (timed([eth() / MPLS(label=16, s=0, ttl=64) / MPLS(label=17, s=1, ttl=64) / p for p in v4(4)], T0)
                        + timed([eth(0x8848) / MPLS(label=18, s=1, ttl=64) / p for p in v6(5)], T0 + 1)
                        + timed([eth() / Dot1Q(vlan=9) / MPLS(label=19, s=1, ttl=64) / p for p in v4(6)], T0 + 2))
    # PPPoE session: PPP protocol 0x0021 (IPv4) and 0x0057 (IPv6)
    out["encapsulations/pppoe.pcap"] = (timed([eth() / PPPoE(sessionid=0x11) / PPP(proto=0x0021) / p for p in v4(7)], T0)
                         + timed([eth() / PPPoE(sessionid=0x12) / PPP(proto=0x0057) / p for p in v6(8)], T0 + 1))
    # 802.1ah PBB: a B-tag, the I-TAG, the customer's Ethernet header (with and without a C-tag)
    out["encapsulations/pbb.pcap"] = (timed([eth() / Dot1AD(vlan=10) / ITag(isid=0x10203) / Ether(src=C_SRC, dst=C_DST) / Dot1Q(vlan=5) / p
                              for p in v4(9)], T0)
                       + timed([eth(0x88E7) / ITag(isid=0x10204) / Ether(src=C_SRC, dst=C_DST) / p for p in v6(10)], T0 + 1))
    # VN-Tag: bare, and between two 802.1Q tags (as Zeek's vntag_vlan_sandwich trace)
    out["encapsulations/vntag.pcap"] = (timed([eth() / VNTag(tag=0x80010002, type=0x0800) / p for p in v4(11)], T0)
                         + timed([eth() / Dot1Q(vlan=12, type=0x8926) / VNTag(tag=0x00050006, type=0x8100) / Dot1Q(vlan=13) / p
                                  for p in v4(12)], T0 + 1))
    # a stack of 1000 802.1Q tags around a SYN (skipped with a warning), then an untagged connection
    tags = b"".join(bytes(DeepTag(tci=i, type=0x8100 if i < 999 else 0x0800)) for i in range(1000))
    deep = eth(0x8100) / Raw(tags + bytes(v4(13)[0]))  # as raw bytes: scapy's layers recurse per tag
    out["encapsulations/vlan-1000-tags.pcap"] = timed([deep], T0) + timed([eth() / p for p in v4(14)], T0 + 1)
    # the Ethernet capture: a byte-identical copy of a data segment 0.3 ms later is a
    # retransmission (Wireshark: [TCP Retransmission]), not a loopback copy
    conn = timed([eth() / p for p in connection(IP, "10.0.0.1", "10.0.0.2", 40015)], T0)
    copy = conn[3].copy()
    copy.time = conn[3].time + 0.0003
    later = [timed([p], conn[3].time + 0.0004 + i * 0.0002)[0] for i, p in enumerate(conn[4:])]
    out["loopback/ethernet-copy-retransmission.pcap"] = conn[:4] + [copy] + later
    return out


def main() -> None:
    for name, frames in captures().items():
        path = DATA / name
        path.parent.mkdir(exist_ok=True)
        wrpcap(str(path), frames)
        print(path, len(frames))


if __name__ == "__main__":
    main()
