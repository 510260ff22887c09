"""What `verifier show` reports about a capture: its connections as transcript text and as JSON records."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from . import capture, decode
from .classify import summary
from . import connections
from .connections import (DOUBLING_SLACK, DOUBLING_WHY, DUPLICATE_LOOKBACK, DUPLICATE_WINDOW, LINGER, Connection,
                          RelSegment, track)
from .model import CaptureInfo, Frame, Segment
from . import analysis
from .analysis import Analyzer
from .analysis import names as label_names
from .transcript import SegmentLine, flags_text, options_text
from .zeek import LIKELY_SERVER_PORT_BITS, UNTIMED_SPAN

try:  # the same loop compiled (setup.py builds it when a C compiler is there; see _showloop.c)
    from . import _showloop
except ImportError:
    _showloop = None


@dataclass(slots=True)
class CaptureStats:
    packets: int = 0
    tcp: int = 0
    other: int = 0  # packets that are not TCP (counted, not errors)
    duplicates: int = 0  # loopback duplicate copies removed
    cut_short: int = 0  # connections handed on unfinished (connections.MAX_WAITING)
    skipped: dict = field(default_factory=dict)  # frames skipped with a warning: reason -> [count, first frame]


@dataclass(slots=True)
class CaptureReading:
    """A capture being read: connections come out of `connections()`, then stats/info are final."""

    stream: BinaryIO
    info: CaptureInfo = field(default_factory=CaptureInfo)
    stats: CaptureStats = field(default_factory=CaptureStats)

    def segments(self):
        """Every TCP segment, in capture order, with Wireshark's analysis labels (`analysis`):
        computed on every segment, loopback copies included, as Wireshark sees them."""
        stats = self.stats
        packets = tcp = 0
        labels = Analyzer().labels
        try:
            records = (r for r in capture.read_records(self.stream, self.info) if r is not capture.PAUSE)
            for seg in decode.segments(records, stats.skipped):
                packets += 1
                if seg is not None:
                    tcp += 1
                    seg.analysis = labels(seg)
                    yield seg
        finally:  # counted in locals (faster), published however the reading ends
            stats.packets += packets
            stats.tcp += tcp
            stats.other += packets - tcp

    def connections(self) -> Iterator[Connection]:
        for conn in track(self.segments(), max_waiting=connections.MAX_WAITING):
            self.stats.duplicates += conn.duplicates
            self.stats.cut_short += conn.cut_short
            yield conn

    def connections_json(self, linger: float = LINGER) -> Iterator[str]:
        """`connection_json(conn)` for each of `connections()`, the same texts in the same order, stats
        and info the same after it: from the compiled loop (one loop, no object per packet) when it
        is built, else from the objects (the slow path: `compiled` says which)."""
        if _showloop is not None:
            return _compiled_texts(self, linger, _Hooks)
        return (connection_json(conn) for conn in self.connections())

    def connection_texts(self, verbose: bool = False, linger: float = LINGER) -> Iterator[str]:
        """`connection_text(conn, verbose)` for each of `connections()`, stats and info the same after
        it: from the compiled loop when it is built, else from the objects."""
        if _showloop is not None:
            return _compiled_texts(self, linger, _VerboseTranscriptHooks if verbose else _TranscriptHooks)
        return (connection_text(conn, verbose=verbose) for conn in self.connections())

    def warnings(self) -> list[str]:
        out = list(self.info.warnings)
        if self.stats.duplicates:
            out.append(f"removed {self.stats.duplicates} duplicate copies of segments, because {DOUBLING_WHY}")
        if self.stats.cut_short:
            out.append(f"{self.stats.cut_short} connection{'s' if self.stats.cut_short > 1 else ''} handed on unfinished: "
                       f"more than {connections.MAX_WAITING} later connections were waiting behind "
                       f"{'each' if self.stats.cut_short > 1 else 'it'} (a later packet of its 4-tuple starts a new connection)")
        for reason, (count, first) in self.stats.skipped.items():
            out.append(f"skipped {count} frame{'s' if count > 1 else ''} with {reason} (the first: frame {first})")
        return out


def endpoint_text(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def segment_line(rel: RelSegment, t0: float | None = None, connection: int | None = None,
                 verbose: bool = False) -> SegmentLine:
    seg = rel.segment
    return SegmentLine(
        side=rel.side,
        flags=seg.flags,
        seq=rel.seq,
        length=seg.payload_len,
        ack=rel.ack,
        connection=connection,
        t=None if t0 is None else seg.t - t0,
        win=seg.win if verbose else None,
        tos=seg.tos if verbose else None,
        options=(options_text(seg.options) or None) if verbose else None,
        analysis=seg.analysis,
    )


def connection_header(conn: Connection, facts: dict | None = None) -> str:
    return f"connection {conn.index}: {endpoint_text(*conn.client)} > {endpoint_text(*conn.server)}{_facts_line(facts or summary(conn))}"


def _facts_line(facts: dict) -> str:
    return f"  outcome {facts['outcome']}  fin_ack {facts['fin_ack'] or '-'}  zeek {facts['zeek_state']}"


def connection_text(conn: Connection, verbose: bool = False) -> str:
    t0 = conn.segments[0].t if conn.segments else 0.0
    lines = [connection_header(conn)]
    lines += [segment_line(s, t0, verbose=verbose).text() for s in conn.segments]
    return "\n".join(lines)


def connection_record(conn: Connection) -> dict:
    """The JSON shape of DESIGN.md's contract (plus extra keys)."""
    record = {
        "client": endpoint_text(*conn.client),
        "server": endpoint_text(*conn.server),
        **summary(conn),
        "index": conn.index,
        "segments": [
            {
                "t": s.segment.t,
                "from": "client" if s.side == "C" else "server",
                "flags": flags_text(s.flags),
                "seq": s.seq,
                "ack": s.ack,
                "len": s.length,
                "frame": s.segment.index,
                "win": s.segment.win,
                "analysis": list(s.segment.analysis),
            }
            for s in conn.segments
        ],
    }
    return record


