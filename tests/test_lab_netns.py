"""Tests for verifier.lab.netns: namespaces are isolated, configured, and always removed."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from verifier.errors import EXIT_ENVIRONMENT, EnvironmentProblem, UsageError
from verifier.lab import netns
from verifier.lab.netns import Namespace, check_privileges, remove_leftovers, unprivileged_user
from process_state import gone_or_zombie

pytestmark = pytest.mark.privileged

BLOCK_PORT_5000 = """
table inet verifier_test {
    chain output {
        type filter hook output priority 0; policy accept;
        tcp dport 5000 drop
    }
}
"""


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True)


def netns_names() -> list[str]:
    return [line.split()[0] for line in run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def ns():
    with Namespace("test") as namespace:
        yield namespace


def test_check_privileges_passes_as_root():
    check_privileges()


def test_check_privileges_without_capabilities_says_how(monkeypatch):
    monkeypatch.setattr(netns, "effective_capabilities", lambda: 0)
    with pytest.raises(EnvironmentProblem) as caught:
        check_privileges()
    message = str(caught.value)
    for cap in ("CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"):
        assert message.count(cap) == 1, message
    assert "root" in message and "`sudo " in message and "\n" not in message
    assert caught.value.exit_code == EXIT_ENVIRONMENT


def test_check_privileges_lists_only_what_is_missing(monkeypatch):
    monkeypatch.setattr(netns, "effective_capabilities", lambda: 1 << netns.CAP_NET_ADMIN | 1 << netns.CAP_NET_RAW)
    with pytest.raises(EnvironmentProblem) as caught:
        check_privileges()
    assert "lacks: CAP_SYS_ADMIN)" in str(caught.value)
    assert "CAP_NET_ADMIN" not in str(caught.value) and "CAP_NET_RAW" not in str(caught.value)


def on_path(*files: str):
    """A shutil.which stand-in: finds exactly `files` (absolute paths) by their names."""
    def which(name, path=None):
        assert path == netns.SUDO_SECURE_PATH  # where sudo looks, not the caller's PATH
        return next((f for f in files if os.path.basename(f) == name), None)
    return which


@pytest.mark.parametrize("argv,executable,module,cwd,found,expected", [
    # a console script sudo finds by name: repeated as typed
    (["/usr/local/bin/verifier", "run", "destroy"], "/usr/bin/python3", None, "/home/a",
     ["/usr/local/bin/verifier"], "sudo verifier run destroy"),
    # python -m with the system python
    (["/home/a/v/verifier/__main__.py", "run", "x"], "/usr/bin/python3", "verifier", "/home/a",
     ["/usr/bin/python3"], "sudo python3 -m verifier run x"),
    # a venv: sudo's PATH does not hold it, so its path (relative to where the user is)
    (["/home/a/v/.venv/bin/verifier", "run"], "/home/a/v/.venv/bin/python", None, "/home/a/v",
     ["/usr/bin/python3"], "sudo .venv/bin/verifier run"),
    (["/home/a/v/verifier/__main__.py", "run"], "/home/a/v/.venv/bin/python", "verifier", "/tmp",
     ["/usr/bin/python3"], "sudo /home/a/v/.venv/bin/python -m verifier run"),
    (["/home/a/v/.venv/bin/verifier", "run"], "/home/a/v/.venv/bin/python", None, "/",
     [], "sudo /home/a/v/.venv/bin/verifier run"),
    (["/home/a/v/.venv/bin/verifier", "run"], "/home/a/v/.venv/bin/python", None, "/home/a/v/.venv/bin",
     [], "sudo ./verifier run"),
    # a name on sudo's PATH that is another file: the path, never the name
    (["/opt/x/bin/verifier", "run"], "/usr/bin/python3", None, "/tmp",
     ["/usr/local/bin/verifier"], "sudo /opt/x/bin/verifier run"),
    # arguments quoted for the shell
    (["/usr/local/bin/verifier", "run", "my scenario.mjs", "--json", "-"], "/usr/bin/python3", None, "/",
     ["/usr/local/bin/verifier"], "sudo verifier run 'my scenario.mjs' --json -"),
    # pytest run with -m: the plugin's check repeats that
    (["/usr/lib/python3/dist-packages/pytest/__main__.py", "-k", "close"], "/usr/bin/python3", "pytest", "/w",
     ["/usr/bin/python3"], "sudo python3 -m pytest -k close"),
    # python -c: nothing to repeat, so the command that runs the scenarios
    (["-c"], "/usr/bin/python3", None, "/", ["/usr/bin/python3"], "sudo python3 -m verifier run"),
])
def test_sudo_command_repeats_what_the_user_typed(argv, executable, module, cwd, found, expected):
    assert netns.sudo_command(argv, executable, module, cwd, which=on_path(*found)) == expected


REPO = Path(__file__).resolve().parents[1]
DROP_ALL = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]


def run_unprivileged(argv: list[str], cwd: str) -> subprocess.CompletedProcess[str]:
    from verifier.lab.runtime import unreachable

    why = unreachable(str(REPO / "verifier"), 65534, {65534})
    if why is not None:  # `make test` refuses such a checkout before any test runs
        pytest.skip(f"uid 65534 cannot read this checkout: {why}")
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(DROP_ALL + argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def test_unprivileged_cli_names_what_is_missing_once_and_the_command_typed_under_sudo():
    out = run_unprivileged([sys.executable, "-m", "verifier", "run", "destroy", "--runtime", "node"], cwd="/")
    assert out.returncode == EXIT_ENVIRONMENT, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.rstrip().endswith(f": run `sudo {sys.executable} -m verifier run destroy --runtime node`")
    for cap in ("CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"):
        assert out.stderr.count(cap) == 1, out.stderr


def test_unprivileged_console_script_is_repeated_by_its_path():
    script = Path(sys.executable).parent / "verifier"
    if not script.is_file():
        pytest.skip("no console script beside the interpreter (not an installed venv)")
    out = run_unprivileged([str(script), "run", "destroy"], cwd=str(script.parent))
    assert out.returncode == EXIT_ENVIRONMENT, out.stderr
    assert out.stderr.rstrip().endswith(": run `sudo ./verifier run destroy`")


def test_check_privileges_names_the_package_of_a_missing_tool(monkeypatch):
    monkeypatch.setitem(netns.TOOL_PACKAGES, "verifier-no-such-tool", "verifier-fake-package")
    with pytest.raises(EnvironmentProblem, match="verifier-fake-package"):
        check_privileges()


def test_name_has_prefix_pid_tag_counter_and_lo_is_up(ns):
    assert re.fullmatch(rf"verifier-{os.getpid()}-test-\d+", ns.name)
    assert ns.name in netns_names()
    assert "UP" in run(["ip", "-n", ns.name, "link", "show", "lo"]).stdout.split(">")[0]
    with ns.entered():
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family) as server, socket.socket(family) as client:
                server.bind((address, 0))
                server.listen()
                client.connect(server.getsockname()[:2])


def test_tag_is_made_safe_for_a_file_name():
    with Namespace("a/b c") as namespace:
        assert "/" not in namespace.name and " " not in namespace.name


def test_localhost_resolves_to_ipv6_first_for_getent(ns):
    out = run(ns.command(["getent", "ahosts", "localhost"], user=unprivileged_user())).stdout
    addresses = [line.split()[0] for line in out.splitlines()]
    assert addresses[0] == "::1"
    assert "127.0.0.1" in addresses


def test_localhost_resolves_to_ipv6_first_for_node(ns):
    script = "require('dns').lookup('localhost',{all:true},(e,a)=>console.log(JSON.stringify({e,a,uid:process.getuid()})))"
    result = json.loads(run(ns.command(["node", "-e", script], user=unprivileged_user())).stdout)
    assert result["e"] is None
    assert [entry["address"] for entry in result["a"]] == ["::1", "127.0.0.1"]
    assert result["uid"] == unprivileged_user()[0] != 0


def test_hosts_file_lives_in_etc_netns_and_none_means_no_file():
    with Namespace("hosts") as namespace:
        assert (Path("/etc/netns") / namespace.name / "hosts").read_text() == netns.DEFAULT_HOSTS
    with Namespace("nohosts", hosts=None) as namespace:
        assert not (Path("/etc/netns") / namespace.name).exists()


def test_command_drops_to_the_user_without_groups_or_capabilities(ns):
    uid, gid = unprivileged_user()
    out = run(ns.command(["sh", "-c", "id -u; id -g; id -G; grep CapEff /proc/self/status"], user=(uid, gid))).stdout
    lines = out.splitlines()
    assert lines[:3] == [str(uid), str(gid), str(gid)]
    assert lines[3].split()[1] == "0000000000000000"


def test_command_runs_inside_the_namespace(ns):
    inode = os.stat(ns.path).st_ino
    out = run(ns.command(["readlink", "/proc/self/ns/net"], user=unprivileged_user())).stdout.strip()
    assert out == f"net:[{inode}]"


def test_sysctl_is_set_inside_and_not_on_the_host():
    key = Path("/proc/sys/net/ipv4/tcp_syn_retries")
    host_before = key.read_text()
    assert host_before.strip() != "1"
    with Namespace("sysctl", sysctls={"net.ipv4.tcp_syn_retries": "1"}) as namespace:
        with namespace.entered():
            assert key.read_text().strip() == "1"
        assert key.read_text() == host_before  # this thread is back on the host
        out = run(namespace.command(["cat", str(key)], user=unprivileged_user())).stdout
        assert out.strip() == "1"
    assert key.read_text() == host_before


def test_sysctl_outside_net_is_refused_before_anything_is_created():
    with pytest.raises(UsageError, match="kernel.pid_max"):
        Namespace("bad", sysctls={"kernel.pid_max": "4096"})


def test_unknown_sysctl_is_a_usage_error_and_leaves_nothing():
    before = netns_names()
    with pytest.raises(UsageError, match="does not exist"):
        with Namespace("bad", sysctls={"net.ipv4.no_such_sysctl": "1"}):
            pass
    assert netns_names() == before


def connect_times_out(namespace: Namespace, port: int) -> bool:
    with namespace.entered():
        server = socket.socket()
        client = socket.socket()
    with server, client:
        server.bind(("127.0.0.1", port))
        server.listen()
        client.settimeout(0.3)
        try:
            client.connect(("127.0.0.1", port))
        except TimeoutError:
            return True
        return False


def test_nft_rule_drops_inside_only():
    host_ruleset = run(["nft", "list", "ruleset"]).stdout
    with Namespace("blocked", nft_ruleset=BLOCK_PORT_5000, sysctls={"net.ipv4.tcp_syn_retries": "1"}) as blocked:
        with Namespace("open") as unblocked:
            assert "verifier_test" in run(["ip", "netns", "exec", blocked.name, "nft", "list", "tables"]).stdout
            assert connect_times_out(blocked, 5000)
            assert not connect_times_out(blocked, 5001)
            assert not connect_times_out(unblocked, 5000)
            assert run(["nft", "list", "ruleset"]).stdout == host_ruleset
    assert run(["nft", "list", "ruleset"]).stdout == host_ruleset


def test_bad_ruleset_is_a_usage_error_and_leaves_nothing():
    before = netns_names()
    with pytest.raises(UsageError, match="nftables ruleset rejected"):
        with Namespace("badnft", nft_ruleset="table inet x { this is not nft }"):
            pass
    assert netns_names() == before


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_everything_is_removed_after_an_exception(error):
    with pytest.raises(error):
        with Namespace("boom") as namespace:
            name = namespace.name
            sleeper = subprocess.Popen(namespace.command(["sleep", "60"], user=unprivileged_user()))
            wait_for(lambda: sleeper.pid in namespace.processes())
            raise error()
    assert sleeper.wait(timeout=5) == -9
    assert name not in netns_names()
    assert not (Path("/run/netns") / name).exists()
    assert not (Path("/etc/netns") / name).exists()


def test_destroy_is_idempotent():
    namespace = Namespace("twice")
    namespace.create()
    namespace.destroy()
    namespace.destroy()
    assert namespace.name not in netns_names()


def own_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def test_entered_moves_only_the_calling_thread(ns):
    host = own_netns()
    asked, answered = threading.Event(), threading.Event()
    seen_by_other_thread = []

    def other_thread():
        asked.wait()
        seen_by_other_thread.append(own_netns())
        answered.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with ns.entered():
        inside = own_netns()
        asked.set()
        answered.wait(5)
    worker.join()
    assert inside == f"net:[{os.stat(ns.path).st_ino}]" != host
    assert seen_by_other_thread == [host]
    assert own_netns() == host


def test_a_thread_started_inside_entered_starts_in_the_namespace(ns):
    seen = []
    with ns.entered():
        worker = threading.Thread(target=lambda: seen.append(own_netns()))
        worker.start()
    worker.join()
    assert seen == [f"net:[{os.stat(ns.path).st_ino}]"]


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_remove_leftovers_removes_only_namespaces_of_dead_creators():
    dead = f"verifier-{dead_pid()}-leftover-0"
    alive = "verifier-1-alive-0"  # pid 1 is always alive
    mine = f"verifier-{os.getpid()}-mine-999999"
    try:
        for name in (dead, alive, mine):
            run(["ip", "netns", "add", name])
        (Path("/etc/netns") / dead).mkdir(parents=True)
        (Path("/etc/netns") / dead / "hosts").write_text(netns.DEFAULT_HOSTS)
        orphan = subprocess.Popen(["ip", "netns", "exec", dead, "sleep", "60"])
        wait_for(lambda: orphan.pid in netns.pids_in_namespace(Path("/run/netns") / dead))

        removed = remove_leftovers()

        assert dead in removed
        assert alive not in removed and mine not in removed
        assert dead not in netns_names()
        assert not (Path("/etc/netns") / dead).exists()
        assert orphan.wait(timeout=5) == -9
        assert alive in netns_names() and mine in netns_names()
    finally:
        for name in (dead, alive, mine):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_remove_leftovers_removes_an_etc_netns_dir_without_namespace():
    name = f"verifier-{dead_pid()}-etconly-0"
    (Path("/etc/netns") / name).mkdir(parents=True)
    assert name in remove_leftovers()
    assert not (Path("/etc/netns") / name).exists()


def test_unprivileged_user_prefers_the_sudo_caller(monkeypatch):
    monkeypatch.setenv("SUDO_UID", "1234")
    monkeypatch.setenv("SUDO_GID", "555")
    assert unprivileged_user() == (1234, 555)


def test_unprivileged_user_is_nobody_without_sudo_and_never_root(monkeypatch):
    import pwd

    nobody = pwd.getpwnam("nobody")
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)
    assert unprivileged_user() == (nobody.pw_uid, nobody.pw_gid)
    monkeypatch.setenv("SUDO_UID", "0")
    monkeypatch.setenv("SUDO_GID", "0")
    assert unprivileged_user() == (nobody.pw_uid, nobody.pw_gid)
