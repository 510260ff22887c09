"""Markdown for a CI job summary ($GITHUB_STEP_SUMMARY): the results table, then each failure's or drift's details and diagram."""

from __future__ import annotations

from .drift import FixtureCheck, status_of
from .report import STATUS_WORD, count_line
from .timeline import merge, mermaid


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fence(body: str, lang: str = "text") -> list[str]:
    # a body holding ``` itself would end the block early: use a longer fence than any inside
    ticks = "```"
    while ticks in body:
        ticks += "`"
    return [ticks + lang, body.rstrip("\n"), ticks]


def summary_markdown(plat: dict, runtimes, results, fixtures: list[FixtureCheck | None] | None = None,
                     elapsed: float | None = None) -> str:
    """The Markdown of one `verifier run`: a heading with the platform and runtimes, a table of
    every run in the run lines' words, then for each FAILED / ERROR / DRIFTED run its problems,
    mismatches (file:line, field, expected vs actual), fixture differences and a mermaid diagram."""
    checks = list(fixtures) if fixtures is not None else [None] * len(results)
    statuses = [status_of(r, c) for r, c in zip(results, checks)]
    rts = ", ".join(f"{r.name} {r.version}" for r in runtimes)
    took = f" in {elapsed:.2f} s" if elapsed is not None else ""
    label = f" ({plat['label']})" if plat.get("label") else ""
    out = [f"## verifier run: {plat['os']} {plat['kernel']}{label}, {rts}", "",
           f"{count_line(statuses)}{took}", "",
           "| scenario | runtime | status | packets | connections | duration |",
           "|---|---|---|---:|---:|---:|"]
    for r, status in zip(results, statuses):
        word = STATUS_WORD[status]
        out.append(f"| {_cell(r.scenario.name)} | {_cell(r.runtime.name)} {_cell(r.runtime.version)} | "
                   f"{word if status == 'held' else f'**{word}**'} | {r.packets} | {len(r.connections)} | {r.duration:.3f} s |")
    for r, check, status in zip(results, checks, statuses):
        if status == "held":
            continue
        out += ["", f"### {_cell(r.scenario.name)} ({_cell(r.runtime.name)} {_cell(r.runtime.version)}): {STATUS_WORD[status]}", ""]
        if r.scenario.description:
            out += [_cell(r.scenario.description), ""]
        if r.problems:
            out += [f"- problem: {_cell(p)}" for p in r.problems] + [""]
        if r.mismatches:
            out += ["Mismatches:", ""]
            out += _fence("\n".join(m.text(r.scenario.expectation_source) for m in r.mismatches)) + [""]
        if check is not None and check.drifted:
            out += [f"Differs from the fixture `{check.path}` (A = fixture, B = this run):", ""]
            out += [f"- {_cell(d)}" for d in check.differences] + [""]
            if check.rows:
                out += _fence("\n".join(check.rows)) + [""]
        out += _fence(mermaid(merge(r.connections, r.events), r.connections), "mermaid")
    return "\n".join(out) + "\n"
