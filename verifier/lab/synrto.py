"""A scenario's initial SYN RTO: a fresh cgroup v2 whose sock_ops BPF program answers BPF_SOCK_OPS_TIMEOUT_INIT.

Linux asks a cgroup's sock_ops program for the initial SYN RTO: `tcp_timeout_init()` runs it
with op BPF_SOCK_OPS_TIMEOUT_INIT and uses its `reply` (jiffies) as the first RTO of every
socket created in the cgroup (SYN and SYN-ACK), and `retransmits_timed_out()` models the
connect's give-up time from the same value. So `// syn-rto: 100ms` gives each scenario run its
own cgroup directory `<cgroup2 mount>/verifier-<pid>-<n>` with an 8-instruction program
attached; the program is started inside it (`SynRtoCgroup.command`), everything is removed on
exit (also after an error or Ctrl-C), and a SIGKILLed run's leftovers are removed by the next
run (`remove_leftover_cgroups`, called from netns.remove_leftovers).

Pure parts (unit tested): instruction encoding, the bpf_attr layouts, mountinfo parsing, HZ
from the kernel config or from two /proc/timer_list samples, seconds to jiffies. The rest is
a thin edge over bpf(2), mkdir/rmdir and mount(2).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import functools
import gzip
import itertools
import os
import platform
import re
import signal
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..errors import EnvironmentProblem, UsageError
from .netns import PREFIX, _libc, _sigint_deferred, left_by_dead_process

# bpf(2) commands, program and attach types (include/uapi/linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_CGROUP_SOCK_OPS = 3
BPF_SOCK_OPS_TIMEOUT_INIT = 1
PROGRAM_NAME = b"verifier_synrto"  # shows in `bpftool prog` (at most 15 characters)
BPF_ATTR_SIZE = 128  # larger than every layout used here; the kernel wants the tail zeroed
LOG_SIZE = 1 << 16

# The bpf(2) system call number per machine (not in Python's os module).
SYS_BPF = {"x86_64": 321, "amd64": 321, "i386": 357, "i686": 357, "aarch64": 280, "arm64": 280,
           "armv7l": 386, "armv6l": 386, "riscv64": 280, "loongarch64": 280, "ppc64le": 361, "ppc64": 361,
           "s390x": 351}

# CONFIG_HZ values Linux offers: kernel/Kconfig.hz's, then the architectures' own lists
COMMON_HZ = (100, 250, 300, 1000)
KNOWN_HZ = (24, 32, 48, 64, 100, 128, 200, 250, 256, 300, 500, 1000, 1024, 1200)
HZ_SAMPLE_S = 0.1  # the /proc/timer_list fallback: jiffies counted over this long
CGROUP_KILL_WAIT_S = 2.0
FALLBACK_MOUNT_PREFIX = "verifier-cgroup2-"  # <tmp>/verifier-cgroup2-<pid>-XXXX when no cgroup2 is mounted

# --- pure: the program ---------------------------------------------------------------------------

# struct bpf_insn { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }
BPF_LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
BPF_STX_MEM_W = 0x63  # *(u32 *)(dst + off) = src
BPF_JNE_K = 0x55  # if dst != imm goto pc + 1 + off
BPF_JA = 0x05  # goto pc + 1 + off
BPF_MOV32_K = 0xB4  # (u32) dst = imm
BPF_MOV64_K = 0xB7  # dst = imm
BPF_EXIT = 0x95
R0, R1, R2, R3 = 0, 1, 2, 3
SOCK_OPS_OP = 0  # offsetof(struct bpf_sock_ops, op)
SOCK_OPS_REPLY = 4  # offsetof(struct bpf_sock_ops, reply)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0, byteorder: str = sys.byteorder) -> bytes:
    """One eBPF instruction (8 bytes) in the host's layout: the register nibbles swap on big-endian."""
    regs = (src << 4 | dst) if byteorder == "little" else (dst << 4 | src)
    return struct.pack("<BBhi" if byteorder == "little" else ">BBhi", code, regs, off, imm)


