"""Big-capture throughput: `verifier show --json` against tshark, dpkt and scapy on the same files, side by side.

    .venv/bin/python bench/bench_show.py [--rounds 3] [--ref-rounds 1] [--no-scapy] [--json OUT] [FILE ...]

Default files: bench/data/conn120k.pcap and bench/data/conn25k.pcap (made by gen_capture.py:
`sudo make bench WHICH=show` makes them when missing). Every tool runs as a child process, its output to /dev/null; wall time
(median over the rounds, tools interleaved within a round) and peak memory (the child's own
RSS high-water mark, from wait4's rusage) are measured. The tools:
- verifier: `verifier show --json FILE` (its loop compiled: verifier/wire/_showloop.c)
- verifier-text: `verifier show FILE` (the transcript, show's default output; the same loop)
- verifier-slow-path: `verifier show --json` with the compiled loop switched off (the object path, the
  reference: what runs where the extension is not built)
- tshark:   `tshark -r FILE -T fields -e tcp.stream -e tcp.flags -e tcp.seq -e tcp.ack -e tcp.len`
- dpkt:     bench/readers.py dpkt FILE (read + decode Ethernet/IP/TCP; no tracking, no output)
- scapy:    bench/readers.py scapy FILE (PcapReader + TCP layer; slow: --ref-rounds runs)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
DATA = ROOT / "bench" / "data"
DEFAULT_FILES = [DATA / "conn120k.pcap", DATA / "conn25k.pcap"]
sys.path.insert(0, str(ROOT))

TOOLS = {
    "verifier": lambda f: [PY, "-m", "verifier", "show", "--json", str(f)],
    "verifier-text": lambda f: [PY, "-m", "verifier", "show", str(f)],
    "verifier-slow-path": lambda f: [PY, "-c", "import sys, verifier.wire.show as s; s._showloop = None; "
                                  "from verifier.cli import main; sys.exit(main(sys.argv[1:]))", "show", "--json", str(f)],
    "tshark": lambda f: ["tshark", "-r", str(f), "-T", "fields", "-e", "tcp.stream", "-e", "tcp.flags", "-e", "tcp.seq",
                         "-e", "tcp.ack", "-e", "tcp.len"],
    "dpkt": lambda f: [PY, str(ROOT / "bench" / "readers.py"), "dpkt", str(f)],
    "scapy": lambda f: [PY, str(ROOT / "bench" / "readers.py"), "scapy", str(f)],
}


def measure(argv: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in KiB, exit status) of one child, its stdout to /dev/null."""
    with open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=null, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss, proc.returncode


def count_packets(path: Path) -> int:
    from verifier.wire import capture

    with open(path, "rb") as f:
        return sum(1 for _ in capture.read_records(f))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of verifier and tshark (default 3)")
    ap.add_argument("--ref-rounds", type=int, default=1, help="rounds of dpkt and scapy (default 1; 0: neither)")
    ap.add_argument("--no-scapy", action="store_true", help="skip scapy (~400 us a packet: minutes on the big file)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args(argv)
    files = a.files or DEFAULT_FILES
    missing = [f for f in files if not f.exists()]
    if missing:
        print(f"missing {', '.join(map(str, missing))}: `sudo make bench WHICH=show` makes them (bench/gen_capture.py)", file=sys.stderr)
        return 2
    from verifier.wire import show

    if show._showloop is None:
        print("verifier/wire/_showloop.c is not built (make setup builds it: gcc, Python's headers)", file=sys.stderr)
        return 2
    packets = {f: count_packets(f) for f in files}
    runs: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    plan = [(tool, a.rounds) for tool in ("verifier", "tshark", "verifier-text", "verifier-slow-path")]
    plan += [(tool, a.ref_rounds) for tool in ("dpkt", "scapy") if a.ref_rounds and not (tool == "scapy" and a.no_scapy)]
    for n in range(max(r for _, r in plan)):
        for f in files:
            order = [t for t, r in plan if n < r]
            if n % 2:
                order.reverse()  # interleaved, alternating which goes first
            for tool in order:
                result = measure(TOOLS[tool](f))
                runs.setdefault((tool, str(f)), []).append(result)
                print(f"round {n + 1} {f.name:16} {tool:8} {result[0]:8.2f} s {result[1] / 1024:8.1f} MiB exit {result[2]}",
                      flush=True)
    table = []
    for f in files:
        for tool, _ in plan:
            rs = runs[(tool, str(f))]
            wall = statistics.median(r[0] for r in rs)
            table.append({"file": f.name, "tool": tool, "packets": packets[f], "seconds": wall,
                          "packets_per_s": packets[f] / wall, "peak_rss_mib": max(r[1] for r in rs) / 1024,
                          "exit": sorted({r[2] for r in rs}), "runs": len(rs), "all_seconds": [r[0] for r in rs]})
    by = {(row["file"], row["tool"]): row for row in table}
    print(f"\n{'file':16} {'packets':>9} {'tool':15} {'seconds':>8} {'kpackets/s':>11} {'peak MiB':>9} {'verifier is':>12}")
    for row in table:
        mine = by[(row["file"], "verifier")]
        speed = mine["packets_per_s"] / row["packets_per_s"]
        row["verifier_speedup"] = speed
        print(f"{row['file']:16} {row['packets']:9d} {row['tool']:15} {row['seconds']:8.2f} {row['packets_per_s'] / 1000:11.1f} "
              f"{row['peak_rss_mib']:9.1f} {speed:11.1f}x")
    summary = {}
    for f in files:
        summary[f.name] = {"verifier_vs_tshark": by[(f.name, "verifier")]["packets_per_s"] / by[(f.name, "tshark")]["packets_per_s"]}
    if len(files) >= 2:
        big, small = sorted(files, key=lambda f: packets[f], reverse=True)[:2]
        for tool, _ in plan:
            growth = by[(big.name, tool)]["peak_rss_mib"] / by[(small.name, tool)]["peak_rss_mib"]
            summary[f"{tool}_rss_growth"] = growth
        print(f"\nfile sizes: {big.name} has {packets[big] / packets[small]:.1f}x the packets of {small.name}; peak memory "
              + ", ".join(f"{tool} x{summary[f'{tool}_rss_growth']:.2f}" for tool, _ in plan))
    for f in files:
        print(f"verifier show --json vs tshark -T fields on {f.name}: {summary[f.name]['verifier_vs_tshark']:.1f}x the "
              f"throughput (target >= 15x)")
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
