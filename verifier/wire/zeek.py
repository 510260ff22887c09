"""Zeek's view of a connection: its conn.log records (originator, conn_state, history) by Zeek's own rules.

Zeek and Wireshark cut a 4-tuple's packets into connections differently. Wireshark keeps one
stream unless a new SYN (with a new ISN) reuses a finished one; Zeek also starts a new connection
when a SYN arrives after either side closed (FIN or RST), when a SYN with another ISN arrives on a
live connection, and when one of its timers has removed the connection (a packet after that
starts afresh: five seconds after a close or a reset, five seconds after an unanswered SYN, ...).
verifier keeps both truths: its connections stay Wireshark's (the tshark oracle stays exact), and
`records(conn)` replays that connection's packets through Zeek's TCP analyzer, giving the Zeek
records they form, in order: [`ZeekRecord`(orig, resp, conn_state, history, first, last)].
`zeek_state(conn)` is the conn_state of the record holding the connection's first packet.

What is replayed (zeek/zeek: src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc, TCP.cc,
src/analyzer/protocol/tcp/TCP_Endpoint.cc, scripts/base/protocols/conn/main.zeek), each a table
or a small function below:
- the endpoint state machine (INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED,
  RESET) and which packets close an endpoint (`did_close`): `TRANSITIONS`;
- connection reuse (`is_reuse`), and roles: a connection that does not start with a pure SYN is
  flipped when its source port is a likely server port (`LIKELY_SERVER_PORTS`, the TCP ports Zeek's
  base protocol scripts register), a SYN-ACK seen before its SYN is flipped back;
- the timers that remove a connection (`TIMERS`, Zeek's defaults), fired by capture time before
  each packet as Zeek does;
- the history letters S H A D F R T W I Q ^ (not C: checksums are not checked, as with `zeek -C`;
  not G or X: content gaps and analyzer limits need reassembly);
- conn_state from the final endpoint states, sizes and history (`CONN_STATE_RULES`).

Each Wireshark connection is replayed on its own (a Zeek connection spanning two Wireshark
connections of one 4-tuple is cut where Wireshark cuts). Pure: segments in, records out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .connections import Connection
from .model import ACK, FIN, RST, SYN

MOD = 1 << 32
TOO_LARGE_SEQ_DELTA = 1048576

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = (
    "INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET",
)

# Zeek's defaults (scripts/base/init-bare.zeek), seconds
TIMERS = {
    "tcp_SYN_timeout": 5.0,  # first look at a new connection's activity
    "tcp_session_timer": 6.0,  # then again every this long
    "tcp_connection_linger": 5.0,  # idle this long after a close: the connection is over
    "tcp_attempt_delay": 5.0,  # an unanswered SYN is an attempt this long after it
    "tcp_close_delay": 5.0,  # a connection closed by both sides (or reset) is removed this long after
    "tcp_partial_close_delay": 3.0,  # ... closed by a side never seen before
    "tcp_reset_delay": 5.0,  # a RST after a FIN
    "udp_inactivity_timeout": 60.0,  # no packet this long, during the handshake (sic: Zeek's TCP uses it)
    "tcp_inactivity_timeout": 300.0,  # no packet this long, once an endpoint left the handshake
}
HANDSHAKE = (INACTIVE, SYN_SENT, SYN_ACK_SENT)
# The shortest timer: a connection whose packets all fall within it is never cut by time.
MIN_TIMER = min(TIMERS.values())

# The TCP ports Zeek's base protocol scripts add to likely_server_ports (`redef
# likely_server_ports += { ports }`; imap and pop3 register their ports for analysis but not
# here): a connection first seen without a SYN (or with a SYN-ACK) from such a port is flipped,
# the port's side becoming the responder. This is plain `zeek -r`; `zeek -b` (bare mode) loads
# only the scripts named, so it flips less.
LIKELY_SERVER_PORTS = frozenset({
    21, 2811,  # ftp
    22,  # ssh
    25, 587,  # smtp
    53,  # dns
    80, 81, 631, 1080, 3128, 8000, 8080, 8888,  # http (1080: socks too)
    88, 750,  # krb
    135,  # dce-rpc
    139, 445,  # smb
    389, 3268,  # ldap
    443, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223,  # ssl
    502,  # modbus
    1434, 3306,  # mysql
    3389,  # rdp
    5222, 5269,  # xmpp
    5432,  # postgresql
    6379,  # redis
    6666, 6667, 6668, 6669,  # irc
    20000,  # dnp3
})



# --- what a record depends on beyond a connection's shape ------------------------------------------
# show memoises a connection's facts by its shape (per segment: side, relative seq and ack, flags,
# length). Zeek's records also depend on: the ports (a flip), only through `port_class`; a zero
# window (history 'W'); capture times, only when the packets span UNTIMED_SPAN or more (a timer
# can fire between them; the margin keeps float rounding out of it).
UNTIMED_SPAN = MIN_TIMER - 0.001


def port_class(client_port: int, server_port: int) -> int:
    """All `records` needs to know of a connection's ports, as a small number."""
    c, s = client_port in LIKELY_SERVER_PORTS, server_port in LIKELY_SERVER_PORTS
    both = 4 * (client_port < server_port) + 8 * (server_port < client_port) if c and s else 0
    return c + 2 * s + both


