"""Run one scenario for real: namespace, capture, the program as an unprivileged user, then check."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import stat
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EnvironmentProblem, UsageError, VerifierError
from ..events import parse_events
from ..expectation import Expectation, iter_steps
from ..match import Mismatch, match
from ..scenario import BUILTIN_DIR, PROBE, Scenario
from ..timeline import segment_lines
from ..wire.connections import Connection
from ..wire.show import CaptureReading
from ..wire.transcript import EventLine, SegmentLine
from .capture import TcpdumpCapture, capture_backend
from .process import Cancelled, run_program
from .host import LOOPBACK_INTERFACE, Host, os_family
from .runtime import Runtime

# The program's side of the fault channel (lab.fault): copied beside the program and the probe as
# ./fault.mjs wherever the probe goes (the work folder's copy, the overlay on the user's folder).
FAULT_MODULE = PROBE.with_name("fault.mjs")

EVENT_LOG_CAP = 4 << 20  # bytes of probe log read back at most
NO_CONNECTION = "the program made no TCP connection: nothing of it was on the wire"


@dataclass
class ScenarioResult:
    scenario: Scenario
    runtime: Runtime
    backend: str
    status: str  # "held", "failed" (the wire or events differ), "error" (the program or the lab failed),
    #              "unchecked" (ran cleanly, no expectation: `--accept` writes one from it)
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


WORK_PREFIX = "verifier-run-"


@functools.cache
def remove_leftover_work_dirs() -> list[str]:
    """Remove the work folders (`verifier-run-<pid>-...` in the temp folder) of runs whose process
    is gone (a SIGKILLed run cannot clean up after itself); once per process. Their paths."""
    from .netns import left_by_dead_process

    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(tempfile.gettempdir()):
            if entry.is_dir(follow_symlinks=False) and left_by_dead_process(entry.name, WORK_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.path)
    return removed


def _private_dir(user: tuple[int, int]) -> Path:
    """A temp dir the unprivileged program can use: its home, its event log (and a built-in
    program with the probe). Named with our pid, so a later run can tell it is a leftover."""
    remove_leftover_work_dirs()
    path = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-"))
    os.chown(path, *user)
    return path


@dataclass(frozen=True)
class Staged:
    """Where and how a scenario program runs.

    `program` and `cwd` are paths as the program sees them; `overlay` is the user's scenario
    folder that the probe is laid over (in the program's own mount namespace), or None."""

    program: Path
    cwd: Path
    probe: Path
    events_file: Path
    overlay: Path | None = None


def is_builtin(scenario: Scenario) -> bool:
    return scenario.program.resolve().parent == BUILTIN_DIR.resolve()


def runs_in_place(scenario: Scenario, user: tuple[int, int]) -> bool:
    """Where the program runs: in place (the user's program, readable there by `user`), or from
    a copy in the work folder (built-ins; a self-contained program `user` cannot read in place).
    EnvironmentProblem, in one line, for a program that needs its folder but cannot be read there."""
    if is_builtin(scenario):
        return False
    program = scenario.program.resolve()
    why = unreadable(program, user)
    if why is None:
        return True
    if scenario.self_contained:
        return False  # it imports nothing but the probe and Node's built-ins: a copy runs as well
    raise EnvironmentProblem(
        f"{scenario.program}: scenario programs run as uid {user[0]}, which cannot read it where it is: {why}; "
        "make the folder readable (chmod o+rx) or run through sudo as its owner"
    )


def check_readable(scenarios: list[Scenario], user: tuple[int, int]) -> None:
    """Before anything runs: every program can run, in place or from a copy (runs_in_place)."""
    for s in scenarios:
        runs_in_place(s, user)


def stage_program(scenario: Scenario, work: Path, user: tuple[int, int], family: str = "linux") -> Staged:
    """Prepare the program's run, with an empty event log owned by `user` in `work`.

    Built-in programs, and programs that import nothing but ./probe.mjs and Node's built-ins,
    where `user` cannot read them, are copied into `work` with the probe. Otherwise the program
    runs in place, so `../src/server.mjs` and the user's node_modules resolve as in their
    project: on Linux the probe is laid over the program's folder in the program's own mount
    namespace (the user's files are not touched); elsewhere it must already be beside it."""
    events_file = work / "events.jsonl"
    events_file.touch()
    os.chown(events_file, *user)
    if not runs_in_place(scenario, user):
        program = work / scenario.program.name
        shutil.copyfile(scenario.program, program)
        shutil.copyfile(PROBE, work / PROBE.name)
        shutil.copyfile(FAULT_MODULE, work / FAULT_MODULE.name)
        for p in (program, work / PROBE.name, work / FAULT_MODULE.name):
            os.chown(p, *user)
        return Staged(program, work, work / PROBE.name, events_file)
    program = scenario.program.resolve()
    folder = program.parent
    if family != "linux":
        if not (folder / PROBE.name).is_file():
            raise UsageError(f"{scenario.program}: off Linux the probe cannot be laid over your folder: "
                             f"copy {PROBE} beside the program")
        return Staged(program, folder, folder / PROBE.name, events_file)
    if any(c in str(folder) for c in OVERLAY_UNSAFE):
        raise UsageError(f"{folder}: a folder whose path holds ',', ':', '\\' or a newline cannot be overlaid "
                         "with the probe: move the scenario")
    return Staged(program, folder, folder / PROBE.name, events_file, overlay=folder)


OVERLAY_UNSAFE = (",", ":", "\\", "\n")

# Inside the program's mount namespace (`ip netns exec` makes one, its mounts private to it): a
# tmpfs for overlayfs' upper and work folders, the probe in the upper folder, which takes the
# lower folder's owner and mode (it stands for the folder itself), the fault module beside it,
# the overlay on the scenario's folder, then the program, from that folder. Arguments: the tmpfs
# mount point, the folder, the probe, the fault module.
OVERLAY_SCRIPT = """set -e
mount -t tmpfs -o mode=0755 verifier "$1"
mkdir "$1/upper" "$1/work"
cp "$3" "$1/upper/probe.mjs"
cp "$4" "$1/upper/fault.mjs"
chmod 0644 "$1/upper/probe.mjs" "$1/upper/fault.mjs"
chown --reference="$2" "$1/upper"
chmod --reference="$2" "$1/upper"
mount -t overlay verifier -o "lowerdir=$2,upperdir=$1/upper,workdir=$1/work" "$2"
cd "$2"
shift 4
exec "$@"
"""


def overlay_command(ns, argv: list[str], user: tuple[int, int], staged: Staged, work: Path) -> list[str]:
    """`argv` in the namespace as `user`, with the probe laid over the scenario's folder first
    (root does the mounts, then drops to `user` as Namespace.command does)."""
    enter = ns.command([])  # ip netns exec NAME
    as_user = ns.command(argv, user=user)[len(enter):]  # setpriv ... -- argv
    point = work / "overlay"
    point.mkdir()
    return enter + ["sh", "-c", OVERLAY_SCRIPT, "verifier-overlay", str(point), str(staged.overlay), str(PROBE),
                    str(FAULT_MODULE), *as_user]


def unreadable(program: Path, user: tuple[int, int]) -> str | None:
    """Why `user` cannot run the program in place (a folder on the way it cannot enter, the
    program it cannot read), else None."""
    from .runtime import _allows, unreachable

    uid, gid = user
    why = unreachable(str(program.parent), uid, {gid})
    if why is None:
        st = os.stat(program)
        if not _allows(st, uid, {gid}, 4):
            why = f"{program} (mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid}) is not readable by uid {uid}"
    return why


def program_env(scenario: Scenario, runtime: Runtime, work: Path, staged: Staged, faults=None) -> dict[str, str]:
    """Exactly the environment a scenario program gets."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "VERIFIER_EVENTS": str(staged.events_file),
           "VERIFIER_PROBE": str(staged.probe), **scenario.env, **runtime.env}
    if "DENO_DIR" in env:  # deno's cache: in the work folder, wherever the program runs from
        env["DENO_DIR"] = str(work / ".deno")
    if staged.overlay is not None:
        env.pop("DENO_NO_PACKAGE_JSON", None)  # the user's package.json and node_modules are theirs to use
    if faults is not None:
        env.update(faults.env)  # VERIFIER_FAULT: the channel's socket
    return env


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


def faults_for(ns, family: str, work: Path, user: tuple[int, int], scenario: Scenario):
    """The fault channel of the run (lab.fault: `await fault(...)` in the program), in the scenario's
    namespace; a null context (None) off Linux, where the program's fault() then fails saying why."""
    if family != "linux":
        return contextlib.nullcontext(None)
    from .fault import FaultChannel

    return FaultChannel(ns, work, user, default_port=int(scenario.env.get("VERIFIER_PORT", "5000")))


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
    check_readable([scenario], user)
    work = _private_dir(user)
    try:
        staged = stage_program(scenario, work, user, family)
        if scenario.syn_rto is not None and family != "linux":
            result.notes.append(SYN_RTO_IGNORED)
        with place_for(scenario, family) as ns, syn_rto_for(scenario, family) as cgroup, \
                faults_for(ns, family, work, user, scenario) as faults:
            cap = capture_for(backend, family, scenario)
            cap.start(ns)
            try:
                env = program_env(scenario, runtime, work, staged, faults)
                if stop is not None and stop.is_set():
                    raise Cancelled("the run was interrupted")
                command = runtime.command(staged.program, own_config=staged.overlay is not None)
                if staged.overlay is not None:
                    argv = overlay_command(ns, command, user, staged, work)
                else:
                    argv = ns.command(command, user=user)
                if cgroup is not None:
                    argv = cgroup.command(argv)  # joins the cgroup first, then the namespace, then drops root
                proc = run_program(
                    argv, env=env, cwd=str(staged.cwd), timeout=scenario.timeout, cancel=stop, halt=cap.overflow,
                )
            except BaseException:
                cap.close()  # interrupted: release the sniffer, keep nothing
                raise
            if faults is not None:
                faults.close()  # the relay stops before the capture drains: nothing re-enters the wire after
                result.problems += faults.problems()
            captured = cap.stop()
        result.duration = proc.duration
        result.stderr = proc.stderr
        result.pcap = captured.pcap
        result.packets = captured.packets
        result.dropped = captured.dropped
        with open(staged.events_file, "rb") as f:
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
        if result.problems:
            tail = stderr_tail(proc.stderr)
            if tail:
                result.problems.append("its stderr ends: " + " | ".join(tail))
        elif expectation is not None and expectation.checks_segments and not result.connections:
            # a behaviour (Deno's resetAndDestroy() before connect sends nothing), said as that
            first = next(st for st in iter_steps(expectation.steps) if isinstance(st.line, SegmentLine))
            result.mismatches = [Mismatch(first.lineno, NO_CONNECTION, first.text, "(no packet at all)")]
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
            result.status = "unchecked"  # ran cleanly with nothing to check against (`--accept` writes one)
        else:
            result.status = "failed" if result.mismatches else "held"
    except EnvironmentProblem:
        raise
    except VerifierError as e:
        result.problems.append(str(e))
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the overlay's mounts went with the program's mount namespace
        result.wall = time.monotonic() - started
    return result


def run_many(jobs: list[tuple[Scenario, Expectation | None, Runtime]], backend: str, parallel: int, keep_dir: Path,
             on_result=None) -> list[ScenarioResult]:
    """Run (scenario, expectation, runtime) jobs, `parallel` at a time; results in job order.
    The caller checks first that every program can run (check_readable), as cmd_run does."""
    stop = threading.Event()
    results: list[ScenarioResult | None] = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="scenario") as pool:
        # the longest first (a scenario's floor: says how long its own timers take, its timeout:
        # how long it may), so a long one does not start last and hold the whole run up: results
        # still come back in job order
        order = sorted(range(len(jobs)), key=lambda n: (-jobs[n][0].floor, -jobs[n][0].timeout))
        futures = {
            pool.submit(run_scenario, jobs[n][0], jobs[n][1], jobs[n][2], backend, keep_dir, stop): n
            for n in order
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
