"""Run one scenario for real: namespace, capture, the program as an unprivileged user, then check."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EnvironmentProblem, VerifierError
from ..events import parse_events
from ..expectation import Expectation
from ..match import Mismatch, match
from ..scenario import PROBE, Scenario
from ..timeline import segment_lines
from ..wire.connections import Connection
from ..wire.show import CaptureReading
from ..wire.transcript import EventLine
from .capture import TcpdumpCapture, capture_backend
from .process import Cancelled, run_program
from .host import LOOPBACK_INTERFACE, Host, os_family
from .runtime import Runtime

EVENT_LOG_CAP = 4 << 20  # bytes of probe log read back at most


@dataclass
class ScenarioResult:
    scenario: Scenario
    runtime: Runtime
    backend: str
    status: str  # "held", "failed" (the wire or events differ), "error" (the program or the lab failed)
    mismatches: list[Mismatch] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said about a run that held too (e.g. a header ignored here)
    connections: list[Connection] = field(default_factory=list)
    events: list[EventLine] = field(default_factory=list)
    pcap: bytes = b""
    pcap_path: str | None = None
    duration: float = 0.0  # seconds the scenario's program ran
    wall: float = 0.0  # seconds the harness spent on the scenario, all included
    stderr: str = ""
    packets: int = 0
    dropped: int = 0

    @property
    def passed(self) -> bool:
        return self.status == "held"


def _private_dir(user: tuple[int, int]) -> Path:
    """A temp dir the unprivileged program can use: its program, the probe, its event log."""
    path = Path(tempfile.mkdtemp(prefix="verifier-run-"))
    os.chown(path, *user)
    return path


def stage_program(scenario: Scenario, work: Path, user: tuple[int, int]) -> tuple[Path, Path]:
    """Copy the program and the probe into `work`, with an empty event log, all owned by `user`."""
    program = work / scenario.program.name
    shutil.copyfile(scenario.program, program)
    shutil.copyfile(PROBE, work / PROBE.name)
    events_file = work / "events.jsonl"
    events_file.touch()
    for p in (program, work / PROBE.name, events_file):
        os.chown(p, *user)
    return program, events_file


def program_env(scenario: Scenario, runtime: Runtime, work: Path, events_file: Path) -> dict[str, str]:
    """Exactly the environment a scenario program gets."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "VERIFIER_EVENTS": str(events_file),
            **scenario.env, **runtime.env}


def stderr_tail(text: str, lines: int = 5) -> list[str]:
    """The last lines that say something: stack frames and the runtime's version banner left out."""
    useful = [l.strip() for l in text.splitlines()
              if l.strip() and not l.strip().startswith(("at ", "Node.js v", "^"))]
    return useful[-lines:]


def place_for(scenario: Scenario, family: str):
    """Where the scenario runs: its own namespace on Linux; the host's loopback elsewhere."""
    if family == "linux":
        from .netns import Namespace

        nft = "\n".join(scenario.substitute(rule) for rule in scenario.nft) or None
        return Namespace(scenario.name, sysctls=dict(scenario.sysctls), nft_ruleset=nft)
    if scenario.nft or scenario.sysctls:
        raise VerifierError(
            f"{scenario.name} needs its own firewall rules or sysctls (nft:/sysctl: header lines): "
            "only Linux namespaces give it those without touching the host"
        )
    return Host(family)


SYN_RTO_IGNORED = ("'syn-rto:' ignored: only Linux lets the lab set the initial SYN RTO (a cgroup with a sock_ops "
                   "BPF program); the OS's own RTO applies, so the run takes longer")


def syn_rto_for(scenario: Scenario, family: str):
    """The cgroup giving the program's sockets the scenario's initial SYN RTO (Linux, `syn-rto:`);
    a null context (None) without the header or off Linux (there the header is ignored, with a note)."""
    if scenario.syn_rto is None or family != "linux":
        return contextlib.nullcontext(None)
    from .synrto import SynRtoCgroup

    return SynRtoCgroup(scenario.syn_rto, source=str(scenario.program))


def capture_for(backend: str, family: str, scenario: Scenario):
    """The capture backend: any on Linux (inside the namespace); tcpdump/dumpcap with a port filter elsewhere."""
    if family == "linux":
        return capture_backend(backend)
    return TcpdumpCapture(interface=LOOPBACK_INTERFACE[family], ports=scenario.ports, family=family)