# %s of an int (or a finite float) is its JSON text; t's %r too
_SEGMENT_JSON = ('{"t": %r, "from": "%s", "flags": "%s", "seq": %s, "ack": %s, "len": %s, "frame": %s, "win": %s, '
                 '"analysis": [%s]}')
_FROM = {"C": "client", "S": "server"}
_flags_cache: dict[int, str] = {}


def connection_json(conn: Connection, facts: dict | None = None) -> str:
    """`json.dumps(connection_record(conn))`, the same text, built without the records (for big files)."""
    facts = facts or summary(conn)
    flags_cache = _flags_cache
    fmt = _SEGMENT_JSON
    sides = _FROM
    parts = []
    append = parts.append
    for side, seq, ack, seg in conn.segments:
        flags = seg.flags
        text = flags_cache.get(flags)
        if text is None:
            text = flags_text(flags)
            if len(flags_cache) < 4096:
                flags_cache[flags] = text
        t = seg.t
        if t - t:  # inf or nan: json writes Infinity/NaN (an int's text is the same as %r's)
            return json.dumps(connection_record(conn))
        labels = seg.analysis
        append(fmt % (t, sides[side], text, seq, ack, seg.payload_len, seg.index, seg.win,
                      ", ".join(['"%s"' % label for label in labels]) if labels else ""))
    dumps = json.dumps
    return (
        f'{{"client": {dumps(endpoint_text(*conn.client))}, "server": {dumps(endpoint_text(*conn.server))}, '
        f'"outcome": {dumps(facts["outcome"])}, "fin_ack": {dumps(facts["fin_ack"])}, '
        f'"zeek_state": {dumps(facts["zeek_state"])}, "zeek": {dumps(facts["zeek"])}, "index": {conn.index}, '
        f'"segments": [{", ".join(parts)}]}}'
    )


