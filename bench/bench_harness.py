"""Harness overhead: `verifier run` on the built-in catalogue against a sleep-based harness, side by side.

    sudo .venv/bin/python bench/bench_harness.py [--rounds 3] [--jobs N] [--profile] [--json OUT]

Each round runs, one after the other on the same scenarios:
- ours: `verifier run --json` (the whole catalogue, `-j N`, default the number of cores). Per
  scenario: overhead = harness_wall - duration (the harness's wall time minus the time the
  scenario's own programs ran). Catalogue: the wall time of the whole `verifier run` process.
- sleep: the harness people write by hand, in a namespace like ours (lo up, hosts file, the
  scenario's sysctls, nftables rules and `syn-rto:` cgroup, the program as `nobody` via ip netns
  exec + setpriv):
  start tcpdump, sleep 1 s, run the program, sleep 1 s, stop tcpdump. Serially (the baseline),
  and N at a time (the same parallelism as ours).
Figures are medians over the rounds. --profile adds where the harness's time goes (import
times, per-phase timings of every scenario run in this process, the cost of the tools it starts).
Namespaces it creates are named vbsleep-<pid>-* and removed on every exit path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
sys.path.insert(0, str(ROOT))

from verifier import scenario as scenarios  # noqa: E402
from verifier.scenario import PROBE  # noqa: E402

HOSTS = "::1 localhost\n127.0.0.1 localhost\n"
SLEEP_S = 1.0


# --- ours ---------------------------------------------------------------------------------------


def run_ours(jobs: int, names: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="vbench-") as tmp:
        out = Path(tmp) / "run.json"
        t0 = time.monotonic()
        done = subprocess.run([PY, "-m", "verifier", "run", *(names or []), "-j", str(jobs), "--json", str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        wall = time.monotonic() - t0
        if not out.exists():
            raise SystemExit(f"verifier run failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        doc = json.loads(out.read_text())
    results = doc["results"]
    per = {r["scenario"]: {"duration": r["duration"], "wall": r["harness_wall"], "overhead": r["harness_wall"] - r["duration"],
                           "status": r["status"]} for r in results}
    return {"wall": wall, "exit": done.returncode, "scenarios": per}


# --- the sleep-based harness --------------------------------------------------------------------

_counter = iter(range(1 << 30))
_counter_lock = threading.Lock()


def _ns_name() -> str:
    with _counter_lock:
        return f"vbsleep-{os.getpid()}-{next(_counter)}"


def sleep_one(s, node: str, user: tuple[int, int]) -> dict:
    """One scenario the sleep way; its wall time and its program's."""
    t0 = time.monotonic()
    name = _ns_name()
    work = Path(tempfile.mkdtemp(prefix="vbsleep-"))
    tcpdump = None
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        etc = Path("/etc/netns") / name
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(HOSTS)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        for key, value in s.sysctls:
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w", f"{key}={value}"], check=True, capture_output=True)
        if s.nft:
            rules = "\n".join(s.substitute(rule) for rule in s.nft)
            subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)
        program = work / s.program.name
        shutil.copyfile(s.program, program)
        shutil.copyfile(PROBE, work / PROBE.name)
        events = work / "events.jsonl"
        events.touch()
        for p in (work, program, work / PROBE.name, events):
            os.chown(p, *user)
        tcpdump = subprocess.Popen(["ip", "netns", "exec", name, "tcpdump", "-i", "lo", "-w", str(work / "cap.pcap"), "-U", "-n"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(SLEEP_S)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "VERIFIER_EVENTS": str(events), **s.env}
        argv = ["ip", "netns", "exec", name, "setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--",
                node, str(program)]
        with syn_rto_cgroup(s) as cgroup:  # the scenario's initial SYN RTO, as ours (lab.synrto)
            if cgroup is not None:
                argv = cgroup.command(argv)
            p0 = time.monotonic()
            prog = subprocess.run(argv, env=env, cwd=work, capture_output=True, timeout=s.timeout)
            program_s = time.monotonic() - p0
        time.sleep(SLEEP_S)
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
        return {"wall": time.monotonic() - t0, "duration": program_s, "exit": prog.returncode,
                "pcap_bytes": (work / "cap.pcap").stat().st_size}
    finally:
        if tcpdump is not None and tcpdump.poll() is None:
            os.killpg(tcpdump.pid, signal.SIGKILL)
            tcpdump.wait()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def syn_rto_cgroup(s):
    if s.syn_rto is None:
        return contextlib.nullcontext(None)
    from verifier.lab.synrto import SynRtoCgroup

    return SynRtoCgroup(s.syn_rto, source=str(s.program))


def run_sleep(jobs: int) -> dict:
    from verifier.lab.netns import unprivileged_user

    node = shutil.which("node")
    user = unprivileged_user()
    chosen = scenarios.builtin()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outs = list(pool.map(lambda s: sleep_one(s, node, user), chosen))
    wall = time.monotonic() - t0
    per = {s.name: {**o, "overhead": o["wall"] - o["duration"]} for s, o in zip(chosen, outs)}
    return {"wall": wall, "scenarios": per}


# --- profile ------------------------------------------------------------------------------------


def _timed(cmd: list[str], n: int = 5, **kw) -> float:
    best = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, **kw)
        best.append(time.perf_counter() - t0)
    return statistics.median(best)