def run_scenario(scenario: Scenario, expectation: Expectation | None, runtime: Runtime, backend: str,
                 keep_dir: Path, stop: threading.Event | None = None, family: str | None = None) -> ScenarioResult:
    from .netns import unprivileged_user

    family = family or os_family()

    started = time.monotonic()
    result = ScenarioResult(scenario, runtime, backend, "error")
    user = unprivileged_user()
    work = _private_dir(user)
    try:
        program, events_file = stage_program(scenario, work, user)
        if scenario.syn_rto is not None and family != "linux":
            result.notes.append(SYN_RTO_IGNORED)
        with place_for(scenario, family) as ns, syn_rto_for(scenario, family) as cgroup:
            cap = capture_for(backend, family, scenario)
            cap.start(ns)
            try:
                env = program_env(scenario, runtime, work, events_file)
                if stop is not None and stop.is_set():
                    raise Cancelled("the run was interrupted")
                argv = ns.command(runtime.command(program), user=user)
                if cgroup is not None:
                    argv = cgroup.command(argv)  # joins the cgroup first, then the namespace, then drops root
                proc = run_program(
                    argv, env=env, cwd=str(work), timeout=scenario.timeout, cancel=stop, halt=cap.overflow,
                )
            except BaseException:
                cap.close()  # interrupted: release the sniffer, keep nothing
                raise
            captured = cap.stop()
        result.duration = proc.duration
        result.stderr = proc.stderr
        result.pcap = captured.pcap
        result.packets = captured.packets
        result.dropped = captured.dropped
        with open(events_file, "rb") as f:
            log = f.read(EVENT_LOG_CAP).decode("utf-8", "replace")
        result.events, event_problems = parse_events(log)
        result.problems += event_problems
        reading = CaptureReading(io.BytesIO(captured.pcap))
        result.connections = list(reading.connections())
        if proc.halted:
            result.problems.append(proc.halted)
        elif proc.timed_out:
            result.problems.append(f"the program did not finish within {scenario.timeout:g} s and was killed")
        elif proc.returncode != 0:
            result.problems.append(f"the program exited with status {proc.returncode}")
        elif expectation is not None and expectation.checks_segments and not result.connections:
            result.problems.append("the program made no TCP connection: nothing of it was on the wire")
        if result.problems:
            tail = stderr_tail(proc.stderr)
            if tail:
                result.problems.append("its stderr ends: " + " | ".join(tail))
        elif expectation is not None:  # a program that failed is reported as that, not as a wire mismatch
            result.mismatches = match(expectation, segment_lines(result.connections), result.events)
        if keep_dir is not None:
            keep_dir.mkdir(parents=True, exist_ok=True)
            path = keep_dir / f"{scenario.name}.{runtime.name}.pcap"
            path.write_bytes(captured.pcap)
            result.pcap_path = str(path)
        if result.problems:
            result.status = "error"
        elif expectation is None:
            result.status = "error"
            result.problems.append("no expectation: add NAME.expect beside the program or a /* expect ... */ block")
        else:
            result.status = "failed" if result.mismatches else "held"
    except EnvironmentProblem:
        raise
    except VerifierError as e:
        result.problems.append(str(e))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        result.wall = time.monotonic() - started
    return result


def run_many(jobs: list[tuple[Scenario, Expectation | None, Runtime]], backend: str, parallel: int, keep_dir: Path,
             on_result=None) -> list[ScenarioResult]:
    """Run (scenario, expectation, runtime) jobs, `parallel` at a time; results in job order."""
    stop = threading.Event()
    results: list[ScenarioResult | None] = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="scenario") as pool:
        futures = {
            pool.submit(run_scenario, scenario, exp, runtime, backend, keep_dir, stop): n
            for n, (scenario, exp, runtime) in enumerate(jobs)
        }
        try:
            for future in as_completed(futures):
                n = futures[future]
                results[n] = future.result()
                if on_result is not None:
                    on_result(results[n])
        except BaseException:
            # Ctrl-C / SIGTERM: queued scenarios never start; running ones kill their program tree,
            # stop their capture and remove their namespace (their `with` blocks) before we leave
            stop.set()
            for f in futures:
                f.cancel()
            pool.shutdown(wait=True)
            raise
    return [r for r in results if r is not None]
