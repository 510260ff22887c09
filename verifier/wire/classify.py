"""Say how a connection ended: outcome, how the first FIN was ACKed, and Zeek's conn_state."""

from __future__ import annotations

from .connections import Connection, RelSegment, seq_geq
from .model import ACK, FIN, RST, SYN

OUTCOMES = (
    "refused", "unanswered", "fin-client-first", "fin-server-first", "fin-simultaneous",
    "rst-client", "rst-server", "half-closed", "open", "partial",
)
SIDE_NAME = {"C": "client", "S": "server"}


def outcome(conn: Connection) -> str:
    segs = conn.segments
    client_syn = any(s.side == "C" and s.flags & SYN and not s.flags & ACK for s in segs)
    server_synack = any(s.side == "S" and s.flags & SYN and s.flags & ACK for s in segs)
    server_sent = [s for s in segs if s.side == "S"]
    first_rst = next((s for s in segs if s.flags & RST), None)
    if client_syn and not server_synack:
        if not server_sent:
            return "unanswered" if first_rst is None else "rst-client"
        if all(s.flags & RST for s in server_sent):
            return "refused"
    if first_rst is not None:
        return f"rst-{SIDE_NAME[first_rst.side]}"
    fins = _first_fins(conn)
    if len(fins) == 2:
        first, second = sorted(fins.values(), key=lambda s: s.segment.index)
        if not (second.flags & ACK and seq_geq(second.segment.ack, _fin_end(first))):
            return "fin-simultaneous"
        return f"fin-{SIDE_NAME[first.side]}-first"
    if fins:
        return "half-closed"
    if client_syn or server_synack:
        return "open"
    return "partial"


def fin_ack(conn: Connection, how: str | None = None) -> str | None:
    """For a FIN close: "separate" if a pure ACK acknowledged the first FIN before the peer's
    own FIN, "piggybacked" if the peer's FIN carried that ACK; None otherwise."""
    how = how or outcome(conn)
    if how not in ("fin-client-first", "fin-server-first"):
        return None
    fins = _first_fins(conn)
    first_side = "C" if how == "fin-client-first" else "S"
    first = fins[first_side]
    end = _fin_end(first)
    for s in conn.segments:
        if s.segment.index <= first.segment.index or s.side == first_side:
            continue
        if s.flags & ACK and seq_geq(s.segment.ack, end):
            return "piggybacked" if s.flags & FIN else "separate"
    return None


def _first_fins(conn: Connection) -> dict[str, RelSegment]:
    fins: dict[str, RelSegment] = {}
    for s in conn.segments:
        if s.flags & FIN and s.side not in fins:
            fins[s.side] = s
    return fins


def _fin_end(s: RelSegment) -> int:
    seg = s.segment
    return (seg.seq + seg.payload_len + (1 if seg.flags & SYN else 0) + 1) % (1 << 32)


# --- Zeek's conn_state -------------------------------------------------------------------------
# Zeek tracks each endpoint with a small state machine (its TCP analyzer's endpoint states) and
# derives conn_state from the pair of final states (base/protocols/conn/main.zeek). Both halves
# are tables here.

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = (
    "INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET",
)

# (endpoint state, what the endpoint sent) -> its next state. Kinds: "syn", "synack", "fin",
# "rst", "other" (a segment with none of SYN/FIN/RST). Absent pairs leave the state unchanged.
ENDPOINT_TRANSITIONS = {
    (INACTIVE, "syn"): SYN_SENT,
    (INACTIVE, "synack"): SYN_ACK_SENT,
    (INACTIVE, "other"): PARTIAL,
    (SYN_SENT, "synack"): SYN_ACK_SENT,  # simultaneous open
    **{(state, "fin"): CLOSED for state in (INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED)},
    **{(state, "rst"): RESET for state in (INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED)},
}
# A handshake completes when an endpoint that sent a SYN (or SYN-ACK) sends a plain segment while
# its peer has sent its SYN-ACK (or SYN): both become ESTABLISHED.
HANDSHAKE_STATES = (SYN_SENT, SYN_ACK_SENT, ESTABLISHED)


def _kind(flags: int) -> str:
    if flags & RST:
        return "rst"
    if flags & FIN:
        return "fin"
    if flags & SYN:
        return "synack" if flags & ACK else "syn"
    return "other"


def endpoint_states(conn: Connection) -> tuple[str, str]:
    """Final (originator, responder) endpoint states after replaying the connection."""
    state = {"C": INACTIVE, "S": INACTIVE}
    for s in conn.segments:
        me, peer = s.side, ("S" if s.side == "C" else "C")
        kind = _kind(s.flags)
        if s.flags & SYN and s.flags & FIN and state[me] == INACTIVE:
            state[me] = ENDPOINT_TRANSITIONS[(INACTIVE, "synack" if s.flags & ACK else "syn")]
        if kind == "other" and state[me] in (SYN_SENT, SYN_ACK_SENT) and state[peer] in HANDSHAKE_STATES:
            state[me] = ESTABLISHED
            if state[peer] != ESTABLISHED:
                state[peer] = ESTABLISHED
            continue
        state[me] = ENDPOINT_TRANSITIONS.get((state[me], kind), state[me])
    return state["C"], state["S"]


# conn_state from (originator state, responder state), in Zeek's order of precedence. Each row:
# (orig states or None for any, resp states or None, extra condition name or None, result).
_INACTIVE = (INACTIVE, PARTIAL)
CONN_STATE_RULES = (
    (((SYN_SENT, SYN_ACK_SENT)), (RESET,), None, "REJ"),
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


def _no_bytes(conn: Connection) -> bool:
    return all(s.length == 0 for s in conn.segments)


def _syn_then_rst(conn: Connection) -> bool:
    """Zeek's history test /^?S[^HAFGIQ]*R/: the originator sent a SYN, then a RST, nothing between."""
    mine = [s.flags for s in conn.segments if s.side == "C"]
    if not mine or not (mine[0] & SYN) or mine[0] & ACK:
        return False
    for flags in mine:
        if flags & RST:
            return True
        if flags & (ACK | FIN) or not flags & SYN:
            return False
    return False


CONDITIONS = {"no_bytes": _no_bytes, "syn_then_rst": _syn_then_rst}


def zeek_state(conn: Connection) -> str:
    orig, resp = endpoint_states(conn)
    for origs, resps, condition, result in CONN_STATE_RULES:
        if origs is not None and orig not in origs:
            continue
        if resps is not None and resp not in resps:
            continue
        if condition is not None and not CONDITIONS[condition](conn):
            continue
        return result
    return "OTH"


def summary(conn: Connection) -> dict:
    """outcome, fin_ack and zeek_state of a connection."""
    how = outcome(conn)
    return {"outcome": how, "fin_ack": fin_ack(conn, how), "zeek_state": zeek_state(conn)}
