"""What `verifier show` reports about a capture: its connections as transcript text and as JSON records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from . import capture, decode
from .classify import summary
from .connections import Connection, RelSegment, track
from .model import CaptureInfo
from .transcript import SegmentLine, flags_text, options_text


@dataclass(slots=True)
class CaptureStats:
    packets: int = 0
    tcp: int = 0
    other: int = 0  # packets that are not TCP (counted, not errors)
    duplicates: int = 0  # loopback duplicate copies removed


@dataclass(slots=True)
class CaptureReading:
    """A capture being read: connections come out of `connections()`, then stats/info are final."""

    stream: BinaryIO
    info: CaptureInfo = field(default_factory=CaptureInfo)
    stats: CaptureStats = field(default_factory=CaptureStats)

    def segments(self):
        stats = self.stats
        for frame in capture.read_frames(self.stream, self.info):
            stats.packets += 1
            seg = decode.decode(frame)
            if seg is None:
                stats.other += 1
                continue
            stats.tcp += 1
            yield seg

    def connections(self) -> Iterator[Connection]:
        for conn in track(self.segments()):
            self.stats.duplicates += conn.duplicates
            yield conn

    def warnings(self) -> list[str]:
        out = list(self.info.warnings)
        if self.stats.duplicates:
            out.append(
                f"removed {self.stats.duplicates} duplicate copies of segments "
                "(Linux lo shows raw-socket sniffers each packet twice)"
            )
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
        options=(options_text(seg.options) or None) if verbose else None,
    )


def connection_header(conn: Connection, facts: dict | None = None) -> str:
    facts = facts or summary(conn)
    return (
        f"connection {conn.index}: {endpoint_text(*conn.client)} > {endpoint_text(*conn.server)}"
        f"  outcome {facts['outcome']}  fin_ack {facts['fin_ack'] or '-'}  zeek {facts['zeek_state']}"
    )


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
            }
            for s in conn.segments
        ],
    }
    return record