# LIKELY_SERVER_PORTS as a bitmap (bit p % 8 of byte p // 8), for the compiled loop
LIKELY_SERVER_PORT_BITS = bytes(
    sum(1 << b for b in range(8) if 8 * i + b in LIKELY_SERVER_PORTS) for i in range(8192)
)


def seq_delta(a: int, b: int) -> int:
    """a - b in sequence space, as a signed 32-bit number (Zeek's seq_delta)."""
    d = (a - b) % MOD
    return d - MOD if d >= 1 << 31 else d


@dataclass
class Endpoint:
    """One side of a Zeek connection (Zeek's TCP_Endpoint, the parts conn.log depends on)."""

    is_orig: bool
    state: str = INACTIVE
    prev_state: str = INACTIVE
    start_seq: int = 0
    last_seq: int = 0
    ack_seq: int = 0
    did_close: bool = False
    fin_cnt: int = 0
    hist_last: dict = field(default_factory=dict)  # "S"/"F"/"R" -> relative seq last seen
    scaled: dict = field(default_factory=dict)  # "T"/"W" -> [count, threshold]

    def init_seqs(self, start: int, last: int) -> None:
        self.start_seq = self.ack_seq = start % MOD
        self.last_seq = last % MOD

    def size(self, peer: Endpoint) -> int:
        """Bytes this endpoint sent (Zeek's TCP_Endpoint::Size)."""
        if (self.prev_state == SYN_SENT and self.state == RESET and peer.state == INACTIVE
                and seq_delta(self.ack_seq, self.start_seq) not in (0, 1)):
            return 0  # a half-open connection found and aborted: its sequence numbers mean nothing
        size = max(seq_delta(self.last_seq, self.start_seq), seq_delta(self.ack_seq, self.start_seq), 0)
        if size:
            size -= 1
        if self.fin_cnt and size:
            size -= 1
        return size


@dataclass
class ZeekRecord:
    """One Zeek connection (a conn.log row): its originator's side ("C" or "S" of the Wireshark
    connection), conn_state, history, and the indexes of its first and last segment."""

    orig_side: str
    conn_state: str
    history: str
    first: int
    last: int