def profile(jobs: int) -> dict:
    """Where `verifier run`'s time goes."""
    out: dict = {}
    # 1. process start: interpreter + imports (PYTHONDONTWRITEBYTECODE, if set, recompiles every run)
    out["python -c pass"] = _timed([PY, "-c", "pass"])
    out["import verifier.cli + commands"] = _timed([PY, "-c", "import verifier.cli, verifier.commands"], cwd=ROOT)
    out["import scapy.utils (RawPcapWriter)"] = _timed([PY, "-c", "import scapy.utils"]) - out["python -c pass"]
    out["import psutil"] = _timed([PY, "-c", "import psutil"]) - out["python -c pass"]
    out["verifier list (start, parse, list)"] = _timed([PY, "-m", "verifier", "list"], cwd=ROOT)
    # 2. tools the harness starts, per scenario
    node = shutil.which("node")
    out["node -e 0 (runtime start, inside `duration`)"] = _timed([node, "-e", "0"])
    out["node --version (once per run)"] = _timed([node, "--version"])
    name = _ns_name()
    t0 = time.perf_counter()
    subprocess.run(["ip", "netns", "add", name], check=True)
    out["ip netns add"] = time.perf_counter() - t0
    try:
        out["ip netns exec NS true"] = _timed(["ip", "netns", "exec", name, "true"])
        out["ip netns exec NS setpriv ... true (inside `duration`)"] = _timed(
            ["ip", "netns", "exec", name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "true"])
        out["ip netns exec NS nft list ruleset"] = _timed(["ip", "netns", "exec", name, "nft", "list", "ruleset"])
    finally:
        t0 = time.perf_counter()
        subprocess.run(["ip", "netns", "del", name], check=True)
        out["ip netns del"] = time.perf_counter() - t0
    # 3. per phase, per scenario: the catalogue run in this process with timers around each phase
    out["phases"] = _phases(jobs)
    # 4. what a change in verifier/lab would buy (measured here, not applied there)
    out["what_if"] = what_if_struct_writer(jobs, 3)
    return out


# What-if (not applied to verifier/lab): the scapy backend's pcap written with struct, as the
# tcpdump backend's reader already parses it, instead of scapy's RawPcapWriter (whose import,
# ~0.14 s, lands in the first scenario of each worker thread).
STRUCT_WRITER = r'''
import struct
class StructPcapWriter:
    def __init__(self, buffer, linktype, nano, snaplen):
        self.buffer, self.linktype, self.nano, self.snaplen = buffer, linktype, nano, snaplen
    def write_header(self, _packet):
        magic = 0xA1B23C4D if self.nano else 0xA1B2C3D4
        self.buffer.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, self.snaplen, self.linktype))
    def write_packet(self, frame, sec, usec):
        self.buffer.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    def flush(self):
        pass
cap._raw_pcap_writer = lambda: StructPcapWriter
'''


