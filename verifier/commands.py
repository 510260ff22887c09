"""The lab verbs of the command line (list, run): wiring from arguments to the lab and the reports."""

from __future__ import annotations

import json
import os
import platform as _platform
import sys
import tempfile
import time
from pathlib import Path

from .errors import EXIT_FAILED, EXIT_OK, EnvironmentProblem, UsageError
from .lab.host import os_family

# The scenario, expectation, lab and report modules are imported by the verbs that use them:
# building the parser must stay cheap, `verifier show` never needs them.

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
    run.add_argument("--no-fixture-check", action="store_true",
                     help="do not compare runs with the checked-in fixtures (exploratory runs: drift then exits 0)")
    run.add_argument("--summary", metavar="FILE", help="append Markdown for a CI job summary ($GITHUB_STEP_SUMMARY) to FILE")
    run.add_argument("--accept", action="store_true",
                     help="write NAME.expect beside each program (given by path) from what this run observed")
    run.set_defaults(handler=cmd_run)

    diff = sub.add_parser("diff", help="compare two captures, transcripts or fixture folders, point by point")
    diff.add_argument("a", metavar="A", help="a pcap/pcapng file, a .txt transcript, or a fixture folder")
    diff.add_argument("b", metavar="B")
    diff.add_argument("--strict", action="store_true", help="compare windows, options, exact numbers and segmentation too")
    diff.add_argument("--json", action="store_true", help="JSON instead of text")
    diff.set_defaults(handler=cmd_diff)


def cmd_list(args, out) -> int:
    from . import scenario as scenarios

    items = scenarios.builtin()
    width = max((len(s.name) for s in items), default=0)
    for s in items:
        out.write(f"{s.name:<{width}}  {s.description}\n")
    return EXIT_OK


def platform_info() -> dict:
    release = _platform.release()
    major_minor = ".".join(release.split(".")[:2])
    return {"os": os_family(), "kernel": release, "label": f"{os_family()}-{major_minor}",
            "machine": _platform.machine(), "python": _platform.python_version()}


def _check_writable_dir(path: Path, option: str, create: bool = True) -> None:
    """Create `path` if asked to; a user error (exit 2, one line) if it cannot be written."""
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{option} {path}: cannot create it: {e.strerror}") from None
    if not path.is_dir() or not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: not a writable folder")


RUNS_DIR = Path(tempfile.gettempdir()) / "verifier-runs"


def last_run_dir() -> Path:
    """Where a run keeps its pcaps without --keep: /tmp/verifier-runs/<pid>/. The folders of
    earlier runs whose process is gone are removed first, so they do not pile up."""
    import shutil

    import psutil

    if RUNS_DIR.is_dir():
        for d in RUNS_DIR.iterdir():
            if d.name.isdigit() and not psutil.pid_exists(int(d.name)):
                shutil.rmtree(d, ignore_errors=True)
    here = RUNS_DIR / str(os.getpid())
    here.mkdir(parents=True, exist_ok=True)
    return here


