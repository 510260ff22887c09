"""Match what happened (segments per connection, socket events) against an expectation.

Segments of a connection the expectation mentions must match one by one, in order, with nothing
left over; events listed must occur in the listed order (other events may come between them).
Consecutive steps must also be in time order: an event after the segment that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .expectation import Expectation, Meanwhile, Never, OneOf, Repeat, Step
from .wire.model import ACK
from .wire.transcript import EventLine, SegmentLine, flags_text, format_value

# Socket events and packets are stamped by different clocks readers (the runtime's wall clock and
# the kernel's capture timestamp): allow this much disagreement when ordering one against the other.
CLOCK_TOLERANCE = 0.0005


@dataclass(frozen=True, slots=True)
class Mismatch:
    lineno: int | None  # expectation line, when one is to blame
    message: str
    expected: str | None = None
    actual: str | None = None
    field: str | None = None
    expected_value: str | None = None
    actual_value: str | None = None

    def text(self, source: str) -> str:
        where = f"{source}:{self.lineno}: " if self.lineno else f"{source}: "
        out = where + self.message
        if self.field:
            out += f": {self.field} expected {self.expected_value} vs actual {self.actual_value}"
        if self.expected is not None:
            out += f"\n    expected: {self.expected}"
        if self.actual is not None:
            out += f"\n    actual:   {self.actual}"
        return out

    def record(self) -> dict:
        return {
            "line": self.lineno, "message": self.message, "expected": self.expected, "actual": self.actual,
            "field": self.field, "expected_value": self.expected_value, "actual_value": self.actual_value,
        }


@dataclass(frozen=True, slots=True)
class _State:
    seg_pos: tuple  # next unmatched segment index per connection
    ev_pos: int  # next candidate event index
    last_t: float  # time of the last matched item
    last_kind: str  # "segment" / "event" / ""
    done: int  # steps matched so far (to pick the most informative failure)


class _Matcher:
    def __init__(self, exp: Expectation, connections: list[list[SegmentLine]], events: list[EventLine]):
        self.exp = exp
        self.connections = connections
        self.events = events
        self.best: tuple[int, Mismatch] | None = None

    def show(self, seg: SegmentLine, like: SegmentLine | None = None) -> str:
        """An actual segment as the notation prints it (with @N when there are several connections),
        its window and options only where the expected line `like` names them."""
        keep_win = like is not None and like.win is not None
        keep_tos = like is not None and like.tos is not None
        keep_options = like is not None and like.options is not None
        if (seg.win is not None and not keep_win) or (seg.tos is not None and not keep_tos) or (
                seg.options is not None and not keep_options):
            seg = replace(seg, win=seg.win if keep_win else None, tos=seg.tos if keep_tos else None,
                          options=seg.options if keep_options else None)
        return seg.text(with_time=False, with_connection=len(self.connections) > 1)

    def fail(self, state: _State, mismatch: Mismatch) -> None:
        if self.best is None or state.done > self.best[0]:
            self.best = (state.done, mismatch)

    def run(self) -> list[Mismatch]:
        start = _State(tuple(0 for _ in self.connections), 0, float("-inf"), "", 0)
        main = tuple(s for s in self.exp.steps if not isinstance(s, Meanwhile))
        found = self.seq(main, start)
        mismatches = [] if found is not None else [self.best[1]]
        for block in (s for s in self.exp.steps if isinstance(s, Meanwhile)):
            mismatches += self.meanwhile(block)
        mismatches += self.check_nevers()
        return mismatches

    def meanwhile(self, block: Meanwhile) -> list[Mismatch]:
        """Events of a `meanwhile:` block: in order among themselves, not against the wire."""
        state = _State((), 0, float("-inf"), "", 0)
        self.best = None
        for step in block.steps:
            state = self.event(step, state)
            if state is None:
                return [self.best[1]]
        return []

    def seq(self, steps: tuple, state: _State) -> _State | None:
        if not steps:
            return self.finish(state)
        step, rest = steps[0], steps[1:]
        if isinstance(step, Repeat):
            return self.repeat(step, rest, state)
        if isinstance(step, OneOf):
            for branch in step.branches:
                found = self.seq(tuple(branch) + rest, state)
                if found is not None:
                    return found
            return self.seq(rest, state) if step.optional else None
        nxt = self.step(step, state)
        if nxt is not None:
            found = self.seq(rest, nxt)
            if found is not None:
                return found
        if step.optional:
            return self.seq(rest, state)
        return None

    def repeat(self, step: Repeat, rest: tuple, state: _State) -> _State | None:
        """Greedy: take as many segments as match one of the lines, then give back one at a time
        until the rest of the expectation matches (iterative: long transfers are thousands)."""
        states = [state]
        while True:
            for line in step.lines:
                nxt = self.segment(line, states[-1], quiet=True)
                if nxt is not None:
                    states.append(nxt)
                    break
            else:
                break
        for candidate in reversed(states):
            found = self.seq(rest, candidate)
            if found is not None:
                return found
        return None

    def step(self, step: Step, state: _State) -> _State | None:
        if isinstance(step.line, SegmentLine):
            return self.segment(step, state)
        return self.event(step, state)

    def _in_order(self, t: float, kind: str, state: _State) -> bool:
        slack = CLOCK_TOLERANCE if state.last_kind and state.last_kind != kind else 0.0
        return t >= state.last_t - slack

    def segment(self, step: Step, state: _State, quiet: bool = False) -> _State | None:
        fail = (lambda *a: None) if quiet else self.fail
        want: SegmentLine = step.line
        conn = want.connection or 1
        if conn > len(self.connections):
            fail(state, Mismatch(step.lineno, f"connection @{conn} never happened (the capture has {len(self.connections)})", step.text))
            return None
        pos = state.seg_pos[conn - 1]
        segs = self.connections[conn - 1]
        if pos >= len(segs):
            fail(state, Mismatch(step.lineno, f"no more segments in connection @{conn}", step.text, "(nothing)"))
            return None
        got = segs[pos]
        diff = segment_difference(want, got)
        if diff is not None:
            field, ev, av = diff
            fail(state, Mismatch(step.lineno, "segment differs", step.text, self.show(got, want), field, ev, av))
            return None
        if not self._in_order(got.t, "segment", state):
            fail(state, Mismatch(step.lineno, "segment came before the previous step", step.text, self.show(got, want)))
            return None
        seg_pos = list(state.seg_pos)
        seg_pos[conn - 1] = pos + 1
        return _State(tuple(seg_pos), state.ev_pos, got.t, "segment", state.done + 1)

    def event(self, step: Step, state: _State) -> _State | None:
        want: EventLine = step.line
        near = None
        for i in range(state.ev_pos, len(self.events)):
            got = self.events[i]
            if got.side != want.side or got.name != want.name:
                continue
            diff = event_difference(want, got)
            if diff is not None:
                near = near or (got, diff)
                continue
            if not self._in_order(got.t, "event", state):
                near = near or (got, ("time", "after the previous step", "before it"))
                continue
            return _State(state.seg_pos, i + 1, got.t, "event", state.done + 1)
        if near is not None:
            got, (field, ev, av) = near
            self.fail(state, Mismatch(step.lineno, "event differs", step.text, got.text(with_time=False), field, ev, av))
        else:
            later = [e.text(with_time=False) for e in self.events[state.ev_pos:state.ev_pos + 3]]
            self.fail(state, Mismatch(
                step.lineno, f"no '{want.side} {want.name}' event after the previous step", step.text,
                ("; ".join(later) + (" ..." if len(self.events) > state.ev_pos + 3 else "")) if later else "(no more events)",
            ))
        return None

    def finish(self, state: _State) -> _State | None:
        if not self.exp.checks_segments:
            return state
        for n, segs in enumerate(self.connections, start=1):
            pos = state.seg_pos[n - 1]
            if pos < len(segs):
                what = "unexpected segment" if pos else f"unexpected connection @{n}"
                self.fail(state, Mismatch(None, f"{what} after the last expected step", "(nothing)", self.show(segs[pos])))
                return None
        return state

    def check_nevers(self) -> list[Mismatch]:
        out = []
        for never in self.exp.nevers:
            hit = self._never_hit(never)
            if hit is not None:
                out.append(Mismatch(never.lineno, f"'{never.text}' was violated", never.text, hit))
        return out

    def _never_hit(self, never: Never) -> str | None:
        if never.event is not None:
            for got in self.events:
                if got.side == never.event.side and got.name == never.event.name and event_difference(never.event, got) is None:
                    return got.text(with_time=False)
            return None
        for n, segs in enumerate(self.connections, start=1):
            for got in segs:
                if ((never.side is None or got.side == never.side) and got.flags & never.flags == never.flags
                        and all(label in (got.analysis or ()) for label in never.analysis)):
                    return self.show(got)
        return None




def segment_difference(want: SegmentLine, got: SegmentLine):
    """The first field in which an actual segment differs from an expected one, or None."""
    if want.side != got.side:
        return ("direction", f"{want.side} > {'S' if want.side == 'C' else 'C'}", f"{got.side} > {'S' if got.side == 'C' else 'C'}")
    if want.flags is not None and want.flags != got.flags:
        return ("flags", flags_text(want.flags), flags_text(got.flags))
    if want.seq is not None and want.seq != got.seq:
        return ("seq", str(want.seq), str(got.seq))
    if want.length is not None and want.length != got.length:
        return ("length", str(want.length), str(got.length))
    if want.ack is not None and (want.flags is None or want.flags & ACK) and want.ack != got.ack:
        return ("ack", str(want.ack), str(got.ack))
    if want.win is not None and want.win != got.win:
        return ("win", str(want.win), str(got.win))
    if want.tos is not None and want.tos != (got.tos or 0):
        return ("tos", f"0x{want.tos:02x}", f"0x{got.tos or 0:02x}")
    if want.options is not None and want.options != (got.options or ""):
        return ("options", want.options or "(none)", got.options or "(none)")
    if want.analysis is not None:
        missing = [label for label in want.analysis if label not in (got.analysis or ())]
        if missing:
            return ("analysis", ", ".join(want.analysis), ", ".join(got.analysis or ()) or "none")
    return None


def event_difference(want: EventLine, got: EventLine):
    have = dict(got.args)
    for key, value in want.args:
        if key not in have:
            return (key, format_value(value), "(absent)")
        if not _value_matches(value, have[key]):
            return (key, format_value(value), format_value(have[key]))
    return None


def _value_matches(want, got) -> bool:
    if want == "*":
        return True
    if isinstance(want, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and float(want) == float(got)
    return want == got




def match(exp: Expectation, connections: list[list[SegmentLine]], events: list[EventLine]) -> list[Mismatch]:
    """All mismatches (empty: the expectation held). Segment and event times are absolute."""
    return _Matcher(exp, connections, events).run()
