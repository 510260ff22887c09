"""`verifier run --accept`: an expectation written from what a run observed, checked against that run.

The text is the notation `verifier show` prints, laid out to hold on the next run of the same
behaviour: every connection's segments with `@N`, in capture order (segments must match one by
one); each actor's events in a `meanwhile:` block (in order among themselves, not timed against
the wire or against other actors: one process schedules its callbacks as it likes); no times;
ephemeral ports left out; all of it inside this OS's block.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .expectation import parse
from .match import match
from .record import EPHEMERAL_PORT_KEYS, atomic_write
from .timeline import segment_lines
from .wire.transcript import EventLine

# With no connection at all, what the expectation asserts instead (every TCP segment carries one of these)
NO_SEGMENT = ("never S", "never R", "never .", "never F")


def _stable(ev: EventLine, fixed_ports: set[int]) -> EventLine:
    """The event without its ephemeral ports (they change from run to run)."""
    args = tuple((k, v) for k, v in ev.args
                 if not (k in EPHEMERAL_PORT_KEYS and isinstance(v, int) and v not in fixed_ports))
    return EventLine(ev.side, ev.name, args)


def expectation_text(result, family: str) -> str:
    """NAME.expect's text from a run (a lab.run.ScenarioResult)."""
    s, rt = result.scenario, result.runtime
    lines = [
        f"# {s.name}: accepted from a run on {family} under {rt.name} {rt.version} (verifier run --accept).",
        "# Segments: every connection's, in order, one by one. Events: each actor's in order among",
        "# themselves (meanwhile:), not timed against the wire. Edit freely: docs/expectations.md.",
        f"{family}:",
    ]
    # windows and options are not behaviour: left out, as in transcripts
    segments = [replace(line, win=None, tos=None, options=None) for conn in segment_lines(result.connections) for line in conn]
    segments.sort(key=lambda line: line.t)
    lines += [line.text(with_time=False, with_connection=True) for line in segments]
    if not segments:
        lines.append("# no TCP segment at all")
        lines += list(NO_SEGMENT)
    fixed = set(s.ports)
    for actor in dict.fromkeys(e.side for e in result.events):
        lines.append("meanwhile:")
        lines += [f"  {_stable(e, fixed).text(with_time=False)}" for e in result.events if e.side == actor]
        lines.append("end")
    return "\n".join(lines) + "\n"


def expectation_path(result) -> Path:
    program = result.scenario.program
    return program.with_name(result.scenario.name + ".expect")


def write_expectation(result, family: str) -> Path:
    """Write NAME.expect beside the program (owned like its folder), then check the run against
    what was written: `result` becomes held (or failed, naming the line, if the text cannot
    describe the run it came from)."""
    path = expectation_path(result)
    text = expectation_text(result, family)
    atomic_write(path, text.encode())
    folder = os.stat(path.parent)
    if os.geteuid() == 0 and (folder.st_uid, folder.st_gid) != (0, 0):
        os.chown(path, folder.st_uid, folder.st_gid)  # a file of the user's project, not root's
    expectation = parse(text, family, str(path))
    result.mismatches = match(expectation, segment_lines(result.connections), result.events)
    result.status = "failed" if result.mismatches else "held"
    return path