def _check_writable_file(path: Path, option: str) -> None:
    """A file to write or append to: its folder must exist and be writable, and the file too if it exists."""
    _check_writable_dir(path.resolve().parent, option, create=False)
    if path.exists() and (path.is_dir() or not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not a writable file")


def _check_accept(args, rts) -> None:
    """--accept writes one expectation per program from one run, beside a program given by path."""
    if len(rts) > 1:
        raise UsageError("--accept takes one --runtime: an expectation is written from one run")
    if not args.scenarios:
        raise UsageError("--accept writes NAME.expect beside a program given by path: name your own .mjs files or "
                         "folders (the built-in scenarios' expectations belong to verifier)")
    named = [item for item in args.scenarios if not Path(item).exists()]
    if named:
        raise UsageError(f"--accept writes NAME.expect beside a program given by path; {named[0]} is built in "
                         "(its expectation belongs to verifier): give your own .mjs file or folder")


def _refuse_missing_expectations(chosen) -> None:
    for s in chosen:
        if s.expectation is None:
            raise UsageError(s.missing_expectation())


def _fixture_check(folder: Path, result):
    """The run against its fixture transcript, if there is one (the file is read here; drift compares)."""
    from .drift import FixtureCheck, check_fixture

    path = folder / f"{result.scenario.name}.txt"
    if result.status == "error" and not result.pcap:
        return None  # nothing was captured: there is no behaviour to compare
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        return FixtureCheck(str(path), (f"the fixture cannot be read: {getattr(e, 'strerror', None) or e}",))
    return check_fixture(text, str(path), result)


def cmd_run(args, out) -> int:
    from . import scenario as scenarios
    from .drift import status_of
    from .expectation import parse as parse_expectation
    from .record import fixture_dir
    from .report import ResultsTable, result_record
    from .lab import runtime as runtimes
    from .lab.netns import check_privileges, remove_leftovers, unprivileged_user
    from .lab.run import check_readable, run_many
    from .lab.synrto import jiffies_for

    if args.jobs < 1:
        raise UsageError("-j takes a positive number")
    # Where results go must be writable before minutes are spent producing them
    if args.json and args.json != "-":
        _check_writable_dir(Path(args.json).resolve().parent, "--json", create=False)
    if args.summary:
        _check_writable_file(Path(args.summary), "--summary")
    if args.record:
        _check_writable_dir(args.captures, "--captures")
    if args.keep:
        _check_writable_dir(args.keep, "--keep")
    if args.accept and args.record:
        raise UsageError("--accept and --record: one at a time (accept writes expectations, record writes fixtures)")
    if args.backend == "scapy":
        # scapy (it writes the backend's pcap) takes ~0.15 s to import: do it while the
        # expectations are parsed and the first namespaces are made, not inside a scenario
        import threading

        from .lab.capture import import_scapy

        threading.Thread(target=import_scapy, name="import-scapy", daemon=True).start()
    chosen = scenarios.resolve(args.scenarios)
    family = os_family()
    for s in chosen:
        for warning in getattr(s, "warnings", ()):
            print(f"warning: {warning}", file=sys.stderr)
    if args.accept:
        _check_accept(args, args.runtime or ["node"])
    else:
        _refuse_missing_expectations(chosen)
    expectations = {}
    for s in chosen:  # a bad expectation stops everything before anything runs (exit 2)
        if args.accept:  # nothing to hold against: what the run observes becomes the expectation
            expectations[s.name, str(s.program)] = parse_expectation("", family, s.expectation_source or str(s.program))
        elif s.expectation is not None:
            text = "\n" * s.expectation_offset + s.expectation
            expectations[s.name, str(s.program)] = parse_expectation(text, family, s.expectation_source)
    if family == "linux":
        check_privileges()
        remove_leftovers()
        for s in chosen:  # an RTO this kernel cannot express stops everything before anything runs (exit 2)
            if s.syn_rto is not None:
                jiffies_for(s.syn_rto, str(s.program))
    elif family == "darwin" and os.geteuid() != 0:
        from .lab.netns import typed_command

        raise EnvironmentProblem(f"capturing on lo0 needs root: run `{typed_command()}`")
    rts = [runtimes.resolve(r) for r in (args.runtime or ["node"])]
    plat = platform_info()
    keep = args.keep or last_run_dir()
    jobs = [(s, expectations.get((s.name, str(s.program))), rt) for s in chosen for rt in rts]
    check_readable(chosen, unprivileged_user())  # a program the program user cannot read: one line, before the table
    json_to_stdout = args.json == "-"
    table = ResultsTable(sys.stderr if json_to_stdout else out, total=len(jobs), matrix=len(rts) > 1,
                         name_width=max([24] + [len(s.name) for s in chosen]))
    table.start(plat, rts, args.backend, args.jobs)
    compare_fixtures = not (args.record or args.accept or args.no_fixture_check)
    checks: dict[int, object] = {}

    def on_result(r) -> None:  # compared as each run finishes, so its run line can say DRIFTED
        if compare_fixtures:
            checks[id(r)] = _fixture_check(fixture_dir(args.captures, plat["label"], r.runtime.label), r)
        table.add(r, checks.get(id(r)))

    started = time.monotonic()
    results = run_many(jobs, args.backend, args.jobs, keep, on_result=on_result)
    elapsed = time.monotonic() - started
    fixtures = [checks.get(id(r)) for r in results]
    fixture_notes = _fixture_notes(results, fixtures)
    if len(rts) > 1:
        from .drift import runtime_differences

        fixture_notes += runtime_differences(results)
    if args.accept:  # before the details: accept checks each run against what it wrote (held, or failed naming the line)
        _accept(results, family, table.stream)
    table.finish(results, elapsed, fixture_notes, show_ladder=args.ladder, show_mermaid=args.mermaid, fixtures=fixtures)
    if args.record:
        _record(results, plat, rts, args.captures, table.stream)
    if args.summary:
        from .summary import summary_markdown

        with open(args.summary, "a") as f:  # appended: GitHub's step summary gathers every step's
            f.write(summary_markdown(plat, rts, results, fixtures, elapsed))
    if args.json:
        doc = {"platform": {**plat, "backend": args.backend,
                            "runtimes": [{"name": r.name, "version": r.version, "path": r.path} for r in rts]},
               "results": [result_record(r, c) for r, c in zip(results, fixtures)]}
        text = json.dumps(doc, indent=1) + "\n"
        if json_to_stdout:
            out.write(text)
        else:
            Path(args.json).write_text(text)
    return EXIT_OK if all(status_of(r, c) == "held" for r, c in zip(results, fixtures)) else EXIT_FAILED


def _fixture_notes(results, fixtures) -> list[str]:
    from .drift import fixture_note

    return [fixture_note(r, c) for r, c in zip(results, fixtures) if c is not None and c.drifted]


def _record(results, plat: dict, rts, captures: Path, stream) -> None:
    """Write every run that produced a capture as a fixture; say exactly what was written."""
    from .errors import VerifierError
    from .record import fixture_dir, not_recorded_reason, write_fixture
    from .report import recorded_lines

    written, not_recorded = 0, []
    for r in results:
        why = not_recorded_reason(r)
        if why is None:
            try:
                write_fixture(fixture_dir(captures, plat["label"], r.runtime.label), r, plat)
                written += 1
                continue
            except VerifierError as e:  # a capture the wire core cannot read back
                why = f"its capture cannot be read: {e}"
        not_recorded.append((r, why))
    labels = list(dict.fromkeys(rt.label for rt in rts))
    for line in recorded_lines(written, not_recorded, f"{captures}/{plat['label']}/", labels):
        stream.write(line + "\n")


def _accept(results, family: str, stream) -> None:
    """Write each run's expectation beside its program (not for a run that ended in ERROR)."""
    from .accept import write_expectation
    from .report import accepted_line

    for r in results:
        if r.status == "error":
            why = r.problems[0] if r.problems else "the run ended in an error"
            stream.write(f"not accepted: {r.scenario.program}: {why}\n")
            continue
        path = write_expectation(r, family)
        stream.write(accepted_line(r, _shown(path)) + "\n")


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when it is under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --- diff ---------------------------------------------------------------------------------------

BEHAVIOUR_SUFFIXES = (".txt", ".pcapng", ".pcap")


def load_behaviour(path: Path):
    """A capture file or a transcript, as a diff.Behaviour (errors: exit 2, one line)."""
    from .cli import open_capture
    from .diff import from_connections, parse_transcript
    from .errors import CaptureError
    from .wire.show import CaptureReading
    from .wire.transcript import NotationError

    if path.suffix == ".txt":
        try:
            text = path.read_text()
        except OSError as e:
            raise UsageError(f"{path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not a text transcript") from None
        try:
            return parse_transcript(text, str(path))
        except NotationError as e:
            raise UsageError(f"{path}: {e}") from None
    with open_capture(str(path)) as stream:
        reading = CaptureReading(stream)
        try:
            return from_connections(str(path), list(reading.connections()))
        except CaptureError as e:
            raise CaptureError(f"{path}: {e.message}", e.offset) from None


def _scenario_files(folder: Path) -> dict[str, Path]:
    """name -> the file that best describes it: the .txt transcript (it has events), else the capture."""
    found: dict[str, Path] = {}
    for suffix in reversed(BEHAVIOUR_SUFFIXES):
        for p in sorted(folder.glob("*" + suffix)):
            found[p.name[: -len(suffix)]] = p
    return found


def cmd_diff(args, out) -> int:
    from .diff import compare, record, render

    a, b = Path(args.a), Path(args.b)
    for p in (a, b):
        if not p.exists():
            raise UsageError(f"{p}: no such file or folder")
    if a.is_dir() != b.is_dir():
        raise UsageError("compare a folder with a folder, or a file with a file")
    pairs: list[tuple[str, Path, Path]] = []
    only: list[str] = []
    if a.is_dir():
        fa, fb = _scenario_files(a), _scenario_files(b)
        if not fa and not fb:
            raise UsageError(f"no transcripts or captures in {a} or {b}")
        for name in sorted(set(fa) | set(fb)):
            if name in fa and name in fb:
                pairs.append((name, fa[name], fb[name]))
            else:
                only.append(f"{name}: only in {'A' if name in fa else 'B'} ({fa.get(name) or fb.get(name)})")
    else:
        pairs.append(("", a, b))
    results = [(name, compare(load_behaviour(pa), load_behaviour(pb), strict=args.strict)) for name, pa, pb in pairs]
    differ = bool(only) or any(not d.equal for _, d in results)
    if args.json:
        doc = {"a": str(a), "b": str(b), "equal": not differ, "only_one_side": only,
               "scenarios": [dict(record(d), scenario=name or None) for name, d in results]}
        out.write(json.dumps(doc, indent=1) + "\n")
    else:
        for name, d in results:
            if a.is_dir() and d.equal:
                out.write(f"=== {name}: no difference in behaviour\n")
            else:
                out.write(render(d, name) + "\n")
        for line in only:
            out.write(line + "\n")
        if a.is_dir():
            changed = sum(1 for _, d in results if not d.equal)
            scenarios = "1 scenario" if len(results) == 1 else f"{len(results)} scenarios"
            out.write(f"{scenarios} compared: {changed} differ, {len(only)} on one side only\n")
    return EXIT_FAILED if differ else EXIT_OK