def timeout_init_program(rto_jiffies: int, byteorder: str = sys.byteorder) -> bytes:
    """The sock_ops program: reply `rto_jiffies` to BPF_SOCK_OPS_TIMEOUT_INIT, -1 (no opinion) to any other op."""
    if not 1 <= rto_jiffies <= 0x7FFFFFFF:
        raise ValueError(f"an RTO of {rto_jiffies} jiffies is out of range")
    return b"".join(insn(*i, byteorder=byteorder) for i in (
        (BPF_LDX_MEM_W, R2, R1, SOCK_OPS_OP, 0),  # r2 = ctx->op
        (BPF_JNE_K, R2, 0, 2, BPF_SOCK_OPS_TIMEOUT_INIT),  # if r2 != TIMEOUT_INIT goto +2
        (BPF_MOV32_K, R3, 0, 0, rto_jiffies),  # r3 = rto
        (BPF_JA, 0, 0, 1, 0),  # goto +1
        (BPF_MOV32_K, R3, 0, 0, -1),  # r3 = -1 (0xffffffff): the kernel's default
        (BPF_STX_MEM_W, R1, R3, SOCK_OPS_REPLY, 0),  # ctx->reply = r3
        (BPF_MOV64_K, R0, 0, 0, 1),  # r0 = 1: allow
        (BPF_EXIT, 0, 0, 0, 0),
    ))


# --- pure: bpf_attr layouts (union bpf_attr, include/uapi/linux/bpf.h) ----------------------------

def prog_load_attr(insns: int, insn_cnt: int, license: int, log_buf: int, log_size: int) -> bytes:
    """BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version,
    prog_flags, prog_name[16], prog_ifindex, expected_attach_type (addresses as integers)."""
    head = struct.pack("=IIQQIIQII16sII", BPF_PROG_TYPE_SOCK_OPS, insn_cnt, insns, license, 1, log_size, log_buf,
                       0, 0, PROGRAM_NAME, 0, BPF_CGROUP_SOCK_OPS)
    return head.ljust(BPF_ATTR_SIZE, b"\0")


def prog_attach_attr(target_fd: int, prog_fd: int) -> bytes:
    """BPF_PROG_ATTACH / BPF_PROG_DETACH: target_fd, attach_bpf_fd, attach_type, attach_flags (0: the only one)."""
    return struct.pack("=IIII", target_fd, prog_fd, BPF_CGROUP_SOCK_OPS, 0).ljust(BPF_ATTR_SIZE, b"\0")


def prog_query_attr(target_fd: int, prog_ids: int, prog_cnt: int) -> bytes:
    """BPF_PROG_QUERY: target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt."""
    return struct.pack("=IIIIQI", target_fd, BPF_CGROUP_SOCK_OPS, 0, 0, prog_ids, prog_cnt).ljust(BPF_ATTR_SIZE, b"\0")


def prog_get_fd_attr(prog_id: int) -> bytes:
    """BPF_PROG_GET_FD_BY_ID: prog_id, next_id, open_flags."""
    return struct.pack("=III", prog_id, 0, 0).ljust(BPF_ATTR_SIZE, b"\0")


# --- pure: where cgroup2 is, what HZ is, seconds to jiffies ---------------------------------------

_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


