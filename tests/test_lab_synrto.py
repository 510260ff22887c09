"""Tests for verifier.lab.synrto: the program's encoding, mountinfo, HZ, jiffies; on the wire, the SYN RTO it sets."""

from __future__ import annotations

import errno
import io
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verifier.errors import EXIT_ENVIRONMENT, EnvironmentProblem, UsageError
from verifier.lab import synrto
from verifier.lab.synrto import (
    SynRtoCgroup,
    cgroup2_mounts,
    hz_from_config,
    hz_from_samples,
    insn,
    join_and_exec,
    prog_attach_attr,
    prog_load_attr,
    prog_query_attr,
    rto_jiffies,
    timeout_init_program,
    timer_list_sample,
)

# --- the program ---------------------------------------------------------------------------------


def test_insn_layout_little_and_big_endian():
    # r2 = *(u32 *)(r1 + 0): code 0x61, dst 2 in the low nibble, src 1 in the high one (little-endian)
    assert insn(0x61, 2, 1, 0, 0, byteorder="little") == bytes([0x61, 0x12, 0, 0, 0, 0, 0, 0])
    assert insn(0x61, 2, 1, 0, 0, byteorder="big") == bytes([0x61, 0x21, 0, 0, 0, 0, 0, 0])
    assert insn(0x55, 2, 0, 2, 1, byteorder="little") == bytes([0x55, 0x02, 2, 0, 1, 0, 0, 0])
    assert insn(0x55, 2, 0, 2, 1, byteorder="big") == bytes([0x55, 0x20, 0, 2, 0, 0, 0, 1])
    assert insn(0xB4, 3, 0, 0, -1, byteorder="little") == bytes([0xB4, 0x03, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])


def decode(program: bytes) -> list[tuple[int, int, int, int, int]]:
    out = []
    for pos in range(0, len(program), 8):
        code, regs, off, imm = struct.unpack_from("<BBhi", program, pos)
        out.append((code, regs & 0xF, regs >> 4, off, imm))
    return out


def test_timeout_init_program_replies_the_rto_to_timeout_init_and_minus_one_otherwise():
    assert decode(timeout_init_program(25, byteorder="little")) == [
        (0x61, 2, 1, 0, 0),  # r2 = ctx->op (offset 0)
        (0x55, 2, 0, 2, 1),  # if r2 != BPF_SOCK_OPS_TIMEOUT_INIT goto +2
        (0xB4, 3, 0, 0, 25),  # r3 = 25 (jiffies)
        (0x05, 0, 0, 1, 0),  # goto +1
        (0xB4, 3, 0, 0, -1),  # r3 = -1
        (0x63, 1, 3, 4, 0),  # ctx->reply (offset 4) = r3
        (0xB7, 0, 0, 0, 1),  # r0 = 1
        (0x95, 0, 0, 0, 0),  # exit
    ]


def run_program(program: bytes, op: int) -> int:
    """A tiny interpreter for the instructions the program uses: ctx->reply after running it on `op`."""
    regs, ctx, pc = [0] * 11, {0: op, 4: 0}, 0
    steps = decode(program)
    while True:
        code, dst, src, off, imm = steps[pc]
        pc += 1
        if code == 0x61:
            regs[dst] = ctx[off]
        elif code == 0x63:
            ctx[off] = regs[src] & 0xFFFFFFFF
        elif code == 0x55:
            pc += off if regs[dst] != imm else 0
        elif code == 0x05:
            pc += off
        elif code in (0xB4, 0xB7):
            regs[dst] = imm & (0xFFFFFFFF if code == 0xB4 else 0xFFFFFFFFFFFFFFFF)
        elif code == 0x95:
            assert regs[0] == 1
            return ctx[4]


@pytest.mark.parametrize("op,reply", [(1, 50), (0, 0xFFFFFFFF), (2, 0xFFFFFFFF), (4, 0xFFFFFFFF)])
def test_program_semantics(op, reply):
    assert run_program(timeout_init_program(50, byteorder="little"), op) == reply


@pytest.mark.parametrize("bad", [0, -1, 1 << 31])
def test_program_refuses_an_rto_out_of_range(bad):
    with pytest.raises(ValueError):
        timeout_init_program(bad)