class _Conn:
    """A Zeek connection being replayed."""

    def __init__(self, orig_side: str, t: float, first: int):
        self.orig_side = orig_side
        self.orig = Endpoint(True)
        self.resp = Endpoint(False)
        self.history = ""
        self.hist_seen: set = set()
        self.first = self.last = first
        self.start_time = self.last_time = t
        self.timers: list[tuple[float, str]] = []
        self.inactivity_timeout = TIMERS["udp_inactivity_timeout"]
        self.add_timer(t + TIMERS["tcp_SYN_timeout"], "expire")
        self.add_timer(t + self.inactivity_timeout, "inactivity")

    # -- bookkeeping
    def add_timer(self, when: float, kind: str) -> None:
        self.timers.append((when, kind))

    def add_history(self, code: str) -> None:
        self.history += code

    def check_history(self, endpoint: Endpoint, kind: str, code: str) -> bool:
        """Zeek's CheckHistory: the first packet of a kind from a side adds its letter; True if
        that kind was seen before from that side."""
        key = (endpoint.is_orig, kind)
        if key in self.hist_seen:
            return True
        self.hist_seen.add(key)
        self.add_history(code if endpoint.is_orig else code.lower())
        return False

    def scaled_history(self, endpoint: Endpoint, code: str) -> None:
        """'T' and 'W': once, then at the 10th, 100th, ... time."""
        count = endpoint.scaled.setdefault(code, [0, 1])
        count[0] += 1
        if count[0] == count[1]:
            self.add_history(code if endpoint.is_orig else code.lower())
            count[1] *= 10

    def is_closed(self) -> bool:
        return self.orig.did_close or self.resp.did_close

    def set_state(self, endpoint: Endpoint, peer: Endpoint, state: str) -> None:
        """TCP_Endpoint::SetState: the first endpoint to leave the handshake (both were in it)
        moves the connection from the handshake's inactivity timeout to TCP's."""
        if state == endpoint.state:
            return
        if state not in HANDSHAKE and endpoint.state in HANDSHAKE and peer.state in HANDSHAKE:
            self.inactivity_timeout = TIMERS["tcp_inactivity_timeout"]
            self.timers = [(w, k) for w, k in self.timers if k != "inactivity"]
            self.add_timer(self.last_time + self.inactivity_timeout, "inactivity")
        endpoint.prev_state, endpoint.state = endpoint.state, state

    def flip(self) -> None:
        self.orig_side = "S" if self.orig_side == "C" else "C"
        self.orig, self.resp = self.resp, self.orig
        self.orig.is_orig, self.resp.is_orig = True, False
        self.add_history("^")

    def endpoint_of(self, side: str) -> tuple[Endpoint, Endpoint]:
        return (self.orig, self.resp) if side == self.orig_side else (self.resp, self.orig)

    # -- timers (TCPSessionAdapter's *Timer methods and Connection::InactivityTimer):
    # each says whether the connection is removed; some schedule another timer
    def fire(self, when: float, kind: str) -> bool:
        return TIMER_RULES[kind](self, when)

    def due(self, t: float) -> bool:
        """Fire every timer due by time t, in time order, each at time t (TimerMgr::DoAdvance dispatches
        with the new network time: a timer that reschedules itself fires once, not once per interval
        of a gap); True if one removed the connection."""
        while self.timers:
            self.timers.sort()
            when, kind = self.timers[0]
            if when > t:
                return False
            self.timers.pop(0)
            if self.fire(t, kind):
                return True
        return False

    def record(self) -> ZeekRecord:
        return ZeekRecord(self.orig_side, conn_state(self), self.history, self.first, self.last)


def _expire(c: _Conn, t: float) -> bool:
    o, r = c.orig, c.resp
    if c.last_time + TIMERS["tcp_connection_linger"] < t:
        if o.did_close or r.did_close:
            if (o.did_close and r.did_close) or RESET in (o.state, r.state) or INACTIVE in (o.state, r.state):
                return True
        if r.state == INACTIVE and o.state == INACTIVE:
            return True
    c.add_timer(t + TIMERS["tcp_session_timer"], "expire")
    return False


def _attempt(c: _Conn, t: float) -> bool:
    return c.orig.state in (SYN_SENT, SYN_ACK_SENT) and c.resp.state == INACTIVE


