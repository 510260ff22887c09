"""The lab verbs of the command line (list, run): wiring from arguments to the lab and the reports."""

from __future__ import annotations

import json
import os
import platform as _platform
import sys
import tempfile
import time
from pathlib import Path

from . import scenario as scenarios
from .errors import EXIT_FAILED, EXIT_OK, UsageError
from .expectation import parse as parse_expectation
from .record import fixture_dir, write_fixture
from .report import ResultsTable, result_record

DEFAULT_CAPTURES = Path("captures")


def register_lab_verbs(sub) -> None:
    lst = sub.add_parser("list", help="the built-in scenarios, one per line: name, then what it shows")
    lst.set_defaults(handler=cmd_list)

    run = sub.add_parser("run", help="run scenarios in network namespaces, capture, check expectations")
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO|PATH", help="built-in names, .mjs files or folders (default: all built-in)")
    run.add_argument("--runtime", action="append", metavar="NAME|PATH", help="node (default), node22, node24, bun, deno, or a path; repeat for a matrix")
    run.add_argument("--backend", choices=("scapy", "tcpdump"), default="scapy", help="capture backend (default scapy)")
    run.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N", help="scenarios at once (default: cores)")
    run.add_argument("--record", action="store_true", help="write captures/<os>-<kernel>/<runtime>/<scenario>.pcapng and .txt")
    run.add_argument("--captures", type=Path, default=DEFAULT_CAPTURES, metavar="DIR", help="fixture folder (default ./captures)")
    run.add_argument("--json", metavar="OUT|-", help="write results as JSON to a file, or - for stdout")
    run.add_argument("--ladder", action="store_true", help="print each scenario's merged packet/event ladder")
    run.add_argument("--mermaid", action="store_true", help="print each scenario's mermaid sequenceDiagram")
    run.add_argument("--keep", type=Path, metavar="DIR", help="keep each run's pcap here (default: a fresh temp folder)")
    run.set_defaults(handler=cmd_run)


def cmd_list(args, out) -> int:
    items = scenarios.builtin()
    width = max((len(s.name) for s in items), default=0)
    for s in items:
        out.write(f"{s.name:<{width}}  {s.description}\n")
    return EXIT_OK


def os_family() -> str:
    name = sys.platform
    return "linux" if name.startswith("linux") else "darwin" if name == "darwin" else "windows" if name.startswith("win") else "any"


def platform_info() -> dict:
    release = _platform.release()
    major_minor = ".".join(release.split(".")[:2])
    return {"os": os_family(), "kernel": release, "label": f"{os_family()}-{major_minor}",
            "machine": _platform.machine(), "python": _platform.python_version()}


def cmd_run(args, out) -> int:
    from .lab import runtime as runtimes
    from .lab.netns import check_privileges, remove_leftovers
    from .lab.run import run_many

    if args.jobs < 1:
        raise UsageError("-j takes a positive number")
    chosen = scenarios.resolve(args.scenarios)
    family = os_family()
    expectations = {}
    for s in chosen:  # a bad expectation stops everything before anything runs (exit 2)
        if s.expectation is not None:
            text = "\n" * s.expectation_offset + s.expectation
            expectations[s.name, str(s.program)] = parse_expectation(text, family, s.expectation_source)
    check_privileges()
    remove_leftovers()
    rts = [runtimes.resolve(r) for r in (args.runtime or ["node"])]
    plat = platform_info()
    keep = args.keep or Path(tempfile.mkdtemp(prefix="verifier-captures-"))
    jobs = [(s, expectations.get((s.name, str(s.program))), rt) for s in chosen for rt in rts]
    json_to_stdout = args.json == "-"
    table = ResultsTable(sys.stderr if json_to_stdout else out, total=len(jobs), matrix=len(rts) > 1)
    table.start(plat, rts, args.backend, args.jobs)
    started = time.monotonic()
    results = run_many(jobs, args.backend, args.jobs, keep, on_result=table.add)
    elapsed = time.monotonic() - started
    fixture_notes = []
    for r in results:
        folder = fixture_dir(args.captures, plat["label"], r.runtime.label)
        if args.record and r.status != "error":
            write_fixture(folder, r, plat)
        else:
            note = _compare_with_fixture(folder, r)
            if note:
                fixture_notes.append(note)
    table.finish(results, elapsed, fixture_notes, show_ladder=args.ladder, show_mermaid=args.mermaid)
    if args.record:
        table.stream.write(f"fixtures written under {args.captures}/{plat['label']}/\n")
    if args.json:
        doc = {"platform": {**plat, "backend": args.backend,
                            "runtimes": [{"name": r.name, "version": r.version, "path": r.path} for r in rts]},
               "results": [result_record(r) for r in results]}
        text = json.dumps(doc, indent=1) + "\n"
        if json_to_stdout:
            out.write(text)
        else:
            Path(args.json).write_text(text)
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


def _compare_with_fixture(folder: Path, result) -> str | None:
    from .record import transcript_for

    fixture = folder / f"{result.scenario.name}.txt"
    if not fixture.exists() or result.status == "error":
        return None
    want = fixture.read_text()
    got = transcript_for(result)
    if want == got:
        return None
    import difflib

    diff = difflib.unified_diff(want.splitlines(), got.splitlines(), str(fixture), "this run", lineterm="", n=1)
    return f"{result.scenario.name} ({result.runtime.label}) differs from its fixture:\n  " + "\n  ".join(diff)
