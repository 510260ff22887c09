"""Ctrl-C and SIGTERM during `verifier run`: exit 130 / 143, nothing left behind; SIGKILL leftovers go next run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.privileged


def namespaces_of(pid: int) -> list[str]:
    prefix = f"verifier-{pid}-"
    run = [p.name for p in Path("/run/netns").glob(prefix + "*")] if Path("/run/netns").exists() else []
    etc = [p.name for p in Path("/etc/netns").glob(prefix + "*")] if Path("/etc/netns").exists() else []
    return run + etc


def start_run(*args) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """`verifier run` on the slow scenario, signalled once its program runs."""
    proc = subprocess.Popen([sys.executable, "-m", "verifier", "run", *args, "attempt-timeout", "client-end"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until a node program is running under it
        kids = psutil.Process(proc.pid).children(recursive=True)
        if any(k.name() == "node" for k in kids if k.is_running()):
            time.sleep(0.3)  # the capture has started and the program is mid-way
            return proc, psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the scenario program never started")


@pytest.mark.parametrize("backend", ["scapy", "tcpdump"])
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_everything(sig, code, backend):
    proc, kids = start_run("--backend", backend)
    assert namespaces_of(proc.pid), "a namespace exists while the scenario runs"
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert time.monotonic() - t0 < 5, "stopping must not wait for the scenario's own timeout"
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert namespaces_of(proc.pid) == []
    alive = [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running: {[(k.pid, k.name()) for k in alive]}"


def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path):
    proc, kids = start_run()
    pid = proc.pid
    proc.kill()
    proc.wait()
    left = namespaces_of(pid)
    assert left, "SIGKILL leaves the namespace behind (nothing could clean up)"
    out = subprocess.run([sys.executable, "-m", "verifier", "run", "client-end"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert namespaces_of(pid) == []
    time.sleep(0.2)
    assert [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE] == []
