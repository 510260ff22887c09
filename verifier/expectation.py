"""Parse expectation files: ordered segment and event steps in the transcript notation.

    # comments and blank lines are ignored
    any:                      block for every OS family (linux, darwin, windows, any)
    C > S  S 0:0(0)           a segment (all segments of a mentioned connection must match, in order)
    @2 S > C  R. 0:0(0) ack 1 a segment of the second connection (by first packet)
    client connect            an event (listed events must occur in this order; others may interleave)
    ? C > S  . 2:2(0) ack 2   an optional step
    one of:                   alternatives: the first branch that matches wins
      ...
    or:
      ...
    end
    repeat:                   zero or more segments, each matching one of these lines
      C > S  P. *:*(*) ack 1
      S > C  . 1:1(0) ack *
    end
    meanwhile:                events that happen in this order, whatever the wire does meanwhile
      client finish           (not ordered against the steps around the block)
      client close
    end
    never R                   no segment with these flags (here: any RST), anywhere
    never S > C  R            ... sent by the server
    never [retransmission]    no segment Wireshark labels so (any TCP analysis label; with a side too)
    never client error        no such event
    C > S  . *:*(0) ack * [keep-alive]   a segment with (at least) these analysis labels
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import VerifierError
from .wire.model import ACK, FIN, SYN
from .wire.transcript import EventLine, NotationError, SegmentLine, parse_analysis, parse_event, parse_flags, parse_line

FAMILIES = ("linux", "darwin", "windows", "any")
MOD = 1 << 32


class ExpectationError(VerifierError):
    """A syntax or consistency error in an expectation: names the file, line and column."""

    def __init__(self, source: str, line: int, column: int, message: str):
        self.source, self.line, self.column = source, line, column
        super().__init__(f"{source}:{line}:{column}: {message}")


@dataclass(frozen=True, slots=True)
class Step:
    line: SegmentLine | EventLine
    lineno: int
    text: str  # as written in the file (stripped)
    optional: bool = False


@dataclass(frozen=True, slots=True)
class OneOf:
    branches: tuple  # tuple of tuples of steps
    lineno: int
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Repeat:
    lines: tuple  # segment steps; each repetition matches one of them
    lineno: int


@dataclass(frozen=True, slots=True)
class Meanwhile:
    steps: tuple  # event steps, in order among themselves only
    lineno: int


@dataclass(frozen=True, slots=True)
class Never:
    lineno: int
    text: str
    side: str | None = None  # segments: "C"/"S"; events: client/server/listener
    flags: int | None = None  # segments: every one of these flag bits set
    event: EventLine | None = None
    analysis: tuple[str, ...] = ()  # segments: every one of these TCP analysis labels


@dataclass(slots=True)
class Expectation:
    source: str
    family: str
    steps: list = field(default_factory=list)
    nevers: list[Never] = field(default_factory=list)

    @property
    def checks_segments(self) -> bool:
        return any(isinstance(s.line, SegmentLine) for s in iter_steps(self.steps))

    @property
    def connections(self) -> int:
        """How many connections the expectation mentions (segments without @N are connection 1)."""
        found = [s.line.connection or 1 for s in iter_steps(self.steps) if isinstance(s.line, SegmentLine)]
        return max(found, default=0)


def iter_steps(steps):
    for s in steps:
        if isinstance(s, OneOf):
            for branch in s.branches:
                yield from iter_steps(branch)
        elif isinstance(s, Repeat):
            yield from s.lines
        elif isinstance(s, Meanwhile):
            yield from s.steps
        else:
            yield s


_HEADER = re.compile(r"^(linux|darwin|windows|any)\s*:\s*$")
_NEVER = re.compile(r"^never\s+(.*)$")
_NEVER_SEG = re.compile(
    r"^(?:(?P<side>[CS])\s*>\s*[CS]\s+)?(?:(?P<flags>[FSRP.UEW]+)\s*)?(?:\[(?P<analysis>[^\]]*)\])?$")


def parse(text: str, family: str, source: str = "<expectation>") -> Expectation:
    """Parse an expectation for one OS family (`any` blocks and that family's blocks, in file order)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown OS family {family!r}")
    exp = Expectation(source, family)
    # stack of open `one of` groups: each is (lineno, optional, branches list, current branch)
    stack: list[tuple[int, bool, list, list]] = []
    block: tuple[str, int, list] | None = None  # an open repeat:/meanwhile: block
    current = "any"

    def target() -> list:
        return stack[-1][3] if stack else exp.steps

    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        column = len(raw) - len(raw.lstrip()) + 1
        header = _HEADER.match(stripped)
        if header:
            if stack:
                raise ExpectationError(source, lineno, column, f"'{stripped}' inside 'one of' (close it with 'end' first)")
            current = header.group(1)
            continue
        if current not in ("any", family):
            # still check the syntax of other families' blocks
            _check_syntax(stripped, source, lineno, column)
            continue
        if stripped in ("repeat:", "meanwhile:"):
            if block is not None:
                raise ExpectationError(source, lineno, column, f"'{stripped}' inside '{block[0]}:' (close it with 'end' first)")
            block = (stripped[:-1], lineno, [])
            continue
        if block is not None:
            kind, lineno0, items = block
            if stripped == "end":
                if not items:
                    raise ExpectationError(source, lineno0, 1, f"empty '{kind}:' block")
                target().append(Repeat(tuple(items), lineno0) if kind == "repeat" else Meanwhile(tuple(items), lineno0))
                block = None
                continue
            try:
                line = parse_line(stripped)
            except NotationError as e:
                raise ExpectationError(source, lineno, column + e.column - 1, str(e)) from None
            want = SegmentLine if kind == "repeat" else EventLine
            if not isinstance(line, want):
                what = "segment lines" if kind == "repeat" else "event lines"
                raise ExpectationError(source, lineno, column, f"a '{kind}:' block holds {what} only")
            items.append(Step(line, lineno, stripped))
            continue
        optional = False
        body = stripped
        if body.startswith("?"):
            optional, body = True, body[1:].strip()
            column += len(stripped) - len(body)
        if body in ("one of:", "one of"):
            stack.append((lineno, optional, [], []))
            stack[-1][2].append(stack[-1][3])
            continue
        if body in ("or:", "or"):
            if not stack:
                raise ExpectationError(source, lineno, column, "'or:' without 'one of:'")
            lineno0, opt0, branches, _ = stack.pop()
            branch: list = []
            branches.append(branch)
            stack.append((lineno0, opt0, branches, branch))
            continue
        if body == "end":
            if not stack:
                raise ExpectationError(source, lineno, column, "'end' without 'one of:'")
            lineno0, opt0, branches, _ = stack.pop()
            if any(not b for b in branches):
                raise ExpectationError(source, lineno0, 1, "'one of' with an empty branch (use '?' for an optional step)")
            target().append(OneOf(tuple(tuple(b) for b in branches), lineno0, opt0))
            continue
        never = _NEVER.match(body)
        if never:
            if optional or stack:
                raise ExpectationError(source, lineno, column, "'never' applies to the whole run: not optional, not inside 'one of'")
            exp.nevers.append(_parse_never(never.group(1).strip(), source, lineno, column))
            continue
        try:
            line = parse_line(body)
        except NotationError as e:
            raise ExpectationError(source, lineno, column + e.column - 1, str(e)) from None
        target().append(Step(line, lineno, body, optional))
    if stack:
        raise ExpectationError(source, stack[-1][0], 1, "'one of:' is never closed with 'end'")
    if block is not None:
        raise ExpectationError(source, block[1], 1, f"'{block[0]}:' is never closed with 'end'")
    _check_tcp_consistency(exp)
    return exp


def _check_syntax(stripped: str, source: str, lineno: int, column: int) -> None:
    body = stripped[1:].strip() if stripped.startswith("?") else stripped
    if body in ("one of:", "one of", "or:", "or", "end", "repeat:", "meanwhile:"):
        return
    never = _NEVER.match(body)
    if never:
        _parse_never(never.group(1).strip(), source, lineno, column)
        return
    try:
        parse_line(body)
    except NotationError as e:
        raise ExpectationError(source, lineno, column + e.column - 1, str(e)) from None


def _parse_never(text: str, source: str, lineno: int, column: int) -> Never:
    m = _NEVER_SEG.match(text)
    if m and (m["flags"] or m["analysis"] is not None):
        try:
            labels = parse_analysis(m["analysis"]) if m["analysis"] is not None else ()
        except NotationError as e:
            raise ExpectationError(source, lineno, column, str(e)) from None
        if m["analysis"] is not None and not labels:
            raise ExpectationError(source, lineno, column, f"'never {text}': name a label in the brackets")
        return Never(lineno, f"never {text}", side=m["side"], flags=parse_flags(m["flags"] or ""), analysis=labels)
    try:
        ev = parse_event(text)
    except NotationError:
        raise ExpectationError(
            source, lineno, column,
            f"'never {text}': expected flags ('never R'), a side and flags ('never S > C R'), a TCP analysis "
            "label ('never [retransmission]') or an event ('never client error')",
        ) from None
    return Never(lineno, f"never {text}", side=ev.side, event=ev)


def _check_tcp_consistency(exp: Expectation) -> None:
    """Catch expectations that no TCP could produce: a sequence gap, or an ACK of bytes never sent.

    Only a straight run of concrete steps is checked (steps inside `one of` and after optional
    steps reset what is known), so alternatives never raise false alarms."""
    next_seq: dict[tuple[int, str], int] = {}

    def walk(steps):
        for s in steps:
            if isinstance(s, (OneOf, Repeat)):
                next_seq.clear()
                continue
            if isinstance(s, Meanwhile):
                continue
            line = s.line
            if not isinstance(line, SegmentLine):
                continue
            if s.optional:
                next_seq.clear()
                continue
            conn = line.connection or 1
            me, peer = (conn, line.side), (conn, "S" if line.side == "C" else "C")
            if line.flags is None or line.seq is None or line.length is None:
                next_seq.pop(me, None)
                continue
            expected_next = next_seq.get(me)
            if expected_next is not None and line.seq > expected_next:
                raise ExpectationError(
                    exp.source, s.lineno, 1,
                    f"seq {line.seq} leaves a gap: {line.side}'s previous segment ends at {expected_next}",
                )
            if line.flags & ACK and line.ack is not None and peer in next_seq and line.ack > next_seq[peer]:
                raise ExpectationError(
                    exp.source, s.lineno, 1,
                    f"ack {line.ack} acknowledges more than the peer sent (it has sent up to {next_seq[peer]}; "
                    "a SYN and a FIN each count as one)",
                )
            end = line.seq + line.length + (1 if line.flags & SYN else 0) + (1 if line.flags & FIN else 0)
            next_seq[me] = max(end, next_seq.get(me, 0))

    walk(exp.steps)