def test_bpf_attr_layouts():
    load = prog_load_attr(insns=0x1111, insn_cnt=8, license=0x2222, log_buf=0x3333, log_size=4096)
    assert len(load) == synrto.BPF_ATTR_SIZE
    assert struct.unpack_from("=IIQQIIQ", load, 0) == (13, 8, 0x1111, 0x2222, 1, 4096, 0x3333)
    assert load[48:64] == b"verifier_synrto\0"
    assert struct.unpack_from("=II", load, 64) == (0, 3)  # prog_ifindex, expected_attach_type BPF_CGROUP_SOCK_OPS
    assert load[72:] == bytes(len(load) - 72)
    attach = prog_attach_attr(target_fd=7, prog_fd=9)
    assert struct.unpack_from("=IIII", attach) == (7, 9, 3, 0) and attach[16:] == bytes(len(attach) - 16)
    query = prog_query_attr(target_fd=7, prog_ids=0x4444, prog_cnt=64)
    assert struct.unpack_from("=IIIIQI", query) == (7, 3, 0, 0, 0x4444, 64)


# --- mountinfo, HZ, jiffies ----------------------------------------------------------------------

HYBRID = """\
23 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 master:3 - cgroup2 cgroup2 rw,nsdelegate
"""


def test_cgroup2_mounts_from_mountinfo():
    assert cgroup2_mounts(HYBRID) == ["/sys/fs/cgroup/unified"]
    assert cgroup2_mounts("29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n") == ["/sys/fs/cgroup"]
    assert cgroup2_mounts(HYBRID.splitlines()[0] + "\n") == []
    assert cgroup2_mounts("") == []
    # a mount point with a space is escaped as \040; a bind mount of a sub-cgroup comes after the root one
    text = ("50 23 0:38 /user.slice /mnt/sub rw - cgroup2 cgroup2 rw\n"
            "51 23 0:38 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n")
    assert cgroup2_mounts(text) == ["/mnt/my cgroups", "/mnt/sub"]
    assert cgroup2_mounts("garbage\n1 2 3\n") == []


def test_hz_from_config():
    assert hz_from_config("# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n") == 250
    assert hz_from_config("CONFIG_HZ_PERIODIC=y\nCONFIG_HZ=1000\n") == 1000
    assert hz_from_config("CONFIG_HZ_250=y\n") is None


def test_timer_list_sample():
    text = ("Timer List Version: v0.10\nnow at 7545209364705 nsecs\n\ncpu: 0\n jiffies: 1\n"
            "jiffies: 4296778570\njiffies: 4296778571\n")
    assert timer_list_sample(text) == (7545209364705, 4296778570)
    assert timer_list_sample("now at 5 nsecs\n") is None


@pytest.mark.parametrize("hz", [100, 250, 300, 1000])
@pytest.mark.parametrize("error_ticks", [-1, 0, 1])
def test_hz_from_samples_snaps_to_the_config_value(hz, error_ticks):
    ticks = hz // 10 + error_ticks  # 0.1 s apart, each end exact to a tick
    assert hz_from_samples((1_000_000_000, 5000), (1_100_000_000, 5000 + ticks)) == hz


def test_hz_from_samples_knows_the_rarer_values_too():
    assert hz_from_samples((0, 0), (100_000_000, 50)) == 500
    assert hz_from_samples((0, 0), (1_000_000_000, 1024)) == 1000  # a common value within 8 % wins
    assert hz_from_samples((0, 0), (1_000_000_000, 128)) == 128


def test_hz_from_samples_refuses_nonsense():
    assert hz_from_samples((10, 5), (10, 6)) is None  # no time passed
    assert hz_from_samples((0, 5), (100_000_000, 5)) is None  # no tick
    assert hz_from_samples((0, 0), (100_000_000, 75)) is None  # 750 Hz: no CONFIG_HZ near it


def test_this_kernels_hz_counted_agrees_with_its_config():
    counted = synrto.hz_counted()
    assert counted in synrto.KNOWN_HZ
    configured = synrto.hz_of_kernel_config()
    assert configured in (None, counted)
    assert synrto.kernel_hz() == (configured or counted)


def test_rto_jiffies_rounds_up_and_refuses_less_than_a_jiffy():
    assert rto_jiffies(0.1, 250) == 25  # exact despite 0.1 * 250 = 25.000000000000004
    assert rto_jiffies(0.2, 300) == 60 and rto_jiffies(0.2, 1000) == 200 and rto_jiffies(1.0, 100) == 100
    assert rto_jiffies(0.01, 250) == 3  # 2.5 jiffies: never shorter than asked
    assert rto_jiffies(0.004, 250) == 1
    with pytest.raises(ValueError, match=r"2 ms is less than one jiffy \(HZ=250: 4 ms\)"):
        rto_jiffies(0.002, 250)


