"""Merge a run's segments and socket events into one timeline; print it as a ladder or a mermaid diagram."""

from __future__ import annotations

from dataclasses import dataclass

from .wire.connections import Connection
from .wire.model import ACK, SYN
from .wire.show import endpoint_text, segment_line
from .wire.transcript import EventLine, SegmentLine


@dataclass(frozen=True, slots=True)
class Entry:
    t: float  # absolute (capture clock for segments, runtime wall clock for events)
    line: SegmentLine | EventLine
    frame: int | None = None  # capture frame number for segments


def segment_lines(connections: list[Connection]) -> list[list[SegmentLine]]:
    """Per connection, its segments as notation lines with absolute times and @N set, windows
    and options included (an expectation may name them)."""
    return [[segment_line(s, 0.0, connection=c.index, verbose=True) for s in c.segments] for c in connections]


def merge(connections: list[Connection], events: list[EventLine]) -> list[Entry]:
    entries = [Entry(s.t, segment_line(s, 0.0, connection=c.index), s.segment.index) for c in connections for s in c.segments]
    entries += [Entry(e.t, e) for e in events]
    # stable: at equal times, the packet first (events are logged after what caused them)
    entries.sort(key=lambda e: (e.t, 0 if isinstance(e.line, SegmentLine) else 1))
    return entries


def transcript_text(entries: list[Entry], connections: int, with_time: bool = True) -> str:
    """One line per entry in the notation; valid as an expectation when pasted into one."""
    if not entries:
        return ""
    t0 = entries[0].t
    lines = []
    for e in entries:
        prefix = f"+{e.t - t0:.6f} " if with_time else ""
        if isinstance(e.line, SegmentLine):
            lines.append(prefix + e.line.text(with_time=False, with_connection=connections > 1))
        else:
            lines.append(prefix + e.line.text(with_time=False))
    return "\n".join(lines) + "\n"


# Events by which an actor shows it opens connections (its lane goes left of the wire)
OPENING_EVENTS = ("lookup", "connectionAttempt", "connectionAttemptFailed", "connectionAttemptTimeout", "connect")


@dataclass(frozen=True)
class Lanes:
    """One lane per actor: those that open connections left of the wire, the others right; and
    for each connection (by index) the actors at its client and server ends (None: unknown)."""

    left: tuple[str, ...]
    right: tuple[str, ...]
    ends: dict


def _arg(ev: EventLine, key: str):
    return dict(ev.args).get(key)


def lanes(connections: list[Connection], events: list[EventLine]) -> Lanes:
    """Which actor sits at each end of each connection, by what the probe logged:

    - client end: the actor whose `connect` reports that local port (else the one whose
      `connectionAttempt` went to that server address and port);
    - server end: the actor named by `side=` on the listener's `connection` event for that
      remote port (the probe's accept() adds it); without one, the actor `server` if there is
      one and this connection was accepted (the server answered with S.).
    """
    actors = list(dict.fromkeys(e.side for e in events))
    ends = {}
    for c in connections:
        (_, cport), (saddr, sport) = c.client, c.server
        client = next((e.side for e in events if e.name == "connect" and _arg(e, "localPort") == cport), None)
        if client is None:
            client = next((e.side for e in events if e.name == "connectionAttempt"
                           and _arg(e, "port") == sport and _arg(e, "ip") == saddr), None)
        server = next((_arg(e, "side") for e in events if e.name == "connection" and _arg(e, "remotePort") == cport
                       and isinstance(_arg(e, "side"), str)), None)
        if server is None and "server" in actors and any(s.side == "S" and s.flags & SYN and s.flags & ACK for s in c.segments):
            server = "server"
        ends[c.index] = (client, server)
    opening = {a for a, _ in ends.values() if a} | {e.side for e in events if e.name in OPENING_EVENTS}
    opening |= {a for a in actors if a.startswith("client")}
    opening -= {b for _, b in ends.values() if b}
    return Lanes(tuple(a for a in actors if a in opening), tuple(a for a in actors if a not in opening), ends)


LANE_WIDTH = 34
WIRE_WIDTH = 40