# --- the compiled loop ------------------------------------------------------------------------
# connections() makes a Segment and a RelSegment per packet and connection_json formats every
# segment on its own: the reference, and the slow path. `show` takes the compiled loop
# (_showloop.c) when it is built: one loop that does the same work on plain structs —
# - decode: the common link types with IPv4/IPv6 + TCP, inline; anything else is decoded by
#   decode.decode (the `decoded` hook); TCP options are kept raw;
# - analysis: wire.analysis's rules, step for step, on every packet (its own conversations);
# - tracking: track() and Connection.add's rules, step for step (roles, bases, relative numbers,
#   duplicates where Doubling proves them, reuse of a finished 4-tuple, hand-on after LINGER);
# - facts and text, memoised by the connection's *shape* (per segment: side, relative seq and ack,
#   flags, length, analysis labels, whether the window is zero; and the ports' zeek.port_class).
#   classify reads nothing else of a segment but frame order (the list order) and capture times
#   (Zeek's timers: only when the packets span zeek.UNTIMED_SPAN or more), and compares raw
#   numbers only with seq_geq between numbers of one side's sequence space, so its verdict is a
#   function of the shape while each side's base stays put (a SYN after other segments of its
#   side moves it: such connections are classified from real objects, as are long ones and ones
#   that span timers' time).
# What is rare it asks of the hooks below (a connection comes to them as _Conn's fields in a tuple).
# tests/test_show.py pins its texts to the object path's on every capture we have.

SHAPE_MAX_SEGMENTS = 32  # longer connections are classified and formatted one by one
SHAPE_MEMO_MAX = 1024  # shapes remembered (cleared when full: memory stays bounded)


class _Conn:
    """A connection of the compiled loop handed to a hook (what Connection holds, in plain slots)."""

    __slots__ = ("index", "client", "server", "caddr", "cport", "segs", "keys", "base", "syn", "fin", "acked",
                 "client_isn", "rst", "duplicates", "moved")

    def __init__(self, index, client, server, keys):
        self.index = index
        self.client = client  # (address as packed bytes, port): the text only when it is handed on
        self.server = server
        self.caddr, self.cport = client
        # per segment: (side, rel seq, rel ack, flags, len, t, frame, win, seq, ack, ip_id, options,
        # comment, analysis bits, tos)
        self.segs = []
        self.keys = keys
        # per side, [client, server]: the base of its relative numbers, whether that is its SYN's,
        # the sequence number just after its FIN, whether the peer ACKed that FIN
        self.base = [None, None]
        self.syn = [False, False]
        self.fin = [None, None]
        self.acked = [False, False]
        self.client_isn = None
        self.rst = self.moved = False
        self.duplicates = 0

    def finished(self) -> bool:
        return self.rst or (self.acked[0] and self.acked[1])


def _parsed_options(options) -> tuple:
    return options if options.__class__ is tuple else decode._options(options, 0, len(options))


def _same_options(a, b) -> bool:
    if a == b:
        return True
    if a.__class__ is tuple and b.__class__ is tuple:
        return False
    return _parsed_options(a) == _parsed_options(b)


def _connection(c: _Conn) -> Connection:
    """The real Connection of a fast-path connection (Segments, RelSegments, bookkeeping)."""
    (caddr, cport), (saddr, sport) = client, server = _text_endpoint(c.client), _text_endpoint(c.server)
    conn = Connection(c.index, client, server)
    family = 6 if ":" in caddr else 4
    out = conn.segments
    for side, rseq, rack, flags, length, t, index, win, seq, ack, ip_id, options, comment, bits, tos in c.segs:
        if side == "C":
            seg = Segment(index, t, family, caddr, cport, saddr, sport, seq, ack, flags, win, length,
                          _parsed_options(options), ip_id, comment, analysis=label_names(bits), tos=tos)
        else:
            seg = Segment(index, t, family, saddr, sport, caddr, cport, seq, ack, flags, win, length,
                          _parsed_options(options), ip_id, comment, analysis=label_names(bits), tos=tos)
        out.append(RelSegment(side, rseq, rack, seg))
    conn.duplicates = c.duplicates
    conn._base = {k: v for k, v in zip("CS", c.base) if v is not None}
    conn._base_from_syn = {k for k, v in zip("CS", c.syn) if v}
    conn._client_isn = c.client_isn
    conn._fin_end = {k: v for k, v in zip("CS", c.fin) if v is not None}
    conn._fin_acked = {k for k, v in zip("CS", c.acked) if v}
    conn._rst = c.rst
    return conn


def _text_endpoint(endpoint: tuple[bytes, int]) -> tuple[str, int]:
    raw, port = endpoint
    return decode._addr_cache.get(raw) or decode._addr(raw), port


_packed_cache: dict[str, bytes] = {}