def test_join_and_exec_writes_its_own_pid_then_execs():
    argv = join_and_exec("/cg/x/cgroup.procs", ["ip", "netns", "exec", "ns", "node", "a b.mjs"])
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[4:] == ["/cg/x/cgroup.procs", "ip", "netns", "exec", "ns", "node", "a b.mjs"]
    # the shell does what it says: writes $$ into the file, then its arguments run unchanged in its place
    procs = Path("/tmp") / f"verifier-test-procs-{os.getpid()}"
    try:
        show = [sys.executable, "-c", "import os,sys; print(os.getpid(), sys.argv[1:])", "a b", "$x"]
        out = subprocess.run(join_and_exec(str(procs), show), capture_output=True, text=True, check=True).stdout.split(" ", 1)
        assert procs.read_text().strip() == out[0]
        assert out[1].strip() == "['a b', '$x']"
    finally:
        procs.unlink(missing_ok=True)


# --- errors a user's kernel can cause ------------------------------------------------------------


def fake_bpf(failing_cmd: int, code: int):
    def bpf(cmd, attr):
        if cmd == failing_cmd:
            raise OSError(code, os.strerror(code))
        return 3, None
    return bpf


def test_a_kernel_without_cgroup_bpf_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(synrto, "_bpf", fake_bpf(synrto.BPF_PROG_ATTACH, errno.EINVAL))
    with pytest.raises(EnvironmentProblem) as caught:
        synrto.attach_program(5, 3, "/sys/fs/cgroup/verifier-1-0")
    assert caught.value.exit_code == EXIT_ENVIRONMENT
    assert "CONFIG_CGROUP_BPF" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("code,uid,needle", [
    (errno.ENOSYS, 0, "CONFIG_BPF_SYSCALL"),
    (errno.EPERM, 1000, "needs root .* run `sudo .*`"),
    (errno.EPERM, 0, "does not let root load a BPF program .*lockdown"),
    (errno.EINVAL, 0, "refused the sock_ops BPF program"),
])
def test_a_refused_program_says_why(monkeypatch, code, uid, needle):
    monkeypatch.setattr(synrto, "_bpf", fake_bpf(synrto.BPF_PROG_LOAD, code))
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    with pytest.raises(EnvironmentProblem, match=needle):
        synrto.load_program(25)


def test_the_verifier_log_is_in_the_message():
    log = "0: (61) r2 = *(u32 *)(r1 +0)\ninvalid bpf_context access off=4 size=8\n"
    message = synrto._load_failure(errno.EACCES, log)
    assert "invalid bpf_context access" in message and "Permission denied" in message


def test_an_rto_below_a_jiffy_names_the_scenario(monkeypatch):
    monkeypatch.setattr(synrto, "kernel_hz", lambda: 250)
    with pytest.raises(UsageError, match=r"^/s/x\.mjs: 'syn-rto:' 2 ms is less than one jiffy"):
        synrto.jiffies_for(0.002, "/s/x.mjs")
    assert synrto.jiffies_for(0.1, "/s/x.mjs") == 25


# --- for real (root): the RTO on the wire, and nothing left behind -------------------------------

BLACKHOLE_5000 = """
table inet verifier_test {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 5000 drop
    }
}
"""

# Connects to a blackholed port; prints errno and how long the connect took.
CONNECT = ("import socket, time\n"
           "s = socket.socket(); t = time.monotonic()\n"
           "try:\n    s.connect(('127.0.0.1', 5000))\n"
           "except OSError as e:\n    print(e.errno, time.monotonic() - t)\n")


def cgroup_dirs(pid: int | None = None) -> list[str]:
    root = synrto.cgroup2_root()
    prefix = f"verifier-{pid}-" if pid else "verifier-"
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and e.name.startswith(prefix)
                  and not e.name.startswith(synrto.FALLBACK_MOUNT_PREFIX))


def program_exists(prog_id: int, wait: float = 2.0) -> bool:
    """Whether a BPF program with this id still exists (freed programs go after an RCU grace period)."""
    end = time.monotonic() + wait
    while True:
        fd = synrto.program_fd(prog_id)
        if fd is None:
            return False
        os.close(fd)
        if time.monotonic() > end:
            return True
        time.sleep(0.01)


