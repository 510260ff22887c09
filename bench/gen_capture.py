"""Make a real big capture: N short loopback TCP connections in a fresh network namespace, captured by tcpdump.

    sudo .venv/bin/python bench/gen_capture.py --connections 100000 --out bench/data/conn100k.pcap

Creates the namespace `vbench-<pid>` (lo up; sysctls so 100k connections fit: the whole port
range, TIME-WAIT reuse, big backlogs), starts tcpdump on its lo (classic pcap, full snap length,
a 256 MiB kernel buffer) and waits until it listens, runs loadgen.py inside (a Python asyncio
client and server: FIN closes from either side, RSTs from either side, refused connects), stops
tcpdump and fails if the kernel dropped packets. The namespace is removed on every exit path.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSCTLS = {
    "net.ipv4.ip_local_port_range": "1024 65535",
    "net.ipv4.tcp_tw_reuse": "1",
    "net.ipv4.tcp_fin_timeout": "5",
    "net.core.somaxconn": "4096",
    "net.ipv4.tcp_max_syn_backlog": "4096",
}


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def generate(connections: int, out: Path, concurrency: int, time_limit: float) -> dict:
    ns = f"vbench-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    tcpdump = None
    try:
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        for key, value in SYSCTLS.items():
            sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        tcpdump = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-i", "lo", "-w", str(tmp), "-n", "-p", "-s", "0", "-B", str(256 << 10)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        err = b""
        deadline = time.monotonic() + 10
        while b"listening on" not in err:  # tcpdump's socket is bound: nothing sent after this is missed
            left = deadline - time.monotonic()
            if left <= 0 or tcpdump.poll() is not None:
                raise SystemExit(f"tcpdump did not start: {err.decode(errors='replace')}")
            if select.select([tcpdump.stderr], [], [], left)[0]:
                err += os.read(tcpdump.stderr.fileno(), 4096)
        t0 = time.monotonic()
        load = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, str(HERE / "loadgen.py"), "--connections", str(connections),
             "--concurrency", str(concurrency), "--time-limit", str(time_limit)],
            capture_output=True, text=True, timeout=time_limit + 60,
        )
        seconds = time.monotonic() - t0
        tcpdump.send_signal(signal.SIGINT)
        _, rest = tcpdump.communicate(timeout=30)
        report = (err + rest).decode(errors="replace")
        captured = int(re.search(r"(\d+) packets? captured", report).group(1))
        dropped = int(re.search(r"(\d+) packets? dropped by kernel", report).group(1))
        if load.returncode != 0:
            raise SystemExit(f"load generator failed: {load.stderr.strip()[-2000:]}")
        if dropped:
            raise SystemExit(f"the kernel dropped {dropped} packets: the capture is incomplete ({tmp})")
        tmp.replace(out)
        return {"file": str(out), "packets": captured, "bytes": out.stat().st_size, "seconds": round(seconds, 1),
                "load": load.stderr.strip().splitlines()[-1]}
    finally:
        if tcpdump is not None and tcpdump.poll() is None:
            os.killpg(tcpdump.pid, signal.SIGKILL)
            tcpdump.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--time-limit", type=float, default=600.0)
    a = ap.parse_args()
    print(generate(a.connections, a.out, a.concurrency, a.time_limit))
