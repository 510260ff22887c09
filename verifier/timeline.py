"""Merge a run's segments and socket events into one timeline; print it as a ladder or a mermaid diagram."""

from __future__ import annotations

from dataclasses import dataclass

from .wire.connections import Connection
from .wire.show import endpoint_text, segment_line
from .wire.transcript import EventLine, SegmentLine


@dataclass(frozen=True, slots=True)
class Entry:
    t: float  # absolute (capture clock for segments, runtime wall clock for events)
    line: SegmentLine | EventLine
    frame: int | None = None  # capture frame number for segments


def segment_lines(connections: list[Connection]) -> list[list[SegmentLine]]:
    """Per connection, its segments as notation lines with absolute times and @N set."""
    return [[segment_line(s, 0.0, connection=c.index) for s in c.segments] for c in connections]


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


def ladder(entries: list[Entry], connections: list[Connection]) -> str:
    """The merged ladder: packets in the middle, each side's events in its own column."""
    if not entries:
        return "(nothing happened)\n"
    t0 = entries[0].t
    width = 34
    head = [f"{'time':>10}  {'client':<{width}}  {'wire':<40}  server"]
    for c in connections:
        head.append(f"{'':>10}  connection @{c.index}: {endpoint_text(*c.client)} > {endpoint_text(*c.server)}")
    rows = []
    for e in entries:
        t = f"+{(e.t - t0) * 1000:.3f}ms"
        if isinstance(e.line, SegmentLine):
            text = e.line.text(with_time=False, with_connection=len(connections) > 1)
            arrow = "-->" if e.line.side == "C" else "<--"
            rows.append(f"{t:>10}  {'':<{width}}  {arrow} {text:<36}")
        else:
            text = e.line.text(with_time=False).split(" ", 1)[1]
            if e.line.side == "client":
                rows.append(f"{t:>10}  {text:<{width}}")
            else:
                rows.append(f"{t:>10}  {'':<{width}}  {'':<40}  {text}")
    return "\n".join(head + rows) + "\n"


def mermaid(entries: list[Entry], connections: list[Connection]) -> str:
    """A mermaid sequenceDiagram of the run, like the seed's diagrams."""
    client = endpoint_text(*connections[0].client) if connections else ""
    server = endpoint_text(*connections[0].server) if connections else ""
    out = ["sequenceDiagram", f"    participant C as client {client}".rstrip(), f"    participant S as server {server}".rstrip()]
    many = len(connections) > 1
    for e in entries:
        if isinstance(e.line, SegmentLine):
            src, dst = ("C", "S") if e.line.side == "C" else ("S", "C")
            body = e.line.text(with_time=False, with_connection=many).split("  ", 1)[1]
            label = (f"@{e.line.connection} " if many else "") + body
            out.append(f"    {src}->>{dst}: {_mermaid_escape(label)}")
        else:
            who = "C" if e.line.side == "client" else "S"
            text = e.line.text(with_time=False).split(" ", 1)[1]
            out.append(f"    Note over {who}: {_mermaid_escape(text)}")
    return "\n".join(out) + "\n"


def _mermaid_escape(text: str) -> str:
    # ';' and '#' end or escape a mermaid statement
    return text.replace(";", ",").replace("#", "no.")