def ladder(entries: list[Entry], connections: list[Connection]) -> str:
    """The merged ladder: packets in the middle, each actor's events in its own lane (the actors
    that open connections left of the wire, the others right of it)."""
    if not entries:
        return "(nothing happened)\n"
    t0 = entries[0].t
    ln = lanes(connections, [e.line for e in entries if isinstance(e.line, EventLine)])
    column = {a: n for n, a in enumerate(ln.left)}
    column.update({a: len(ln.left) + 1 + n for n, a in enumerate(ln.right)})
    widths = [LANE_WIDTH] * len(ln.left) + [WIRE_WIDTH] + [LANE_WIDTH] * len(ln.right)

    def row(t: str, cells: dict[int, str]) -> str:
        last = max(cells)
        parts = [f"{cells.get(n, ''):<{w}}" for n, w in enumerate(widths[: last + 1])]
        return f"{t:>10}  " + "  ".join(parts).rstrip()

    head = [row("time", {column[a]: a for a in ln.left + ln.right} | {len(ln.left): "wire"})]
    for c in connections:
        head.append(f"{'':>10}  connection @{c.index}: {endpoint_text(*c.client)} > {endpoint_text(*c.server)}")
    rows = []
    for e in entries:
        t = f"+{(e.t - t0) * 1000:.3f}ms"
        if isinstance(e.line, SegmentLine):
            text = e.line.text(with_time=False, with_connection=len(connections) > 1)
            arrow = "-->" if e.line.side == "C" else "<--"
            rows.append(row(t, {len(ln.left): f"{arrow} {text}"}))
        else:
            rows.append(row(t, {column[e.line.side]: e.line.text(with_time=False).split(" ", 1)[1]}))
    return "\n".join(head + rows) + "\n"


def mermaid(entries: list[Entry], connections: list[Connection]) -> str:
    """A mermaid sequenceDiagram of the run, like the seed's diagrams: one participant per actor
    (its events as notes over it); each packet an arrow between the actors at the connection's
    ends, or the bare endpoint where no actor is known (a refused port, a capture without events)."""
    ln = lanes(connections, [e.line for e in entries if isinstance(e.line, EventLine)])
    by_index = {c.index: c for c in connections}
    names: dict[str, str] = {}  # participant label -> mermaid id
    label_of_actor = {}
    for a in ln.left + ln.right:  # an actor with one endpoint shows it, as the seed's diagrams do
        points = {endpoint_text(*(c.client if ln.ends[c.index][0] == a else c.server)) for c in connections if a in ln.ends[c.index]}
        label_of_actor[a] = f"{a} {points.pop()}" if len(points) == 1 else a

    def participant(label: str) -> str:
        return names.setdefault(label, f"P{len(names)}")

    def end_labels(c: Connection) -> tuple[str, str]:
        client, server = ln.ends[c.index]
        return (label_of_actor[client] if client else f"client {endpoint_text(*c.client)}",
                label_of_actor[server] if server else f"server {endpoint_text(*c.server)}")

    # left to right: actors that open connections, bare client ends, the other actors, bare server ends
    for a in ln.left:
        participant(label_of_actor[a])
    for c in connections:
        if not ln.ends[c.index][0]:
            participant(end_labels(c)[0])
    for a in ln.right:
        participant(label_of_actor[a])
    ends = {c.index: tuple(participant(label) for label in end_labels(c)) for c in connections}
    out = ["sequenceDiagram"] + [f"    participant {pid} as {_mermaid_escape(label)}" for label, pid in names.items()]
    many = len(connections) > 1
    for e in entries:
        if isinstance(e.line, SegmentLine):
            client, server = ends[e.line.connection if e.line.connection in by_index else connections[0].index]
            src, dst = (client, server) if e.line.side == "C" else (server, client)
            body = e.line.text(with_time=False, with_connection=many).split("  ", 1)[1]
            label = (f"@{e.line.connection} " if many else "") + body
            out.append(f"    {src}->>{dst}: {_mermaid_escape(label)}")
        else:
            who = names[label_of_actor[e.line.side]]
            text = e.line.text(with_time=False).split(" ", 1)[1]
            out.append(f"    Note over {who}: {_mermaid_escape(text)}")
    return "\n".join(out) + "\n"


def _mermaid_escape(text: str) -> str:
    # ';' and '#' end or escape a mermaid statement
    return text.replace(";", ",").replace("#", "no.")