def _partial_close(c: _Conn, t: float) -> bool:
    o, r = c.orig, c.resp
    if o.state != INACTIVE and r.state != INACTIVE and not (o.did_close and r.did_close):
        return RESET not in (o.state, r.state)
    return False


def _inactivity(c: _Conn, t: float) -> bool:
    if c.last_time + c.inactivity_timeout <= t:
        return True
    c.add_timer(c.last_time + c.inactivity_timeout, "inactivity")
    return False


TIMER_RULES = {
    "expire": _expire,
    "attempt": _attempt,
    "partial_close": _partial_close,
    "inactivity": _inactivity,
    "delete": lambda c, t: True,  # close_delay after a full close, reset_delay after FIN then RST
}


# --- the endpoint state machine -----------------------------------------------------------------
# TRANSITIONS[state of the sending endpoint at the packet] lists rules in Zeek's order
# (TCPSessionAdapter::Update*State), each (guard, endpoint's next state or None, peer's next state
# or None, effects). Every rule whose guard holds applies, in order, guards reading the states as
# the rules before left them (a SYN+FIN from an inactive originator is a SYN, then a FIN), except
# within a group (GROUPS: Zeek's if/else chains), where only the first rule that holds applies.
# Effects: "close" (the endpoint closes: FIN or RST), "close_if_open" (closes unless it already
# did), "attempt" (start the attempt timer), "flip" (SYN-ACK captured before its SYN: swap roles),
# "reset_timer" (a RST after the endpoint's FIN).

TRANSITIONS = {
    INACTIVE: (
        ("orig_synack", SYN_ACK_SENT, None, ("attempt",)),
        ("orig_syn", SYN_SENT, None, ("attempt",)),
        ("resp_syn_reversal", ESTABLISHED, ESTABLISHED, ("flip",)),
        ("resp_syn_to_syn_sent", ESTABLISHED, ESTABLISHED, ()),
        ("resp_syn", ESTABLISHED, None, ()),
        ("fin", CLOSED, None, ("close",)),
        ("rst", RESET, None, ("close",)),
        ("inactive_ack_of_syn", None, None, ()),
        ("inactive_ack_after_synack", ESTABLISHED, None, ()),
        ("still_inactive", PARTIAL, None, ()),
    ),
    SYN_SENT: (
        ("fin", CLOSED, None, ("close",)),
        ("rst", RESET, None, ("close",)),
    ),
    ESTABLISHED: (
        ("syn_after_partial", SYN_SENT, None, ()),
        ("fin_not_rst", CLOSED, None, ("close",)),
        ("fin_after_peer_fin_then_rst", None, CLOSED, ()),
        ("rst", RESET, None, ("close",)),
    ),
    CLOSED: (
        ("rst_peer_not_closed", RESET, None, ("close_if_open", "reset_timer")),
    ),
    RESET: (),
}
TRANSITIONS[SYN_ACK_SENT] = TRANSITIONS[SYN_SENT]
TRANSITIONS[PARTIAL] = TRANSITIONS[ESTABLISHED]
GROUPS = (
    frozenset({"orig_synack", "orig_syn", "resp_syn_reversal", "resp_syn_to_syn_sent", "resp_syn"}),
    frozenset({"inactive_ack_of_syn", "inactive_ack_after_synack", "still_inactive"}),
)


@dataclass(frozen=True)
class _Packet:
    is_orig: bool
    flags: int
    seq: int
    ack: int
    length: int


