"""Ctrl-C and SIGTERM during `verifier run`: exit 130 / 143, nothing left behind; SIGKILL leftovers go next run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from process_state import gone_or_zombie
from verifier.lab.synrto import cgroup2_root

pytestmark = pytest.mark.privileged


def namespaces_of(pid: int) -> list[str]:
    prefix = f"verifier-{pid}-"
    run = [p.name for p in Path("/run/netns").glob(prefix + "*")] if Path("/run/netns").exists() else []
    etc = [p.name for p in Path("/etc/netns").glob(prefix + "*")] if Path("/etc/netns").exists() else []
    return run + etc


def cgroups_of(pid: int) -> list[str]:
    return sorted(p.name for p in Path(cgroup2_root()).glob(f"verifier-{pid}-*"))


# A program that runs until it is stopped, in its own cgroup (syn-rto:) as well as its namespace.
SLOW = """\
// slow: runs until it is stopped
// syn-rto: 100ms
// timeout: 60
import { done } from "./probe.mjs";
setTimeout(done, 30000);
/* expect
*/
"""


def name_of(process: psutil.Process) -> str | None:
    """The process's name; None once it is gone (short-lived tools come and go while we look)."""
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return None


def start_run(tmp_path: Path, *args) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """`verifier run` on a slow scenario (and a quick one), signalled once its program runs."""
    slow = tmp_path / "slow.mjs"
    slow.write_text(SLOW)
    proc = subprocess.Popen([sys.executable, "-m", "verifier", "run", *args, str(slow), "client-end"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until a node program is running under it
        kids = psutil.Process(proc.pid).children(recursive=True)
        if any(name_of(k) == "node" for k in kids):
            time.sleep(0.3)  # the capture has started and the program is mid-way
            return proc, psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the scenario program never started")


@pytest.mark.parametrize("backend", ["scapy", "tcpdump"])
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_everything(sig, code, backend, tmp_path):
    proc, kids = start_run(tmp_path, "--backend", backend)
    assert namespaces_of(proc.pid), "a namespace exists while the scenario runs"
    assert cgroups_of(proc.pid), "so does the slow scenario's cgroup"
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert time.monotonic() - t0 < 5, "stopping must not wait for the scenario's own timeout"
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert namespaces_of(proc.pid) == []
    assert cgroups_of(proc.pid) == []
    alive = [k for k in kids if k.is_running() and not gone_or_zombie(k.pid)]
    assert alive == [], f"left running: {[(k.pid, k.name()) for k in alive]}"


def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path):
    proc, kids = start_run(tmp_path)
    pid = proc.pid
    proc.kill()
    proc.wait()
    assert namespaces_of(pid), "SIGKILL leaves the namespace behind (nothing could clean up)"
    assert cgroups_of(pid), "and the cgroup, with its program attached and its process inside"
    out = subprocess.run([sys.executable, "-m", "verifier", "run", "client-end"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert namespaces_of(pid) == []
    assert cgroups_of(pid) == []
    time.sleep(0.2)
    assert [k for k in kids if k.is_running() and not gone_or_zombie(k.pid)] == []