def syn_times(pcap: bytes) -> list[float]:
    """The capture times of the one connection's segments, all of them SYNs from the client."""
    from verifier.wire.show import CaptureReading

    SYN = 0x02
    (conn,) = list(CaptureReading(io.BytesIO(pcap)).connections())
    assert all(s.side == "C" and s.segment.flags == SYN for s in conn.segments), conn.segments
    return [s.segment.t for s in conn.segments]


def blackholed_connect(argv_for, timeout: float | None = None, rto_ms: int | None = None):
    """A connect to a blackholed port inside a fresh namespace, captured: (stdout, pcap, cgroup)."""
    from verifier.lab.capture import capture_backend
    from verifier.lab.netns import Namespace, unprivileged_user

    script = CONNECT if timeout is None else CONNECT.replace("s.connect", f"s.settimeout({timeout}); s.connect")
    with Namespace("synrto", sysctls={"net.ipv4.tcp_syn_retries": "1"}, nft_ruleset=BLACKHOLE_5000) as ns:
        cap = capture_backend("scapy")
        cap.start(ns)
        try:
            done = subprocess.run(argv_for(ns.command([sys.executable, "-c", script], user=unprivileged_user())),
                                  capture_output=True, text=True, timeout=20)
        finally:
            captured = cap.stop()
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), syn_times(captured.pcap)


