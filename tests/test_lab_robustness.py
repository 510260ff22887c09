"""What goes wrong in the lab is reported as what it is: crashes, hangs, silence, floods, missing
privileges or tools, and two runs at once."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from verifier.cli import main
from verifier.expectation import parse
from verifier.lab import capture as capture_module
from verifier.lab import netns
from verifier.lab.run import run_scenario
from verifier.lab.runtime import resolve as resolve_runtime
from verifier.lab.synrto import cgroup2_root
from verifier.scenario import load

pytestmark = pytest.mark.privileged

HANDSHAKE = "C > S  S 0:0(0)\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 1\n"


def scenario(tmp_path: Path, name: str, body: str, expect: str = HANDSHAKE, header: str = ""):
    program = tmp_path / f"{name}.mjs"
    program.write_text(f"// {name}: a test scenario\n{header}import * as net from 'node:net';\n{body}\n")
    (tmp_path / f"{name}.expect").write_text(expect)
    return load(program)


def run(s, tmp_path):
    exp = parse(s.expectation, "linux", s.expectation_source)
    return run_scenario(s, exp, resolve_runtime("node"), "scapy", tmp_path / "keep")


def test_a_crash_is_reported_with_its_stderr_not_as_a_wire_mismatch(tmp_path):
    r = run(scenario(tmp_path, "crash", "throw new Error('boom in the scenario');"), tmp_path)
    assert r.status == "error" and r.mismatches == []
    assert "the program exited with status 1" in r.problems
    assert any("boom in the scenario" in p for p in r.problems)


def test_a_hang_is_killed_at_the_scenario_timeout(tmp_path):
    r = run(scenario(tmp_path, "hang", "setInterval(() => {}, 1000);", header="// timeout: 1\n"), tmp_path)
    assert r.status == "error"
    assert r.problems[0] == "the program did not finish within 1 s and was killed"
    assert r.duration < 3


def test_a_program_that_never_connects_says_so(tmp_path):
    # nothing on the wire is a behaviour (Deno's resetAndDestroy() before connect), not a lab error:
    # the run fails at the expectation's first segment line, saying what happened
    r = run(scenario(tmp_path, "silent", "process.exitCode = 0;"), tmp_path)
    assert r.status == "failed" and r.problems == []
    (m,) = r.mismatches
    assert m.message == "the program made no TCP connection: nothing of it was on the wire"
    assert (m.lineno, m.expected, m.actual) == (1, "C > S  S 0:0(0)", "(no packet at all)")


def test_a_flood_is_stopped_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(capture_module, "CAPTURE_MAX_PACKETS", 300)
    body = """
const server = net.createServer((s) => s.resume()).listen(5000, '127.0.0.1', () => {
  const c = net.connect(5000, '127.0.0.1', () => {
    const chunk = new Uint8Array(1000);
    const pump = () => { while (c.write(chunk)) {} };
    c.on('drain', pump); pump();
  });
});
"""
    r = run(scenario(tmp_path, "flood", body, header="// timeout: 20\n"), tmp_path)
    assert r.status == "error"
    assert r.problems[0].startswith("the scenario flooded the capture (over 300 packets")
    assert r.duration < 10 and r.packets <= 300


def test_without_privileges_run_exits_3_and_show_works(tmp_path):
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(drop + [sys.executable, "-m", "verifier", "run", "client-end"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 3, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.rstrip().endswith(" -m verifier run client-end`") and "run `sudo " in out.stderr
    capture = str(Path(__file__).parent / "data" / "foreign" / "linux-sll-lo-fin.pcap")
    out = subprocess.run(drop + [sys.executable, "-m", "verifier", "show", capture], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and "fin-client-first" in out.stdout
    out = subprocess.run(drop + [sys.executable, "-m", "verifier", "diff", capture, capture], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0


def test_missing_node_is_exit_3_naming_it(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = dict(os.environ, PATH=f"{bindir}:{Path(sys.executable).parent}")
    out = subprocess.run([sys.executable, "-m", "verifier", "run", "client-end"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 3 and "node" in out.stderr and "Node.js" in out.stderr
    assert len(out.stderr.splitlines()) == 1


@pytest.mark.parametrize("tool,package", [("tcpdump", "tcpdump"), ("nft", "nftables"), ("ip", "iproute2")])
def test_missing_tool_is_exit_3_naming_its_package(tool, package, monkeypatch, capsys):
    bindir = Path(tempfile.mkdtemp(prefix="verifier-test-bin-"))
    bindir.chmod(0o755)  # node is reached through it by the unprivileged scenario user
    for other in ("tcpdump", "nft", "ip", "setpriv", "node"):
        if other != tool:
            os.symlink(shutil.which(other) or f"/usr/sbin/{other}", bindir / other)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(netns, "SBIN_DIRS", ())
    netns._tool_path.cache_clear()
    try:
        code = main(["run", "--backend", "tcpdump", "client-end"])
    finally:
        netns._tool_path.cache_clear()
        shutil.rmtree(bindir)
    err = capsys.readouterr().err
    assert code == 3, err
    assert tool in err and package in err and len(err.strip().splitlines()) == 1


def test_two_runs_at_once_both_pass():
    argv = [sys.executable, "-m", "verifier", "run", "client-end", "read-write", "reset-and-destroy", "port-not-open"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("4 runs: 4 held" in o for o in outs)


def test_a_run_never_touches_the_hosts_firewall_sysctls_or_hosts_file():
    def snapshot():
        ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
        sysctls = {k: Path("/proc/sys/net/ipv4", k).read_text() for k in ("tcp_syn_retries", "tcp_syn_linear_timeouts")
                   if Path("/proc/sys/net/ipv4", k).exists()}
        cgroups = sorted(p.name for p in Path(cgroup2_root()).glob("verifier-*"))  # attempt-timeout's syn-rto cgroup
        return ruleset, sysctls, Path("/etc/hosts").read_bytes(), cgroups

    before = snapshot()
    out = subprocess.run([sys.executable, "-m", "verifier", "run", "attempt-timeout", "lookup"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert snapshot() == before


def test_unwritable_output_places_are_exit_2_before_anything_runs(tmp_path):
    for args in (["--json", str(tmp_path / "missing" / "x.json")], ["--record", "--captures", "/proc/verifier-nope"],
                 ["--keep", "/proc/verifier-nope"]):
        out = subprocess.run([sys.executable, "-m", "verifier", "run", "client-end", *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr and out.stdout == ""
    assert not (tmp_path / "missing").exists()
