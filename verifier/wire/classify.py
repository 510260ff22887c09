"""Say how a connection ended: outcome, how the first FIN was ACKed, and Zeek's conn_state."""

from __future__ import annotations

from .connections import Connection, RelSegment, seq_geq
from .model import ACK, FIN, RST, SYN
from .zeek import record_dicts, records

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


# --- Zeek's conn_state: verifier/wire/zeek.py replays the connection through Zeek's own rules.


def summary(conn: Connection) -> dict:
    """outcome, fin_ack and zeek_state of a connection, and `zeek`: the Zeek records of its packets
    (Zeek may split one connection into several; zeek_state is the state of the first's)."""
    how = outcome(conn)
    recs = records(conn)
    return {"outcome": how, "fin_ack": fin_ack(conn, how), "zeek_state": recs[0].conn_state if recs else "OTH",
            "zeek": record_dicts(conn, recs)}
