"""Rebuild TCP connections from segments: roles, Wireshark's relative numbers, loopback duplicates removed."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Iterable, Iterator

from .model import ACK, FIN, RST, SYN, Segment

MOD = 1 << 32
HALF = 1 << 31

# Linux `lo` hands a packet socket every packet twice: the outgoing copy (PACKET_OUTGOING) and the
# incoming one, microseconds apart, identical in every header field. libpcap (tcpdump, dumpcap,
# tshark) drops the outgoing copy on lo, with `-i lo` and `-i any` alike; a sniffer that does not
# (scapy's sniff(), a raw AF_PACKET socket) writes each packet twice. So a copy is removed only
# where that doubling is proven (see Doubling): elsewhere an identical segment within a
# millisecond is what Wireshark calls it, a retransmission, and is kept.
DUPLICATE_WINDOW = 0.001
DUPLICATE_LOOKBACK = 4
# Doubling: at most one loopback segment in DOUBLING_SLACK so far may lack its twin copy (the
# capture started or stopped between the two copies, or the sniffer dropped one).
DOUBLING_SLACK = 8
DOUBLING_WHY = ("this capture shows Linux lo's doubling: nearly every segment on its loopback link came twice "
                "within 1 ms, as a sniffer that keeps lo's outgoing copies writes them, scapy's sniff() for one; "
                "libpcap drops those copies")


class Doubling:
    """Whether a capture so far shows Linux lo's doubling, counted over its segments from a
    loopback link (`Segment.loopback`: Ethernet with zero addresses, a cooked header of
    ARPHRD_LOOPBACK; BSD/macOS lo0 never doubles, and other links are not loopback).

    `remove(copy)` counts one such segment (`copy`: identical to one of the last
    DUPLICATE_LOOKBACK segments of its connection within DUPLICATE_WINDOW) and says whether it
    is a copy to remove: it is when, this one included, the segments without a twin are at most
    one in DOUBLING_SLACK (or one) of the loopback segments so far. A capture written by libpcap
    has no such pairs, so an occasional identical segment there is kept; one written by a sniffer
    that doubles has nothing else. Every copy counts, removed or kept.
    """

    __slots__ = ("segments", "copies")

    def __init__(self) -> None:
        self.segments = 0
        self.copies = 0

    def remove(self, copy: bool) -> bool:
        self.segments += 1
        if not copy:
            return False
        self.copies += 1
        return doubled(self.segments, self.copies)


def doubled(segments: int, copies: int) -> bool:
    """Whether `copies` twin copies among `segments` loopback segments prove the doubling."""
    return DOUBLING_SLACK * (segments - 2 * copies) <= max(segments, DOUBLING_SLACK)

# A finished connection (RST seen, or both FINs seen and the last one ACKed) is handed on once
# capture time has moved this far past its last packet: late retransmissions, final ACKs or a
# SYN retried after a RST still land in it, and memory stays bounded on long captures.
LINGER = 2.0
# Connections are handed on in first-packet order: one that never finishes would hold every later
# one back, in memory, on a stream that never ends. Past this many waiting, the head is handed on
# unfinished (a later packet of its 4-tuple starts a new connection), and the reading warns.
MAX_WAITING = 10_000


class RelSegment(tuple):
    """A segment of a connection, seen from the connection: its side and relative seq/ack.

    Immutable, with the fields side (the sender: "C" for the client, "S"), seq and ack (relative,
    as Wireshark computes them; ack is 0 when the ACK flag is not set) and segment (the `Segment`).
    A tuple underneath: a million are made reading a big capture, and a frozen dataclass's
    __init__ costs ~4x more. Compares equal only to another RelSegment, as a dataclass would.
    """

    __slots__ = ()
    __match_args__ = ("side", "seq", "ack", "segment")

    def __new__(cls, side: str, seq: int, ack: int, segment: Segment) -> RelSegment:
        return tuple.__new__(cls, (side, seq, ack, segment))

    side = property(itemgetter(0))
    seq = property(itemgetter(1))
    ack = property(itemgetter(2))
    segment = property(itemgetter(3))

    @property
    def flags(self) -> int:
        return self[3].flags

    @property
    def length(self) -> int:
        return self[3].payload_len

    @property
    def t(self) -> float:
        return self[3].t

    def __repr__(self) -> str:
        return f"RelSegment(side={self[0]!r}, seq={self[1]!r}, ack={self[2]!r}, segment={self[3]!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return tuple.__ne__(self, other)

    __hash__ = tuple.__hash__

    def __getnewargs__(self) -> tuple:
        return tuple(self)


_new_rel = tuple.__new__


@dataclass(slots=True)
class Connection:
    """One TCP connection: who is client and server, and its segments in capture order."""

    index: int  # 1-based, in order of first packet
    client: tuple[str, int]
    server: tuple[str, int]
    segments: list[RelSegment] = field(default_factory=list)
    duplicates: int = 0  # loopback duplicate copies removed
    cut_short: bool = False  # handed on unfinished: too many connections were waiting behind it (MAX_WAITING)
    # sequence bookkeeping (raw numbers)
    _base: dict = field(default_factory=dict)  # side -> base seq (relative 0)
    _base_from_syn: set = field(default_factory=set)
    _client_isn: int | None = None
    _fin_end: dict = field(default_factory=dict)  # side -> raw seq just after its FIN
    _fin_acked: set = field(default_factory=set)  # sides whose FIN the peer ACKed
    _rst: bool = False

    @property
    def family(self) -> int:
        return 6 if ":" in self.client[0] else 4

    @property
    def finished(self) -> bool:
        return self._rst or len(self._fin_acked) == 2

    @property
    def last_t(self) -> float:
        return self.segments[-1].t if self.segments else 0.0

    def add(self, seg: Segment, doubling: Doubling | None = None) -> bool:
        """Add a segment (sent in this connection); False if it was a loopback duplicate copy
        (only a segment from a loopback link, counted in `doubling`, can be one: see Doubling)."""
        client = self.client
        if seg.sport == client[1] and seg.src == client[0]:
            side, peer = "C", "S"
        else:
            side, peer = "S", "C"
        segments = self.segments
        seq = seg.seq
        ack = seg.ack
        flags = seg.flags
        if seg.loopback and doubling is not None:  # a loopback duplicate copy? (see DUPLICATE_WINDOW)
            copy = False
            t = seg.t
            for prev in segments[-DUPLICATE_LOOKBACK:]:
                p = prev[3]
                if (
                    p.seq == seq
                    and p.ack == ack
                    and prev[0] == side
                    and t - p.t <= DUPLICATE_WINDOW
                    and p.flags == flags
                    and p.payload_len == seg.payload_len
                    and p.win == seg.win
                    and p.ip_id == seg.ip_id
                    and p.options == seg.options
                ):
                    copy = True
                    break
            if doubling.remove(copy):
                self.duplicates += 1
                return False
        base = self._base
        if flags & SYN:
            if side not in self._base_from_syn:
                base[side] = seq
                self._base_from_syn.add(side)
            if side == "C" and not flags & ACK and self._client_isn is None:
                self._client_isn = seq
        elif side not in base:
            base[side] = (seq - 1) % MOD
        if flags & ACK:
            if peer not in base:
                base[peer] = (ack - 1) % MOD
            segments.append(_new_rel(RelSegment, (side, (seq - base[side]) % MOD, (ack - base[peer]) % MOD, seg)))
        else:
            segments.append(_new_rel(RelSegment, (side, (seq - base[side]) % MOD, 0, seg)))
        # closing bookkeeping
        if flags & (RST | FIN):
            if flags & RST:
                self._rst = True
            if flags & FIN:
                self._fin_end[side] = (seq + seg.payload_len + (1 if flags & SYN else 0) + 1) % MOD
        if flags & ACK and self._fin_end:
            peer_fin = self._fin_end.get(peer)
            if peer_fin is not None and ((ack - peer_fin) % MOD) < HALF:  # seq_geq(ack, peer_fin)
                self._fin_acked.add(peer)
        return True

    def starts_anew(self, seg: Segment) -> bool:
        """Whether a SYN reusing this finished 4-tuple opens a new connection."""
        if not (seg.flags & SYN) or seg.flags & ACK or not self.finished:
            return False
        return self._client_isn is None or seg.seq != self._client_isn


def seq_geq(a: int, b: int) -> bool:
    """a >= b in sequence-number space (RFC 1982 serial arithmetic)."""
    return ((a - b) % MOD) < (1 << 31)


def _key(seg: Segment) -> tuple:
    a = (seg.src, seg.sport)
    b = (seg.dst, seg.dport)
    return (a, b) if a <= b else (b, a)


def _roles(seg: Segment) -> tuple[tuple[str, int], tuple[str, int]]:
    src, dst = (seg.src, seg.sport), (seg.dst, seg.dport)
    if seg.flags & SYN and seg.flags & ACK:
        return dst, src  # a SYN-ACK comes from the server
    return src, dst


def track(segments: Iterable[Segment], linger: float = LINGER, max_waiting: int | None = None) -> Iterator[Connection]:
    """Group segments into connections, yielded in order of their first packet.

    Identical copies are removed where the capture proves Linux lo's doubling (Doubling).
    Streaming: a connection is yielded once it and every connection that started before it
    are finished and `linger` seconds of capture time have passed, or at the end of input; or
    unfinished (`cut_short`) when more than `max_waiting` (MAX_WAITING) connections wait behind it.
    """
    max_waiting = MAX_WAITING if max_waiting is None else max_waiting
    # each open connection under both directions of its 4-tuple: one lookup, no sorting
    open_by_key: dict[tuple, Connection] = {}
    pending: deque[Connection] = deque()
    doubling = Doubling()
    count = 0
    for seg in segments:
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        conn = open_by_key.get(key)
        if conn is None or (seg.flags & SYN and conn.starts_anew(seg)):
            count += 1
            client, server = _roles(seg)
            conn = Connection(count, client, server)
            open_by_key[key] = conn
            open_by_key[(seg.dst, seg.dport, seg.src, seg.sport)] = conn
            pending.append(conn)
        conn.add(seg, doubling)
        # hand on finished connections from the head of the queue
        while pending:
            head = pending[0]
            if not (head._rst or len(head._fin_acked) == 2) or seg.t - head.segments[-1][3].t < linger:
                if len(pending) <= max_waiting:
                    break
                head.cut_short = not (head._rst or len(head._fin_acked) == 2)
            pending.popleft()
            first = head.segments[0][3]
            for k in ((first.src, first.sport, first.dst, first.dport), (first.dst, first.dport, first.src, first.sport)):
                if open_by_key.get(k) is head:
                    del open_by_key[k]
            yield head
    yield from pending