GUARDS = {
    "orig_synack": lambda p, me, peer: p.is_orig and p.flags & SYN and p.flags & ACK,
    "orig_syn": lambda p, me, peer: p.is_orig and p.flags & SYN,
    # a responder's SYN answering the originator's SYN-ACK with the ISN that SYN-ACK acked: the
    # two were captured in reverse order
    "resp_syn_reversal": lambda p, me, peer: (not p.is_orig and p.flags & SYN and not p.flags & ACK
                                              and peer.state == SYN_ACK_SENT and p.seq == me.start_seq),
    "resp_syn_to_syn_sent": lambda p, me, peer: not p.is_orig and p.flags & SYN and peer.state == SYN_SENT,
    "resp_syn": lambda p, me, peer: not p.is_orig and p.flags & SYN,
    "fin": lambda p, me, peer: p.flags & FIN,
    "rst": lambda p, me, peer: p.flags & RST,
    # an endpoint that no control flag moved: a responder's bare ACK of the SYN stays inactive;
    # an ACK after the peer's SYN-ACK completes a handshake whose SYN was missed; else partial
    "inactive_ack_of_syn": lambda p, me, peer: (me.state == INACTIVE and not p.is_orig and p.length == 0
                                                and peer.state == SYN_SENT),
    "inactive_ack_after_synack": lambda p, me, peer: (me.state == INACTIVE and p.flags & ACK
                                                      and peer.state == ESTABLISHED),
    "still_inactive": lambda p, me, peer: me.state == INACTIVE,
    "syn_after_partial": lambda p, me, peer: (p.flags & SYN and not p.flags & ACK and me.state == PARTIAL
                                              and peer.state == INACTIVE),
    "fin_not_rst": lambda p, me, peer: p.flags & FIN and not p.flags & RST,
    # the peer sent a FIN, then a RST: that was a normal close after all
    "fin_after_peer_fin_then_rst": lambda p, me, peer: (p.flags & FIN and not p.flags & RST and peer.state == RESET
                                                        and peer.prev_state == CLOSED),
    "rst_peer_not_closed": lambda p, me, peer: p.flags & RST and peer.state != CLOSED,
}


def _step(c: _Conn, p: _Packet, me: Endpoint, peer: Endpoint, t: float) -> bool:
    """The state machine for one packet from `me`; True if `me` closes (Zeek's do_close)."""
    do_close = False
    done_groups: set = set()
    for guard, mine, theirs, effects in TRANSITIONS[me.state]:
        group = next((g for g in GROUPS if guard in g), None)
        if group in done_groups or not GUARDS[guard](p, me, peer):
            continue
        if group is not None:
            done_groups.add(group)
        if "flip" in effects:
            c.flip()
        if mine is not None:
            c.set_state(me, peer, mine)
        if theirs is not None:
            c.set_state(peer, me, theirs)
        if "attempt" in effects:
            c.add_timer(t + TIMERS["tcp_attempt_delay"], "attempt")
        if "close" in effects or ("close_if_open" in effects and not me.did_close):
            do_close = True
        if "reset_timer" in effects:
            c.add_timer(t + TIMERS["tcp_reset_delay"], "delete")
    return do_close


def _closed(c: _Conn, me: Endpoint, peer: Endpoint) -> None:
    """TCPSessionAdapter::ConnectionClosed (no data is ever pending: no reassembly here)."""
    if me.did_close:
        return
    me.did_close = True
    if me.state == RESET or peer.did_close or peer.state == INACTIVE:
        c.timers = [(w, k) for w, k in c.timers if k == "inactivity"]  # CancelTimers: the analyzer's
        c.add_timer(c.last_time + TIMERS["tcp_close_delay"], "delete")
    elif me.prev_state == INACTIVE:
        c.add_timer(c.last_time + TIMERS["tcp_partial_close_delay"], "partial_close")
    else:
        c.add_timer(c.last_time + TIMERS["tcp_session_timer"], "expire")


