"""How a run differs from its checked-in fixture, or from the same scenario under another runtime, in `verifier diff`'s words."""

from __future__ import annotations

from dataclasses import dataclass

from .diff import Behaviour, compare, differences, from_connections, parse_transcript
from .record import stable_events
from .wire.transcript import NotationError


@dataclass(frozen=True)
class FixtureCheck:
    """A run compared with the fixture transcript of its platform and runtime (A = fixture, B = the run)."""

    path: str
    differences: tuple[str, ...] = ()  # diff's words; empty: the same behaviour
    rows: tuple[str, ...] = ()  # the rows of diff's side by side that differ, for the note

    @property
    def drifted(self) -> bool:
        return bool(self.differences)

    def record(self) -> dict:
        return {"path": self.path, "differences": list(self.differences)}


def run_behaviour(result) -> Behaviour:
    """A run's connections and events as a diff.Behaviour (ephemeral ports as in fixtures)."""
    b = from_connections(f"{result.scenario.name} ({result.runtime.name})", result.connections)
    b.events, b.has_events = stable_events(result.events, set(result.scenario.ports)), True
    return b


def check_fixture(fixture_text: str, path: str, result) -> FixtureCheck:
    """Compare a run with the text of its fixture transcript. A fixture that cannot be read as a
    transcript is a difference too: a check that silently passed would hide the drift."""
    try:
        fixture = parse_transcript(fixture_text, path)
    except NotationError as e:
        return FixtureCheck(path, (f"the fixture cannot be read as a transcript: {e}",))
    d = compare(fixture, run_behaviour(result))
    rows = tuple(f"{ta:<40} {marker} {tb}".rstrip() for c in d.connections for marker, ta, tb in c.rows if marker != " ")
    return FixtureCheck(path, tuple(differences(d)), rows)


def status_of(result, check: FixtureCheck | None) -> str:
    """The run line's status: the lab's held / failed / error, and drifted for a run that held
    its expectation but differs from its fixture (a failed run stays failed, an error stays error)."""
    if result.status == "held" and check is not None and check.drifted:
        return "drifted"
    return result.status


def fixture_note(result, check: FixtureCheck) -> str:
    """What `verifier run` prints for a run that differs from its fixture: the differences, then the rows."""
    lines = [f"  - {n}" for n in check.differences] + [f"      {row}" for row in check.rows]
    return (f"{result.scenario.name} ({result.runtime.label}) vs {check.path} (A = fixture, B = this run):\n"
            + "\n".join(lines))


def runtime_differences(results) -> list[str]:
    """For a matrix run: per scenario, how each runtime differs from the first one."""
    notes = []
    by_scenario: dict[str, list] = {}
    for r in results:
        by_scenario.setdefault(r.scenario.name, []).append(r)
    for name, rs in by_scenario.items():
        base = rs[0]
        for other in rs[1:]:
            d = compare(run_behaviour(base), run_behaviour(other))
            if not d.equal:
                lines = "\n".join(f"  - {n}" for n in differences(d))
                notes.append(f"{name}: {base.runtime.name} (A) vs {other.runtime.name} (B):\n{lines}")
    return notes
