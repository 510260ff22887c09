"""Rebuild TCP connections from segments: roles, Wireshark's relative numbers, loopback duplicates removed."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .model import ACK, FIN, RST, SYN, Segment

MOD = 1 << 32

# Linux `lo` hands a raw-socket sniffer every packet twice (the outgoing copy and the incoming
# one), microseconds apart. A copy is identical to the original in every header field; a real
# retransmission is at least an RTO (>= 200 ms on Linux, >= 10 ms for a tail-loss probe) later.
DUPLICATE_WINDOW = 0.001
DUPLICATE_LOOKBACK = 4

# A finished connection (RST seen, or both FINs seen and the last one ACKed) is handed on once
# capture time has moved this far past its last packet: late retransmissions, final ACKs or a
# SYN retried after a RST still land in it, and memory stays bounded on long captures.
LINGER = 2.0


@dataclass(frozen=True, slots=True)
class RelSegment:
    """A segment of a connection, seen from the connection: its side and relative seq/ack."""

    side: str  # "C" (sent by the client) or "S"
    seq: int  # relative, as Wireshark computes it
    ack: int  # relative; 0 when the ACK flag is not set
    segment: Segment

    @property
    def flags(self) -> int:
        return self.segment.flags

    @property
    def length(self) -> int:
        return self.segment.payload_len

    @property
    def t(self) -> float:
        return self.segment.t


@dataclass(slots=True)
class Connection:
    """One TCP connection: who is client and server, and its segments in capture order."""

    index: int  # 1-based, in order of first packet
    client: tuple[str, int]
    server: tuple[str, int]
    segments: list[RelSegment] = field(default_factory=list)
    duplicates: int = 0  # loopback duplicate copies removed
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

    def add(self, seg: Segment) -> bool:
        """Add a segment (sent in this connection); False if it was a loopback duplicate copy."""
        side = "C" if (seg.src, seg.sport) == self.client else "S"
        if self._is_duplicate(seg, side):
            self.duplicates += 1
            return False
        peer = "S" if side == "C" else "C"
        flags = seg.flags
        if flags & SYN:
            if side not in self._base_from_syn:
                self._base[side] = seg.seq
                self._base_from_syn.add(side)
            if side == "C" and not flags & ACK and self._client_isn is None:
                self._client_isn = seg.seq
        elif side not in self._base:
            self._base[side] = (seg.seq - 1) % MOD
        if flags & ACK and peer not in self._base:
            self._base[peer] = (seg.ack - 1) % MOD
        rel_seq = (seg.seq - self._base[side]) % MOD
        rel_ack = (seg.ack - self._base[peer]) % MOD if flags & ACK else 0
        self.segments.append(RelSegment(side, rel_seq, rel_ack, seg))
        # closing bookkeeping
        if flags & RST:
            self._rst = True
        if flags & FIN:
            self._fin_end[side] = (seg.seq + seg.payload_len + (1 if flags & SYN else 0) + 1) % MOD
        peer_fin = self._fin_end.get(peer)
        if flags & ACK and peer_fin is not None and seq_geq(seg.ack, peer_fin):
            self._fin_acked.add(peer)
        return True

    def _is_duplicate(self, seg: Segment, side: str) -> bool:
        for prev in self.segments[-DUPLICATE_LOOKBACK:]:
            p = prev.segment
            if (
                prev.side == side
                and seg.t - p.t <= DUPLICATE_WINDOW
                and p.seq == seg.seq
                and p.ack == seg.ack
                and p.flags == seg.flags
                and p.payload_len == seg.payload_len
                and p.win == seg.win
                and p.ip_id == seg.ip_id
                and p.options == seg.options
            ):
                return True
        return False

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


def track(segments: Iterable[Segment], linger: float = LINGER) -> Iterator[Connection]:
    """Group segments into connections, yielded in order of their first packet.

    Streaming: a connection is yielded once it and every connection that started before it
    are finished and `linger` seconds of capture time have passed, or at the end of input.
    """
    open_by_key: dict[tuple, Connection] = {}
    pending: OrderedDict[int, Connection] = OrderedDict()
    count = 0
    for seg in segments:
        key = _key(seg)
        conn = open_by_key.get(key)
        if conn is not None and conn.starts_anew(seg):
            conn = None
        if conn is None:
            count += 1
            client, server = _roles(seg)
            conn = Connection(count, client, server)
            open_by_key[key] = conn
            pending[count] = conn
        conn.add(seg)
        # hand on finished connections from the head of the queue
        while pending:
            head = next(iter(pending.values()))
            if not head.finished or seg.t - head.last_t < linger:
                break
            pending.popitem(last=False)
            if open_by_key.get(_key(head.segments[0].segment)) is head:
                del open_by_key[_key(head.segments[0].segment)]
            yield head
    yield from pending.values()
