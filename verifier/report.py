"""Report a run: the results table as scenarios finish, failure details, ladders, and the JSON records."""

from __future__ import annotations

from .timeline import ladder, merge, mermaid
from .wire.show import connection_record

STATUS_WORD = {"held": "held", "failed": "FAILED", "error": "ERROR"}


def result_record(r) -> dict:
    """One entry of `run --json` results (DESIGN.md contract, plus extra keys)."""
    return {
        "scenario": r.scenario.name,
        "description": r.scenario.description,
        "seed": r.scenario.seed,
        "runtime": r.runtime.name,
        "runtime_version": r.runtime.version,
        "backend": r.backend,
        "passed": r.passed,
        "status": r.status,
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
    }


class ResultsTable:
    def __init__(self, stream, total: int, matrix: bool = False):
        self.stream = stream
        self.total = total
        self.done = 0
        self.matrix = matrix

    def start(self, plat: dict, runtimes, backend: str, jobs: int) -> None:
        rts = ", ".join(f"{r.name} {r.version}" for r in runtimes)
        self.stream.write(f"verifier run: {self.total} scenario runs on {plat['os']} {plat['kernel']}, {rts}, "
                          f"capture {backend}, {jobs} at a time\n")
        self.stream.flush()

    def add(self, r) -> None:
        self.done += 1
        conns = len(r.connections)
        self.stream.write(
            f"[{self.done:>2}/{self.total}] {STATUS_WORD[r.status]:<6}  {r.scenario.name:<24} {r.runtime.name:<7} "
            f"{r.packets:>4} packets {conns:>2} conn  {r.duration:6.3f} s\n"
        )
        self.stream.flush()

    def finish(self, results, elapsed: float, fixture_notes: list[str], show_ladder: bool = False, show_mermaid: bool = False) -> None:
        w = self.stream
        for r in results:
            if r.status == "held" and not (show_ladder or show_mermaid):
                continue
            w.write(f"\n--- {r.scenario.name} ({r.runtime.name} {r.runtime.version}): {STATUS_WORD[r.status]}\n")
            if r.scenario.seed:
                w.write(f"seed: {r.scenario.seed}\n")
            for p in r.problems:
                w.write(f"problem: {p}\n")
            for m in r.mismatches:
                w.write(m.text(r.scenario.expectation_source) + "\n")
            if r.pcap_path:
                w.write(f"capture: {r.pcap_path}\n")
            entries = merge(r.connections, r.events)
            if show_ladder or r.status != "held":
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
        counts = {k: sum(1 for r in results if r.status == k) for k in STATUS_WORD}
        if self.matrix:
            w.write("\n" + matrix_table(results))
        w.write(f"\n{len(results)} runs: {counts['held']} held, {counts['failed']} failed, {counts['error']} errors "
                f"in {elapsed:.2f} s\n")
        w.flush()


MATRIX_WORD = {"held": "held", "failed": "differs", "error": "failed"}


def matrix_table(results) -> str:
    """scenario x runtime: held (the expectation held), differs (the wire or the events differ
    from it), failed (the program or the lab failed: see the problems)."""
    runtimes = list(dict.fromkeys(r.runtime.name for r in results))
    names = list(dict.fromkeys(r.scenario.name for r in results))
    cell = {(r.scenario.name, r.runtime.name): MATRIX_WORD[r.status] for r in results}
    width = max(len(n) for n in names)
    lines = [f"{'scenario':<{width}}  " + "  ".join(f"{rt:<8}" for rt in runtimes)]
    for n in names:
        lines.append(f"{n:<{width}}  " + "  ".join(f"{cell.get((n, rt), '-'):<8}" for rt in runtimes))
    return "\n".join(lines) + "\n"