def cgroup2_mounts(mountinfo: str) -> list[str]:
    """Mount points of cgroup2 in /proc/self/mountinfo text; the hierarchy's root mounts first."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) > dash + 1 and fields[dash + 1] == "cgroup2":
            point = _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields[4])
            found.append((fields[3] != "/", point))
    return [point for _, point in sorted(found, key=lambda f: f[0])]


def hz_from_config(config: str) -> int | None:
    """CONFIG_HZ from a kernel config (/proc/config.gz, /boot/config-RELEASE)."""
    found = re.search(r"^CONFIG_HZ=(\d+)\s*$", config, re.M)
    return int(found[1]) if found else None


def timer_list_sample(text: str) -> tuple[int, int] | None:
    """(now in ns, jiffies) from one read of /proc/timer_list, or None if it does not say both."""
    now = re.search(r"^now at (\d+) nsecs", text, re.M)
    jiffies = re.search(r"^jiffies: (\d+)", text, re.M)
    return (int(now[1]), int(jiffies[1])) if now and jiffies else None


def hz_from_samples(first: tuple[int, int], second: tuple[int, int]) -> int | None:
    """HZ from two (ns, jiffies) samples: the nearest of Kconfig.hz's values within 8 %, else of
    every architecture's within 12 %, else None.

    Each sample's jiffies is exact to a tick, so 0.1 s apart an HZ of 250 reads 240-260 and 300
    reads 290-310. A rarer value close to a common one (256, mips) snaps to it (250): an RTO
    2.4 % off, well inside a jiffy or two."""
    elapsed_ns, ticks = second[0] - first[0], second[1] - first[1]
    if elapsed_ns <= 0 or ticks <= 0:
        return None
    measured = ticks * 1e9 / elapsed_ns
    for candidates, tolerance in ((COMMON_HZ, 0.08), (KNOWN_HZ, 0.12)):
        nearest = min(candidates, key=lambda hz: abs(hz - measured))
        if abs(nearest - measured) <= tolerance * nearest:
            return nearest
    return None


def rto_jiffies(seconds: float, hz: int) -> int:
    """An RTO in jiffies: rounded up, as the kernel's msecs_to_jiffies() does (never shorter than asked).
    ValueError below one jiffy."""
    us = round(seconds * 1_000_000)
    if us * hz < 1_000_000:
        raise ValueError(f"{seconds * 1000:g} ms is less than one jiffy (HZ={hz}: {1000 / hz:g} ms)")
    return -(-us * hz // 1_000_000)


def cgroup_name(pid: int, n: int) -> str:
    return f"{PREFIX}{pid}-{n}"


def join_and_exec(procs_file: str, argv: list[str]) -> list[str]:
    """`argv`, started inside the cgroup whose cgroup.procs is `procs_file`.

    A root shell writes its own pid there, then execs `argv` (the same process: the program,
    its children and its sockets are in the cgroup from their first instruction). Alternatives
    rejected: preexec_fn (not safe with the worker threads scenarios run in), moving the pid from
    the parent after Popen (the program could open a socket first: a race), clone3's
    CLONE_INTO_CGROUP (out of subprocess's reach). It comes before `ip netns exec`, which mounts a
    fresh /sys: the cgroup2 mount under /sys/fs/cgroup is not visible behind it.
    """
    return ["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "verifier-cgroup", procs_file, *argv]


# --- the edge: bpf(2) ----------------------------------------------------------------------------

def _sys_bpf() -> int:
    machine = platform.machine().lower()
    if machine not in SYS_BPF:
        raise EnvironmentProblem(f"syn-rto: the bpf(2) system call number of {machine} is not known to verifier")
    return SYS_BPF[machine]


def _bpf(cmd: int, attr: bytes) -> tuple[int, ctypes.Array]:
    """bpf(cmd, attr): the result and the attr buffer (the kernel writes into it); OSError on failure."""
    buf = ctypes.create_string_buffer(attr, len(attr))
    syscall = _libc().syscall
    syscall.restype = ctypes.c_long
    result = syscall(ctypes.c_long(_sys_bpf()), ctypes.c_long(cmd), buf, ctypes.c_uint(len(attr)))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result, buf


def load_program(rto: int) -> int:
    """Load the sock_ops program for `rto` jiffies; its fd. EnvironmentProblem with the verifier log if refused."""
    code = timeout_init_program(rto)
    insns = ctypes.create_string_buffer(code, len(code))
    license = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(LOG_SIZE)
    attr = prog_load_attr(ctypes.addressof(insns), len(code) // 8, ctypes.addressof(license),
                          ctypes.addressof(log), LOG_SIZE)
    try:
        fd, _ = _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        raise EnvironmentProblem(_load_failure(e.errno, log.value.decode("utf-8", "replace"))) from None
    return fd


def _load_failure(code: int, log: str) -> str:
    if code == errno.ENOSYS:
        return "syn-rto: this kernel has no bpf(2) system call (CONFIG_BPF_SYSCALL is off)"
    if code == errno.EPERM and os.geteuid() != 0:
        from .netns import typed_command

        return f"syn-rto: loading a BPF program needs root (CAP_BPF and CAP_NET_ADMIN): run `{typed_command()}`"
    if code == errno.EPERM:
        return ("syn-rto: the kernel does not let root load a BPF program (EPERM: kernel lockdown, a security "
                "module, or before Linux 5.11 a too low RLIMIT_MEMLOCK)")
    reason = " | ".join(line for line in log.strip().splitlines()[-3:]) or "no verifier log"
    return (f"syn-rto: the kernel refused the sock_ops BPF program ({os.strerror(code)}; "
            f"needs CONFIG_BPF_SYSCALL and Linux 4.13+): {reason}")


def attach_program(cgroup_fd: int, prog_fd: int, where: str) -> None:
    try:
        _bpf(BPF_PROG_ATTACH, prog_attach_attr(cgroup_fd, prog_fd))
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
            raise EnvironmentProblem(
                f"syn-rto: cannot attach a sock_ops BPF program to the cgroup {where} ({e.strerror}): "
                "this kernel has no cgroup BPF (CONFIG_CGROUP_BPF)") from None
        raise EnvironmentProblem(
            f"syn-rto: cannot attach a sock_ops BPF program to the cgroup {where}: {e.strerror}") from None


def detach_program(cgroup_fd: int, prog_fd: int) -> None:
    with contextlib.suppress(OSError):  # ENOENT: not attached (any more)
        _bpf(BPF_PROG_DETACH, prog_attach_attr(cgroup_fd, prog_fd))


def attached_programs(cgroup_fd: int, most: int = 64) -> list[int]:
    """Ids of the sock_ops programs attached to the cgroup (BPF_PROG_QUERY)."""
    ids = (ctypes.c_uint32 * most)()
    _, buf = _bpf(BPF_PROG_QUERY, prog_query_attr(cgroup_fd, ctypes.addressof(ids), most))
    count = struct.unpack_from("=I", buf.raw, 24)[0]  # prog_cnt, written back by the kernel
    return list(ids[: min(count, most)])


def program_fd(prog_id: int) -> int | None:
    """An fd for the loaded program with this id; None if no such program exists (any more)."""
    try:
        return _bpf(BPF_PROG_GET_FD_BY_ID, prog_get_fd_attr(prog_id))[0]
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise


# --- the edge: HZ, the cgroup2 mount -------------------------------------------------------------

@functools.cache
def kernel_hz() -> int:
    """The kernel's HZ: CONFIG_HZ from its config when it is readable, else counted from /proc/timer_list."""
    hz = hz_of_kernel_config() or hz_counted()
    if hz is None:
        raise EnvironmentProblem(
            "syn-rto: cannot tell this kernel's HZ (no /proc/config.gz, no /boot/config-RELEASE, "
            "no usable /proc/timer_list): the RTO is given to the kernel in jiffies")
    return hz


def hz_of_kernel_config() -> int | None:
    """CONFIG_HZ from /proc/config.gz (CONFIG_IKCONFIG_PROC) or /boot/config-RELEASE, if either is there."""
    for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
        try:
            raw = gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_bytes()
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        hz = hz_from_config(raw.decode("ascii", "replace"))
        if hz:
            return hz
    return None


def hz_counted() -> int | None:
    """HZ from the jiffies /proc/timer_list shows, read twice HZ_SAMPLE_S apart."""
    try:
        first = timer_list_sample(Path("/proc/timer_list").read_text())
        time.sleep(HZ_SAMPLE_S)
        second = timer_list_sample(Path("/proc/timer_list").read_text())
    except OSError:
        return None
    return hz_from_samples(first, second) if first and second else None


_fallback_mount: str | None = None
_fallback_lock = threading.Lock()


def cgroup2_root() -> str:
    """Where cgroup2 is mounted (from /proc/self/mountinfo); if nowhere, mounted by us on a private
    temp dir for the rest of this process (unmounted at exit; after a SIGKILL the next run does it)."""
    global _fallback_mount
    mounts = cgroup2_mounts(Path("/proc/self/mountinfo").read_text())
    if mounts:
        return mounts[0]
    with _fallback_lock:
        if _fallback_mount is None:
            point = tempfile.mkdtemp(prefix=f"{FALLBACK_MOUNT_PREFIX}{os.getpid()}-")
            if _libc().mount(b"cgroup2", os.fsencode(point), b"cgroup2", 0, None) != 0:
                code = ctypes.get_errno()
                os.rmdir(point)
                raise EnvironmentProblem(f"syn-rto: cannot mount cgroup2 ({os.strerror(code)}): a scenario's SYN RTO "
                                         "needs cgroup v2 (CONFIG_CGROUPS)")
            atexit.register(_unmount, point)
            _fallback_mount = point
        return _fallback_mount


def _unmount(point: str) -> None:
    MNT_DETACH = 2
    _libc().umount2(os.fsencode(point), MNT_DETACH)
    with contextlib.suppress(OSError):
        os.rmdir(point)


# --- the edge: one cgroup per scenario run -------------------------------------------------------

_cgroup_counter = itertools.count()


def cgroup_pids(path: str) -> list[int]:
    try:
        return [int(p) for p in Path(path, "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def _remove_cgroup(path: str, deadline_s: float = CGROUP_KILL_WAIT_S) -> None:
    """Kill what is left in the cgroup, then rmdir it (retried while it empties)."""
    end = time.monotonic() + deadline_s
    while True:
        for pid in cgroup_pids(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > end:
                raise
        time.sleep(0.002)


def _detach_all(path: str) -> None:
    """Detach every sock_ops program attached to the cgroup at `path` (a dead run's)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for prog_id in attached_programs(fd):
                prog = program_fd(prog_id)
                if prog is not None:
                    detach_program(fd, prog)
                    os.close(prog)
        except OSError:
            pass  # a kernel that cannot say: rmdir releases the cgroup's programs anyway
        finally:
            os.close(fd)


def jiffies_for(seconds: float, source: str) -> int:
    """A scenario's `syn-rto:` in this kernel's jiffies; UsageError (naming `source`) below one jiffy."""
    try:
        return rto_jiffies(seconds, kernel_hz())
    except ValueError as e:
        raise UsageError(f"{source}: 'syn-rto:' {e}") from None


class SynRtoCgroup:
    """A fresh cgroup v2 directory `verifier-<pid>-<n>` whose sockets get `seconds` as their initial RTO.

    On enter: HZ known, the directory made, the program loaded and attached. `command(argv)`
    starts `argv` inside it. On exit, also after an exception or Ctrl-C: what still runs in it is
    killed, the program detached and closed, the directory removed.
    """

    def __init__(self, seconds: float, source: str = "syn-rto"):
        self.seconds = seconds
        self.source = source  # the scenario program, for messages
        self.path = ""
        self.jiffies = 0
        self.hz = 0
        self.prog_fd: int | None = None
        self.dir_fd: int | None = None

    def __repr__(self) -> str:
        return f"SynRtoCgroup({self.path or self.seconds!r}, {self.jiffies} jiffies)"

    def __enter__(self) -> SynRtoCgroup:
        self.create()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    @property
    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def create(self) -> None:
        self.hz = kernel_hz()
        self.jiffies = jiffies_for(self.seconds, self.source)
        root = cgroup2_root()
        try:
            while True:
                path = os.path.join(root, cgroup_name(os.getpid(), next(_cgroup_counter)))
                try:
                    os.mkdir(path)
                except FileExistsError:  # a leftover of an earlier process with our pid
                    continue
                except OSError as e:
                    raise EnvironmentProblem(f"syn-rto: cannot create the cgroup {path}: {e.strerror}") from None
                self.path = path
                break
            self.dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.prog_fd = load_program(self.jiffies)
            attach_program(self.dir_fd, self.prog_fd, self.path)
        except BaseException:
            self.destroy()
            raise

    def command(self, argv: list[str]) -> list[str]:
        """`argv` started inside this cgroup (see join_and_exec)."""
        if not self.path:
            raise RuntimeError("the cgroup is not created")
        return join_and_exec(self.procs_file, list(argv))

    def processes(self) -> list[int]:
        return cgroup_pids(self.path) if self.path else []

    def destroy(self) -> None:
        """Kill what runs inside, detach and close the program, remove the directory. Idempotent."""
        with _sigint_deferred():
            if self.dir_fd is not None and self.prog_fd is not None:
                detach_program(self.dir_fd, self.prog_fd)
            for attr in ("prog_fd", "dir_fd"):
                fd = getattr(self, attr)
                if fd is not None:
                    os.close(fd)
                    setattr(self, attr, None)
            if self.path:
                try:
                    _remove_cgroup(self.path)
                except OSError as e:
                    raise EnvironmentProblem(f"syn-rto: cannot remove the cgroup {self.path}: {e.strerror}") from None
                self.path = ""


def remove_leftover_cgroups() -> list[str]:
    """Remove `verifier-<pid>-<n>` cgroups (and fallback cgroup2 mounts) whose creating pid is gone; their paths."""
    removed = []
    try:
        mounts = cgroup2_mounts(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return removed
    for root in mounts:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, PermissionError):
            for entry in os.scandir(root):
                if entry.is_dir(follow_symlinks=False) and left_by_dead_process(entry.name):
                    with _sigint_deferred():
                        _detach_all(entry.path)
                        with contextlib.suppress(OSError):
                            _remove_cgroup(entry.path)
                    if not os.path.exists(entry.path):
                        removed.append(entry.path)
        if left_by_dead_process(os.path.basename(root), FALLBACK_MOUNT_PREFIX):
            _unmount(root)
            removed.append(root)
    return removed