def _packed(address: str) -> bytes:
    """The packed bytes of an address text as decode writes it (the inverse of decode._addr)."""
    raw = _packed_cache.get(address)
    if raw is None:
        if len(_packed_cache) >= 65536:
            _packed_cache.clear()
        raw = _packed_cache[address] = ipaddress.ip_address(address).packed
    return raw


def _facts_text(c: _Conn) -> str:
    """The part of a connection's JSON between the server and the index's value."""
    facts = summary(_connection(c))
    return (f'"outcome": {json.dumps(facts["outcome"])}, "fin_ack": {json.dumps(facts["fin_ack"])}, '
            f'"zeek_state": {json.dumps(facts["zeek_state"])}, "zeek": {json.dumps(facts["zeek"])}, "index": ')


def _decoded(r: tuple, skipped: dict | None = None) -> tuple | None:
    """decode.decode of a record the fast path does not take, as the loop's fields (addresses packed)."""
    seg = decode.decode(Frame(r[0], r[1], r[2], r[3][r[4] : r[5]], r[6], r[7], r[8], r[9]), skipped)
    if seg is None:
        return None
    return (_packed(seg.src), seg.sport, _packed(seg.dst), seg.dport, seg.seq, seg.ack, seg.flags, seg.win,
            seg.payload_len, seg.options, seg.ip_id, seg.loopback, seg.tos)


def _conn_of(state: tuple) -> _Conn:
    index, client, server, segs, *rest = state
    c = _Conn(index, client, server, ())
    c.segs = segs
    (base_c, base_s, syn_c, syn_s, c.client_isn, fin_c, fin_s, acked_c, acked_s, c.rst, c.duplicates, c.moved) = rest
    c.base, c.syn, c.fin, c.acked = [base_c, base_s], [syn_c, syn_s], [fin_c, fin_s], [acked_c, acked_s]
    return c


class _Hooks:
    """For connection_json's texts."""

    transcript = verbose = False
    decoded = staticmethod(_decoded)
    conn_text = staticmethod(lambda state: connection_json(_connection(_conn_of(state))))
    facts_text = staticmethod(lambda state: _facts_text(_conn_of(state)))
    addr_text = staticmethod(decode._addr)
    flags_text = staticmethod(flags_text)
    same_options = staticmethod(_same_options)
    options_text = staticmethod(lambda options: options_text(_parsed_options(options)))


class _TranscriptHooks(_Hooks):
    """For connection_text's texts (not verbose)."""

    transcript = True
    conn_text = staticmethod(lambda state: connection_text(_connection(_conn_of(state))))
    facts_text = staticmethod(lambda state: _facts_line(summary(_connection(_conn_of(state)))))


class _VerboseTranscriptHooks(_TranscriptHooks):
    """For connection_text(conn, verbose=True)'s texts (window and options too)."""

    verbose = True
    conn_text = staticmethod(lambda state: connection_text(_connection(_conn_of(state)), verbose=True))


def _compiled_texts(reading: CaptureReading, linger: float, hooks: type[_Hooks]) -> Iterator[str]:
    skipped = reading.stats.skipped
    bound = hooks()  # this reading's: frames decode skips with a warning are counted in its stats
    bound.decoded = lambda record: _decoded(record, skipped)
    loop = _showloop.Loop(capture.read_records(reading.stream, reading.info), linger, DUPLICATE_WINDOW,
                          DUPLICATE_LOOKBACK, SHAPE_MAX_SEGMENTS, SHAPE_MEMO_MAX, bound, transcript=hooks.transcript,
                          verbose=hooks.verbose, slack=DOUBLING_SLACK,
                          server_ports=LIKELY_SERVER_PORT_BITS, untimed_span=UNTIMED_SPAN,
                          analysis=(analysis.FORGET_AFTER, analysis.CLOSED_FORGET_AFTER, analysis.BASES_MAX, analysis.MAX_UNACKED,
                                    analysis.FAST_RETRANSMISSION_NS, analysis.OUT_OF_ORDER_NS),
                          max_waiting=connections.MAX_WAITING)
    try:
        yield from loop
    finally:  # as segments(): published however the reading ends
        packets, tcp, duplicates, cut_short = loop.counts()
        stats = reading.stats
        stats.packets += packets
        stats.tcp += tcp
        stats.other += packets - tcp
        stats.duplicates += duplicates
        stats.cut_short += cut_short