def _history(c: _Conn, p: _Packet, me: Endpoint, rel_seq: int) -> None:
    """update_history: the letter for this packet's flags. S/H, F and R come again when their
    sequence number differs from the last one of that kind (S and H share one kind)."""
    flags = p.flags
    bits = bool(flags & SYN) + bool(flags & FIN) + bool(flags & RST)
    if bits > 1:  # FIN+RST is inconsistent ('I'), SYN with FIN or RST multi-flag ('Q')
        code = "I" if flags & FIN and flags & RST else "Q"
        c.check_history(me, code, code)
    elif bits == 1:
        if flags & SYN:
            kind, code, where = "S", ("H" if flags & ACK else "S"), rel_seq
        elif flags & FIN:
            kind, code, where = "F", "F", rel_seq + p.length
        else:
            kind, code, where = "R", "R", rel_seq
        if c.check_history(me, kind, code) and where != me.hist_last.get(kind):
            c.add_history(code if me.is_orig else code.lower())
        me.hist_last[kind] = where
    elif p.length:
        c.check_history(me, "D", "D")
    elif flags & ACK:
        c.check_history(me, "A", "A")


def is_reuse(c: _Conn, flags: int, seq: int) -> bool:
    """TCPSessionAdapter::IsReuse: does this packet start a new connection? A SYN does once
    either side closed, or when its ISN is not the one the connection started with."""
    if not flags & SYN:
        return False
    conn_orig = c.orig
    if flags & ACK:
        if c.orig.state != INACTIVE:
            return False
        conn_orig = c.resp
    if not c.is_closed():
        if seq == conn_orig.start_seq:
            return False
        if (not flags & ACK and conn_orig.state == SYN_ACK_SENT and c.resp.state == INACTIVE
                and seq == c.resp.start_seq):
            return False
    return True


def _wants_flip(flags: int, sport: int, dport: int) -> bool:
    """TCPAnalyzer::WantConnection: flip a connection that starts without a pure SYN from a
    likely server port."""
    if flags & SYN and not flags & ACK:
        return False
    if sport in LIKELY_SERVER_PORTS:
        if dport in LIKELY_SERVER_PORTS:
            return not flags & SYN and sport < dport
        return True
    return False


def _process(c: _Conn, p: _Packet, me: Endpoint, peer: Endpoint, t: float, win: int) -> None:
    """TCPSessionAdapter::Process for one packet."""
    flags = p.flags
    seg_len = p.length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0) - (p.length if flags & RST else 0)
    end = (p.seq + seg_len) % MOD
    # init_endpoint
    if me.state == INACTIVE:
        if flags & SYN:
            me.init_seqs(p.seq, end)
        else:
            me.init_seqs(p.seq - 1, p.seq)
    elif me.state in (SYN_SENT, SYN_ACK_SENT, ESTABLISHED, PARTIAL):
        if flags & SYN and (me.state in (ESTABLISHED, PARTIAL) or p.seq != me.start_seq):
            me.init_seqs(p.seq, end)
    elif me.state == RESET and flags & SYN and me.prev_state == INACTIVE:
        me.init_seqs(p.seq, end)
    rel_seq = seq_delta(p.seq, me.start_seq)
    _history(c, p, me, rel_seq)
    # update_window: a zero window is history 'W' unless it comes with or after a RST, or after the peer's FIN
    if win == 0 and not flags & RST and peer.state != CLOSED and me.state != RESET:
        c.scaled_history(me, "W")
    if not (c.orig.did_close and c.resp.did_close):
        c.last_time = t
    if flags & FIN:
        me.fin_cnt += 1
    if flags & ACK:
        if peer.state == INACTIVE:
            peer.init_seqs(p.ack - 1, p.ack - 1)
        elif not flags & RST:
            delta = seq_delta(p.ack, peer.ack_seq)
            if not (p.ack == 0 and delta > TOO_LARGE_SEQ_DELTA) and delta > 0:
                peer.ack_seq = p.ack
    # update_last_seq
    delta_last = seq_delta(end, me.last_seq)
    if flags & (SYN | RST) and abs(delta_last) > TOO_LARGE_SEQ_DELTA:
        pass
    elif flags & FIN and me.last_seq == (me.start_seq + 1) % MOD:
        me.last_seq = end
    elif me.state == RESET:
        pass
    elif delta_last > 0:
        me.last_seq = end
    elif p.length > 0:
        c.scaled_history(me, "T")
    if _step(c, p, me, peer, t):
        _closed(c, me, peer)


