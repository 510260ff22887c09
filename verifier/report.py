"""Report a run: the results table as scenarios finish, failure details, ladders, and the JSON records."""

from __future__ import annotations

from .drift import FixtureCheck, status_of
from .timeline import ladder, merge, mermaid
from .wire.show import connection_record

# the run line's word for each status (drifted: held its expectation, differs from its fixture)
STATUS_WORD = {"held": "held", "failed": "FAILED", "error": "ERROR", "drifted": "DRIFTED"}


def counted(n: int, thing: str) -> str:
    """"1 run", "2 runs"."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def result_record(r, fixture: FixtureCheck | None = None) -> dict:
    """One entry of `run --json` results (DESIGN.md contract, plus extra keys); `fixture` is the
    comparison with the checked-in fixture (null when there is none, or none was made)."""
    status = status_of(r, fixture)
    return {
        "scenario": r.scenario.name,
        "description": r.scenario.description,
        "seed": r.scenario.seed,
        "runtime": r.runtime.name,
        "runtime_version": r.runtime.version,
        "backend": r.backend,
        "passed": status == "held",
        "status": status,
        "mismatches": [dict(m.record(), source=r.scenario.expectation_source) for m in r.mismatches],
        "problems": r.problems,
        "notes": r.notes,
        "pcap": r.pcap_path,
        "duration": round(r.duration, 6),
        "harness_wall": round(r.wall, 6),
        "packets": r.packets,
        "dropped": r.dropped,
        "connections": [connection_record(c) for c in r.connections],
        "events": [{"t": e.t, "side": e.side, "name": e.name, "args": dict(e.args)} for e in r.events],
        "fixture": fixture.record() if fixture is not None else None,
    }


class ResultsTable:
    """The run's table on a stream: a header, one line per run as it finishes, then the details."""

    def __init__(self, stream, total: int, matrix: bool = False, name_width: int = 24):
        self.stream = stream
        self.total = total
        self.done = 0
        self.matrix = matrix
        self.name_width = name_width  # the longest scenario name of the run: the columns stay aligned

    def start(self, plat: dict, runtimes, backend: str, jobs: int) -> None:
        rts = ", ".join(f"{r.name} {r.version}" for r in runtimes)
        self.stream.write(f"verifier run: {counted(self.total, 'scenario run')} on {plat['os']} {plat['kernel']}, {rts}, "
                          f"capture {backend}, {jobs} at a time\n")
        self.stream.flush()

    def add(self, r, fixture: FixtureCheck | None = None) -> None:
        self.done += 1
        conns = len(r.connections)
        self.stream.write(
            f"[{self.done:>2}/{self.total}] {STATUS_WORD[status_of(r, fixture)]:<7} {r.scenario.name:<{self.name_width}} {r.runtime.name:<7} "
            f"{r.packets:>4} packets {conns:>2} conn  {r.duration:6.3f} s\n"
        )
        self.stream.flush()

    def finish(self, results, elapsed: float, fixture_notes: list[str], show_ladder: bool = False, show_mermaid: bool = False,
               fixtures: list[FixtureCheck | None] | None = None) -> None:
        """`fixtures`: each result's fixture comparison, in the order of `results` (None: none made)."""
        w = self.stream
        checks = list(fixtures) if fixtures is not None else [None] * len(results)
        statuses = [status_of(r, c) for r, c in zip(results, checks)]
        for r, check, status in zip(results, checks, statuses):
            if status == "held" and not (show_ladder or show_mermaid):
                continue
            w.write(f"\n--- {r.scenario.name} ({r.runtime.name} {r.runtime.version}): {STATUS_WORD[status]}\n")
            if r.scenario.seed:
                w.write(f"seed: {r.scenario.seed}\n")
            for p in r.problems:
                w.write(f"problem: {p}\n")
            for m in r.mismatches:
                w.write(m.text(r.scenario.expectation_source) + "\n")
            if check is not None and check.drifted:
                w.write(f"fixture: differs from {check.path} (how: below, where behaviour differs)\n")
            if r.pcap_path:
                w.write(f"capture: {r.pcap_path}\n")
            entries = merge(r.connections, r.events)
            if show_ladder or status != "held":
                w.write(ladder(entries, r.connections))
            if show_mermaid:
                w.write("```mermaid\n" + mermaid(entries, r.connections) + "```\n")
        for r in results:
            for note in r.notes:
                w.write(f"note: {r.scenario.name} ({r.runtime.name}): {note}\n")
        if fixture_notes:
            w.write("\nwhere behaviour differs (from the checked-in fixtures, or between runtimes):\n")
            for note in fixture_notes:
                w.write(note + "\n")
        if self.matrix:
            w.write("\n" + matrix_table(results, checks))
        w.write(f"\n{count_line(statuses)} in {elapsed:.2f} s\n")
        w.flush()


def count_line(statuses: list[str]) -> str:
    """"13 runs: 12 held, 0 failed, 0 errors, 1 drifted" (drifted only when some did)."""
    n = {k: statuses.count(k) for k in STATUS_WORD}
    line = f"{counted(len(statuses), 'run')}: {n['held']} held, {n['failed']} failed, {counted(n['error'], 'error')}"
    return line + (f", {n['drifted']} drifted" if n["drifted"] else "")


def matrix_table(results, fixtures: list[FixtureCheck | None] | None = None) -> str:
    """scenario x runtime, in the run lines' words: held, FAILED (the wire or the events differ
    from the expectation), ERROR (the program or the lab failed: see the problems), DRIFTED
    (held, but differs from the checked-in fixture)."""
    checks = list(fixtures) if fixtures is not None else [None] * len(results)
    runtimes = list(dict.fromkeys(r.runtime.name for r in results))
    names = list(dict.fromkeys(r.scenario.name for r in results))
    cell = {(r.scenario.name, r.runtime.name): STATUS_WORD[status_of(r, c)] for r, c in zip(results, checks)}
    width = max(len(n) for n in names + ["scenario"])
    lines = [f"{'scenario':<{width}}  " + "  ".join(f"{rt:<8}" for rt in runtimes)]
    for n in names:
        lines.append(f"{n:<{width}}  " + "  ".join(f"{cell.get((n, rt), '-'):<8}" for rt in runtimes))
    return "\n".join(lines) + "\n"


def recorded_lines(written: int, not_recorded: list[tuple[object, str]], where: str, runtime_labels: list[str]) -> list[str]:
    """What `--record` wrote, exactly: "fixtures: 13 written under captures/linux-6.18/ (node-20),
    0 not recorded", then one line per run not recorded, with its reason."""
    head = (f"fixtures: {written} written under {where} ({', '.join(runtime_labels)}), "
            f"{len(not_recorded)} not recorded")
    return [head] + [f"  not recorded: {r.scenario.name} ({r.runtime.label}): {why}" for r, why in not_recorded]


def accepted_line(result, path: str) -> str:
    """"accepted: wrote test/close.expect (2 connections, 14 segments, 9 events) from node 20.20.2"."""
    segments = sum(len(c.segments) for c in result.connections)
    what = ", ".join((counted(len(result.connections), "connection"), counted(segments, "segment"),
                      counted(len(result.events), "event")))
    return f"accepted: wrote {path} ({what}) from {result.runtime.kind} {result.runtime.version}"