@pytest.mark.privileged
@pytest.mark.parametrize("rto_ms", [60, 100])
def test_the_syn_rto_on_the_wire_is_the_chosen_one_and_everything_is_removed(rto_ms):
    hz = synrto.kernel_hz()
    jiffy = 1 / hz
    with SynRtoCgroup(rto_ms / 1000) as cg:
        assert cg.jiffies == rto_jiffies(rto_ms / 1000, hz)
        path = cg.path
        assert os.path.isdir(path) and os.path.basename(path).startswith(f"verifier-{os.getpid()}-")
        (prog_id,) = synrto.attached_programs(cg.dir_fd)
        (code, elapsed), times = blackholed_connect(cg.command)
    assert int(code) == errno.ETIMEDOUT
    intervals = [b - a for a, b in zip(times, times[1:])]
    rto = cg.jiffies * jiffy
    # Linux 6.17+ (tcp_syn_linear_timeouts) retransmits at the same RTO twice; older kernels
    # double it and retransmit once. Each timer fires within a jiffy or two after its expiry.
    assert len(intervals) >= 1, times
    assert rto - jiffy / 2 <= intervals[0] <= rto + 3 * jiffy, (intervals, rto)
    if len(intervals) == 2:
        assert rto - jiffy / 2 <= intervals[1] <= rto + 3 * jiffy, (intervals, rto)
    # the give-up time is modelled from the same RTO: 3 of them for tcp_syn_retries=1
    assert 3 * rto <= float(elapsed) <= 3 * rto + 6 * jiffy + 0.05, (elapsed, rto)
    # nothing left: no cgroup directory, the program detached and freed
    assert not os.path.exists(path)
    assert not program_exists(prog_id)
    root = os.open(synrto.cgroup2_root(), os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert prog_id not in synrto.attached_programs(root)
    finally:
        os.close(root)


@pytest.mark.privileged
def test_without_the_cgroup_the_syn_rto_is_the_kernels_own():
    """The control: the same connect outside the cgroup, given up by the program at 0.5 s, saw no retransmission."""
    (code, elapsed), times = blackholed_connect(lambda argv: argv, timeout=0.5)
    assert code == "None" and float(elapsed) >= 0.5  # socket.timeout: the program's, not the kernel's ETIMEDOUT
    assert len(times) == 1


@pytest.mark.privileged
def test_processes_left_inside_are_killed_and_everything_removed_after_an_exception():
    with pytest.raises(RuntimeError, match="boom"):
        with SynRtoCgroup(0.1) as cg:
            path = cg.path
            (prog_id,) = synrto.attached_programs(cg.dir_fd)
            sleeper = subprocess.Popen(cg.command(["sleep", "60"]))
            deadline = time.monotonic() + 5
            while sleeper.pid not in cg.processes():
                assert time.monotonic() < deadline
                time.sleep(0.005)
            raise RuntimeError("boom")
    assert sleeper.wait(timeout=5) == -9
    assert not os.path.exists(path)
    assert not program_exists(prog_id)
    cg.destroy()  # idempotent


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.privileged
def test_leftovers_of_a_dead_run_are_removed_by_remove_leftovers():
    from verifier.lab.netns import remove_leftovers

    root = synrto.cgroup2_root()
    dead = os.path.join(root, f"verifier-{dead_pid()}-0")
    alive = os.path.join(root, "verifier-1-0")  # pid 1 is always alive
    mine = os.path.join(root, f"verifier-{os.getpid()}-999999")
    for path in (dead, alive, mine):
        os.mkdir(path)
    try:
        # what a SIGKILLed run leaves: a program attached (no fd of ours holds it) and a process inside
        fd = os.open(dead, os.O_RDONLY | os.O_DIRECTORY)
        prog = synrto.load_program(25)
        synrto.attach_program(fd, prog, dead)
        (prog_id,) = synrto.attached_programs(fd)
        os.close(prog)
        os.close(fd)
        orphan = subprocess.Popen(join_and_exec(os.path.join(dead, "cgroup.procs"), ["sleep", "60"]))
        deadline = time.monotonic() + 5
        while orphan.pid not in synrto.cgroup_pids(dead):
            assert time.monotonic() < deadline
            time.sleep(0.005)

        removed = remove_leftovers()

        assert dead in removed and alive not in removed and mine not in removed
        assert not os.path.exists(dead) and os.path.isdir(alive) and os.path.isdir(mine)
        assert orphan.wait(timeout=5) == -9
        assert not program_exists(prog_id)
    finally:
        for path in (dead, alive, mine):
            if os.path.isdir(path):
                os.rmdir(path)


@pytest.mark.privileged
def test_without_a_cgroup2_mount_one_is_made_and_a_dead_runs_is_removed(monkeypatch, tmp_path):
    monkeypatch.setattr(synrto, "_fallback_mount", None)
    real = synrto.cgroup2_mounts
    monkeypatch.setattr(synrto, "cgroup2_mounts", lambda text: [])
    try:
        with SynRtoCgroup(0.1) as cg:
            point = synrto._fallback_mount
            assert point and os.path.basename(point).startswith(f"verifier-cgroup2-{os.getpid()}-")
            assert cg.path.startswith(point + "/") and synrto.attached_programs(cg.dir_fd)
        assert not os.path.exists(cg.path)
    finally:
        if synrto._fallback_mount:
            synrto._unmount(synrto._fallback_mount)
    assert not os.path.exists(point)
    monkeypatch.setattr(synrto, "cgroup2_mounts", real)
    # a dead run's own mount (it had no other) is unmounted by the next run
    leftover = tmp_path / f"verifier-cgroup2-{dead_pid()}-abcd"
    leftover.mkdir()
    subprocess.run(["mount", "-t", "cgroup2", "none", str(leftover)], check=True)
    try:
        assert str(leftover) in synrto.remove_leftover_cgroups()
        assert str(leftover) not in real(Path("/proc/self/mountinfo").read_text())
    finally:
        subprocess.run(["umount", "-l", str(leftover)], capture_output=True)


@pytest.mark.privileged
def test_cli_refuses_an_rto_below_a_jiffy_before_anything_runs(tmp_path, monkeypatch, capsys):
    from verifier.cli import main

    monkeypatch.setattr(synrto, "kernel_hz", lambda: 100)  # a jiffy of 10 ms
    program = tmp_path / "quick.mjs"
    program.write_text("// quick: d\n// syn-rto: 5ms\nimport { done } from './probe.mjs';\ndone();\n/* expect\n*/\n")
    assert main(["run", str(program)]) == 2
    err = capsys.readouterr().err
    assert err == f"verifier: {program}: 'syn-rto:' 5 ms is less than one jiffy (HZ=100: 10 ms)\n"


@pytest.mark.privileged
def test_cli_on_a_kernel_without_cgroup_bpf_is_exit_3_in_one_line_and_leaves_nothing(monkeypatch, capsys):
    from verifier.cli import main

    real = synrto._bpf

    def no_cgroup_bpf(cmd, attr):
        if cmd == synrto.BPF_PROG_ATTACH:  # what the kernel's stub says without CONFIG_CGROUP_BPF
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real(cmd, attr)

    monkeypatch.setattr(synrto, "_bpf", no_cgroup_bpf)
    assert main(["run", "attempt-timeout"]) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err
    assert err.startswith("verifier: syn-rto: cannot attach a sock_ops BPF program to the cgroup ")
    assert "CONFIG_CGROUP_BPF" in err and len(err.strip().splitlines()) == 1
    assert cgroup_dirs(os.getpid()) == []
    assert not [p for p in Path("/run/netns").glob(f"verifier-{os.getpid()}-*")]