def _phases(jobs: int, struct_writer: bool = False) -> dict:
    code = r'''
import json, sys, threading, time, collections
import verifier.lab.run as run, verifier.lab.netns as netns, verifier.lab.capture as cap, verifier.lab.process as proc
import verifier.wire.show as show
''' + (STRUCT_WRITER if struct_writer else "") + r'''
totals = collections.defaultdict(list)
lock = threading.Lock()
def wrap(owner, attr, label):
    fn = getattr(owner, attr, None)
    if fn is None:
        return
    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            with lock:
                totals[label].append(time.perf_counter() - t0)
    setattr(owner, attr, timed)
wrap(netns.Namespace, "create", "namespace create (ip netns add, lo up, sysctls, nft)")
wrap(netns.Namespace, "destroy", "namespace destroy")
for b in (cap.ScapyCapture, cap.TcpdumpCapture):
    wrap(b, "start", f"capture start ({b.name}: open, start marker seen)")
    wrap(b, "stop", f"capture stop ({b.name}: end marker, drain, pcap)")
wrap(run, "run_program", "program (= duration + spawn/reap)")
wrap(show.CaptureReading, "connections", "decode the capture (generator creation only)")
wrap(run, "match", "match the expectation")
wrap(run, "parse_events", "parse the event log")
wrap(run, "run_scenario", "run_scenario (harness_wall)")
from verifier.cli import main
t0 = time.perf_counter()
code = main(["run", "-j", sys.argv[1], "--json", sys.argv[2]])
wall = time.perf_counter() - t0
results = json.load(open(sys.argv[2]))["results"]
over = sorted(r["harness_wall"] - r["duration"] for r in results)
print(json.dumps({"exit": code, "cmd_run wall": wall, "totals": totals, "overhead_median": over[len(over) // 2],
                  "overhead_max": over[-1], "held": all(r["status"] == "held" for r in results)}))
'''
    with tempfile.TemporaryDirectory(prefix="vbench-") as tmp:
        t0 = time.monotonic()
        done = subprocess.run([PY, "-c", code, str(jobs), str(Path(tmp) / "r.json")], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        process_wall = time.monotonic() - t0
    try:
        doc = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": done.stderr.strip()[-1000:]}
    phases = {label: {"n": len(v), "total": sum(v), "median": statistics.median(v), "max": max(v)}
              for label, v in doc["totals"].items()}
    return {"cmd_run wall": doc["cmd_run wall"], "process wall": process_wall, "overhead_median": doc["overhead_median"],
            "overhead_max": doc["overhead_max"], "held": doc["held"], "phases": phases}


def what_if_struct_writer(jobs: int, rounds: int) -> dict:
    """The catalogue in one process, as is and with the struct pcap writer, interleaved."""
    runs: dict[str, list[dict]] = {"as is (scapy RawPcapWriter)": [], "struct writer (no scapy import)": []}
    for _ in range(rounds):
        runs["as is (scapy RawPcapWriter)"].append(_phases(jobs))
        runs["struct writer (no scapy import)"].append(_phases(jobs, struct_writer=True))
    out = {}
    for label, rs in runs.items():
        rs = [r for r in rs if "error" not in r]
        if rs:
            out[label] = {k: statistics.median(r[k] for r in rs) for k in ("process wall", "overhead_median", "overhead_max")}
            out[label]["held"] = all(r["held"] for r in rs)
    return out


# --- report -------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_harness needs root (namespaces, capture): sudo make bench WHICH=harness", file=sys.stderr)
        return 3
    rounds = []
    for n in range(a.rounds):
        ours = run_ours(a.jobs)
        serial = run_sleep(1)
        parallel = run_sleep(a.jobs)
        # the same without the scenario whose own program runs longest: what bounds the catalogue
        # from below
        longest = max(ours["scenarios"], key=lambda k: ours["scenarios"][k]["duration"])
        rest = run_ours(a.jobs, [k for k in ours["scenarios"] if k != longest])
        rest_sleep = sum(v["wall"] for k, v in serial["scenarios"].items() if k != longest)
        rounds.append({"ours": ours, "sleep_serial": serial, "sleep_parallel": parallel,
                       "without_longest": {"scenario": longest, "ours_wall": rest["wall"], "sleep_serial_wall": rest_sleep}})
        print(f"round {n + 1}: ours {ours['wall']:.2f} s (exit {ours['exit']}), sleep-based serial {serial['wall']:.2f} s, "
              f"sleep-based -j{a.jobs} {parallel['wall']:.2f} s; without {longest}: ours {rest['wall']:.2f} s, "
              f"sleep-based serial {rest_sleep:.2f} s", flush=True)
    names = list(rounds[0]["ours"]["scenarios"])

    def med(kind, name, key):
        return statistics.median(r[kind]["scenarios"][name][key] for r in rounds)

    print(f"\nper scenario (median of {a.rounds} rounds), seconds:")
    from verifier.scenario import builtin

    floors = {s.name: s.floor for s in builtin()}  # each scenario's own timers (its `floor:` header)
    print(f"{'scenario':28} {'floor':>6} {'program':>8} {'ours wall':>10} {'overhead':>9} {'sleep wall':>11} {'overhead':>9}")
    ours_over, sleep_over = [], []
    for name in names:
        o, s = med("ours", name, "overhead"), med("sleep_serial", name, "overhead")
        ours_over.append(o)
        sleep_over.append(s)
        print(f"{name:28} {floors.get(name, 0.0):6.2f} {med('ours', name, 'duration'):8.3f} {med('ours', name, 'wall'):10.3f} {o:9.3f} "
              f"{med('sleep_serial', name, 'wall'):11.3f} {s:9.3f}")
    all_ours = [r["ours"]["scenarios"][n]["overhead"] for r in rounds for n in names]
    cat = statistics.median(r["ours"]["wall"] for r in rounds)
    serial = statistics.median(r["sleep_serial"]["wall"] for r in rounds)
    parallel = statistics.median(r["sleep_parallel"]["wall"] for r in rounds)
    programs = statistics.median(sum(r["ours"]["scenarios"][n]["duration"] for n in names) for r in rounds)
    longest = statistics.median(max(r["ours"]["scenarios"][n]["duration"] for n in names) for r in rounds)
    summary = {
        "scenarios": len(names), "rounds": a.rounds, "jobs": a.jobs,
        "overhead_median_s": statistics.median(all_ours), "overhead_max_s": max(all_ours),
        "overhead_median_of_medians_s": statistics.median(ours_over),
        "sleep_overhead_median_s": statistics.median(sleep_over),
        "catalogue_wall_s": cat, "sleep_serial_wall_s": serial, "sleep_parallel_wall_s": parallel,
        "ratio_vs_sleep_serial": serial / cat, "ratio_vs_sleep_parallel": parallel / cat,
        "programs_total_s": programs, "longest_program_s": longest,
        "without_longest": {
            "scenario": rounds[0]["without_longest"]["scenario"],
            "ours_wall_s": statistics.median(r["without_longest"]["ours_wall"] for r in rounds),
            "sleep_serial_wall_s": statistics.median(r["without_longest"]["sleep_serial_wall"] for r in rounds),
        },
        "all_held": all(s["status"] == "held" for r in rounds for s in r["ours"]["scenarios"].values()),
        "sleep_programs_ok": all(s["exit"] == 0 for r in rounds for k in ("sleep_serial", "sleep_parallel")
                                 for s in r[k]["scenarios"].values()),
    }
    print(f"\noverhead per scenario (harness_wall - duration), all {len(all_ours)} runs: median "
          f"{summary['overhead_median_s'] * 1000:.1f} ms, max {summary['overhead_max_s'] * 1000:.1f} ms (target: median <= 100 ms)")
    print(f"sleep-based harness overhead per scenario: median {summary['sleep_overhead_median_s'] * 1000:.0f} ms")
    print(f"catalogue wall (whole `verifier run -j{a.jobs}` process): {cat:.2f} s; its programs ran {programs:.2f} s "
          f"in all, the longest {longest:.2f} s (a floor for any harness)")
    print(f"sleep-based harness, same scenarios: serial {serial:.2f} s = {summary['ratio_vs_sleep_serial']:.1f}x ours; "
          f"-j{a.jobs} {parallel:.2f} s = {summary['ratio_vs_sleep_parallel']:.1f}x ours (target: >= 10x)")
    wl = summary["without_longest"]
    wl["ratio"] = wl["sleep_serial_wall_s"] / wl["ours_wall_s"]
    print(f"without {wl['scenario']} (its program alone runs {longest:.2f} s): ours {wl['ours_wall_s']:.2f} s, "
          f"sleep-based serial {wl['sleep_serial_wall_s']:.2f} s = {wl['ratio']:.1f}x ours")
    print(f"all runs held: {summary['all_held']}; every sleep-harness program exited 0: {summary['sleep_programs_ok']}")
    doc = {"summary": summary, "rounds": rounds}
    if a.profile:
        prof = profile(a.jobs)
        doc["profile"] = prof
        print("\nprofile (medians of 5 runs, seconds):")
        for k, v in prof.items():
            if k not in ("phases", "what_if"):
                print(f"  {k:58} {v:7.3f}")
        ph = prof["phases"]
        if "error" in ph:
            print(f"  phases: {ph['error']}")
        else:
            print(f"  per phase, catalogue run in one process (cmd_run {ph['cmd_run wall']:.2f} s):")
            print(f"  {'phase':58} {'n':>3} {'total':>7} {'median':>7} {'max':>7}")
            for label, v in ph["phases"].items():
                print(f"  {label:58} {v['n']:3d} {v['total']:7.3f} {v['median']:7.3f} {v['max']:7.3f}")
        print("  what-if, catalogue in one process (median of 3, interleaved):")
        for label, v in prof["what_if"].items():
            print(f"  {label:40} wall {v['process wall']:.2f} s, overhead median {v['overhead_median'] * 1000:.1f} ms, "
                  f"max {v['overhead_max'] * 1000:.1f} ms, all held {v['held']}")
    if a.json:
        a.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    finally:
        with contextlib.suppress(Exception):
            for entry in os.listdir("/run/netns"):
                if entry.startswith(f"vbsleep-{os.getpid()}-"):
                    subprocess.run(["ip", "netns", "del", entry], capture_output=True)