def records(conn: Connection) -> list[ZeekRecord]:
    """The Zeek connections (conn.log rows) this connection's packets form, in order."""
    out: list[ZeekRecord] = []
    cur: _Conn | None = None
    client_port = conn.client[1]
    server_port = conn.server[1]
    for i, s in enumerate(conn.segments):
        seg = s.segment
        side = s.side
        t = seg.t
        if cur is not None and (cur.due(t) or is_reuse(cur, seg.flags, seg.seq)):
            out.append(cur.record())
            cur = None
        if cur is None:
            sport, dport = (client_port, server_port) if side == "C" else (server_port, client_port)
            cur = _Conn(side, t, i)
            if _wants_flip(seg.flags, sport, dport):
                cur.flip()
        cur.last = i
        me, peer = cur.endpoint_of(side)
        p = _Packet(me.is_orig, seg.flags, seg.seq, seg.ack, seg.payload_len)
        _process(cur, p, me, peer, t, seg.win)
    if cur is not None:
        out.append(cur.record())
    return out


def record_dicts(conn: Connection, recs: list | None = None) -> list[dict]:
    """`records` for JSON: {"orig", "resp" (the roles "client"/"server" of the connection's own
    client and server fields), "conn_state", "history", "first", "last" (positions in the
    connection's segments)}. Only the shape, the port class, zero windows and (past
    UNTIMED_SPAN) times decide them, so show can memoise them with the shape."""
    role = {"C": "client", "S": "server"}
    return [
        {"orig": role[r.orig_side], "resp": role["S" if r.orig_side == "C" else "C"], "conn_state": r.conn_state,
         "history": r.history, "first": r.first, "last": r.last}
        for r in (records(conn) if recs is None else recs)
    ]


def zeek_state(conn: Connection) -> str:
    """conn_state of the Zeek record that holds the connection's first packet."""
    recs = records(conn)
    return recs[0].conn_state if recs else "OTH"


# --- conn_state (base/protocols/conn/main.zeek) ---------------------------------------------------
# Rows in Zeek's order: (originator states or None for any, responder states or None,
# condition name or None, conn_state); the first row that holds gives the state.
_INACTIVE = (INACTIVE, PARTIAL)
_RSTOS0_HISTORY = re.compile(r"\^?S[^HAFGIQ]*R")
CONN_STATE_RULES = (
    ((SYN_SENT, SYN_ACK_SENT), (RESET,), None, "REJ"),
    ((RESET,), (RESET,), "no_bytes", "REJ"),
    (_INACTIVE, (RESET,), None, "RSTRH"),
    (None, (RESET,), None, "RSTR"),
    ((RESET,), _INACTIVE, "syn_then_rst", "RSTOS0"),
    ((RESET,), _INACTIVE, None, "OTH"),
    ((RESET,), None, None, "RSTO"),
    ((CLOSED,), (CLOSED,), None, "SF"),
    ((CLOSED,), _INACTIVE, None, "SH"),
    ((CLOSED,), None, None, "S2"),
    (_INACTIVE, (CLOSED,), None, "SHR"),
    (None, (CLOSED,), None, "S3"),
    ((SYN_SENT,), (INACTIVE,), None, "S0"),
    ((ESTABLISHED,), (ESTABLISHED,), None, "S1"),
    (None, None, None, "OTH"),
)
CONDITIONS = {
    "no_bytes": lambda c: c.orig.size(c.resp) == 0 and c.resp.size(c.orig) == 0,
    "syn_then_rst": lambda c: _RSTOS0_HISTORY.match(c.history) is not None,
}


def conn_state(c: _Conn) -> str:
    os_, rs = c.orig.state, c.resp.state
    for origs, resps, condition, result in CONN_STATE_RULES:
        if origs is not None and os_ not in origs:
            continue
        if resps is not None and rs not in resps:
            continue
        if condition is not None and not CONDITIONS[condition](c):
            continue
        return result
    return "OTH"
