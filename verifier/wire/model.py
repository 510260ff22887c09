"""The data the wire core passes around: frames read from a file, decoded TCP segments."""

from __future__ import annotations

from dataclasses import dataclass, field

# TCP flag bits as in the header (RFC 9293, RFC 3168)
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


# Frame and Segment are not frozen: a frozen dataclass's __init__ costs ~5x more (object.__setattr__
# per field), and a million of each are made reading a big capture. Treat them as immutable.
@dataclass(slots=True)
class Frame:
    """One packet record of a capture file, before any protocol decoding."""

    index: int  # 1-based frame number, as Wireshark counts
    t: float  # capture timestamp, seconds since the epoch
    linktype: int  # LINKTYPE_* of the interface that captured it
    data: bytes  # captured bytes (possibly fewer than orig_len)
    orig_len: int  # length on the wire
    comment: str | None = None  # pcapng opt_comment, if any
    interface: int = 0  # pcapng interface id (0 for classic pcap)
    section: int = 0  # pcapng section number (0 for classic pcap)


@dataclass(slots=True)
class Segment:
    """One TCP segment as the capture shows it: raw (absolute) sequence numbers."""

    index: int  # frame number it came from
    t: float
    family: int  # 4 or 6
    src: str  # address text: "127.0.0.1" or "::1"
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int  # TCP flag bits (FIN|SYN|...)
    win: int
    payload_len: int  # TCP payload length (from IP lengths, not the captured bytes)
    options: tuple = ()  # parsed TCP options: ("mss", 65495), ("wscale", 7), ("sackOK", None), ("TS", (val, ecr)), ...
    ip_id: int | None = None  # IPv4 identification (None for IPv6)
    comment: str | None = None
    loopback: bool = False  # the link header is Linux lo's (where a sniffer may see each packet twice)
    analysis: tuple = ()  # Wireshark's TCP analysis labels (wire.analysis), set as the capture is read
    tos: int = 0  # the IPv4 TOS byte or the IPv6 traffic class (DSCP and ECN)


@dataclass(slots=True)
class CaptureInfo:
    """What a capture file says about itself (filled as it is read)."""

    format: str = ""  # "pcap" or "pcapng"
    sections: list[dict] = field(default_factory=list)  # per pcapng section: {"os":..., "hardware":..., "userappl":..., "comment":...}
    interfaces: list[dict] = field(default_factory=list)  # {"section", "linktype", "snaplen", "name", "tsresol"}
    warnings: list[str] = field(default_factory=list)
