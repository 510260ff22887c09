"""Network namespaces for scenarios: create one (lo up, hosts file, sysctls, nftables), enter it, remove it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import itertools
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from verifier.errors import EnvironmentProblem, UsageError

PREFIX = "verifier-"
DEFAULT_HOSTS = "::1 localhost\n127.0.0.1 localhost\n"

NETNS_RUN_DIR = Path("/run/netns")  # where `ip netns add` bind-mounts named namespaces
NETNS_ETC_DIR = Path("/etc/netns")  # per-namespace files `ip netns exec` bind-mounts over /etc

CLONE_NEWNET = 0x40000000
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21  # creating (unshare) and entering (setns) a namespace, mounting it under /run/netns
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

PRIVILEGE_MESSAGE = "running scenarios needs root to create network namespaces and capture in them{lacking}"
NEEDED_CAPABILITIES = {"CAP_NET_ADMIN": CAP_NET_ADMIN, "CAP_NET_RAW": CAP_NET_RAW, "CAP_SYS_ADMIN": CAP_SYS_ADMIN}
# Where `sudo` looks for a bare command name: Debian's and Ubuntu's default secure_path
SUDO_SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin"
TOOL_PACKAGES = {"ip": "iproute2", "nft": "nftables", "setpriv": "util-linux"}
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin")

_namespace_counter = itertools.count()
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


def tool_path(name: str, package: str) -> str:
    """Absolute path of a required tool; EnvironmentProblem naming its Debian package if absent."""
    return _tool_path(name, package)


@functools.cache
def _tool_path(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))
    if found is None:
        raise EnvironmentProblem(
            f"`{name}` not found: install the Debian package {package} (apt-get install {package})"
        )
    return found


def _ip() -> str:
    return tool_path("ip", TOOL_PACKAGES["ip"])


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, nstype: int) -> None:
    if _libc().setns(fd, nstype) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def _umount_detached(path: str) -> None:
    MNT_DETACH = 2
    if _libc().umount2(os.fsencode(path), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (already unmounted)
            raise OSError(code, f"umount2 {path}: {os.strerror(code)}")


def effective_capabilities() -> int:
    """This process's effective capability mask (CapEff in /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _as_sudo_finds_it(path: str, cwd: str, which=shutil.which) -> str:
    """`path` as short as `sudo` still runs it: the bare name if sudo's PATH finds this very file, else relative or absolute."""
    full = os.path.normpath(os.path.join(cwd, path))
    name = os.path.basename(full)
    found = which(name, path=SUDO_SECURE_PATH)
    if found is not None and os.path.normpath(found) == full:  # not realpath: a venv's python is a symlink
        return name
    if cwd != "/" and full.startswith(cwd.rstrip("/") + "/"):
        relative = os.path.relpath(full, cwd)
        return relative if "/" in relative else f"./{relative}"  # with a slash sudo takes a path, not a name
    return full


def sudo_command(argv: Sequence[str], executable: str, main_module: str | None, cwd: str, which=shutil.which) -> str:
    """The command the user typed, prefixed with sudo, shell-quoted: `sudo verifier run destroy`.

    `main_module`: the package run with `python -m` (sys.argv[0] is then its __main__.py), else None.
    """
    if main_module:
        words = [_as_sudo_finds_it(executable, cwd, which), "-m", main_module]
    elif argv and argv[0] not in ("", "-c", "-"):
        words = [_as_sudo_finds_it(argv[0], cwd, which)]
    else:  # python -c / stdin: nothing to repeat
        words = [_as_sudo_finds_it(executable, cwd, which), "-m", "verifier", "run"]
    return shlex.join(["sudo", *words, *argv[1:]])


def typed_command() -> str:
    """The command this process was started with, under sudo (for messages that say to run it as root)."""
    return _typed_command()


def _typed_command() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    main_module = spec.name.removesuffix(".__main__") if spec is not None and spec.name else None
    try:
        cwd = os.getcwd()
    except OSError:  # the working folder was removed
        cwd = "/"
    return sudo_command(sys.argv, sys.executable, main_module, cwd)


def privilege_message(missing: Sequence[str] = ()) -> str:
    """One line: what is missing (each capability once) and the user's own command under sudo."""
    lacking = f" (or the capabilities this process lacks: {', '.join(missing)})" if missing else ""
    return f"{PRIVILEGE_MESSAGE.format(lacking=lacking)}: run `{_typed_command()}`"


def check_privileges() -> None:
    """Raise EnvironmentProblem unless namespaces can be created and captured in, with the tools present."""
    caps = effective_capabilities()
    missing = [name for name, bit in NEEDED_CAPABILITIES.items() if not caps >> bit & 1]
    if missing:
        raise EnvironmentProblem(privilege_message(missing))
    for name, package in TOOL_PACKAGES.items():
        tool_path(name, package)


def unprivileged_user() -> tuple[int, int]:
    """(uid, gid) scenario programs run as: the sudo caller, else `nobody`; never root."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid and uid.isdigit() and gid.isdigit() and int(uid) != 0:
        return int(uid), int(gid)
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        raise EnvironmentProblem(
            "no unprivileged user to run scenario programs as: run through sudo, or create the "
            "user `nobody` (Debian package base-passwd)"
        ) from None
    return nobody.pw_uid, nobody.pw_gid


def pids_in_namespace(netns_file: str | os.PathLike[str]) -> list[int]:
    """Processes (other than this one) whose network namespace is the one bound at `netns_file`."""
    target = os.stat(netns_file)
    own = os.getpid()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:  # gone, a zombie, or a kernel thread we cannot inspect
            continue
        if st.st_ino == target.st_ino and st.st_dev == target.st_dev:
            pids.append(int(entry.name))
    return pids


def _kill_all_in(netns_file: Path, deadline_s: float = 2.0) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            pids = pids_in_namespace(netns_file)
        except FileNotFoundError:
            return
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > end:
            return  # unkillable (D state): deleting the name still works, the namespace dies with them
        time.sleep(0.001)


def _delete_namespace_files(name: str) -> None:
    """Unmount and remove /run/netns/NAME (what `ip netns del` does) and /etc/netns/NAME."""
    run_path = NETNS_RUN_DIR / name
    if run_path.exists():
        _umount_detached(str(run_path))
        with contextlib.suppress(FileNotFoundError):
            run_path.unlink()
    shutil.rmtree(NETNS_ETC_DIR / name, ignore_errors=True)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block is done (main thread only: signals are handled there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


class Namespace:
    """A fresh network namespace named `verifier-<pid>-<tag>-<n>`, alive inside a `with` block.

    On enter: `lo` up, /etc/netns/NAME/hosts written, `sysctls` (net.* keys) set inside it, the
    nftables ruleset loaded inside it. On exit, also after an exception or Ctrl-C: every process
    still in it is killed, the namespace and /etc/netns/NAME are removed.
    """

    def __init__(
        self,
        tag: str,
        *,
        hosts: str | None = DEFAULT_HOSTS,
        sysctls: Mapping[str, str] | None = None,
        nft_ruleset: str | None = None,
    ):
        self.tag = _TAG_UNSAFE.sub("_", tag)[:64] or "ns"
        self.hosts = hosts
        self.sysctls = dict(sysctls or {})
        for key in self.sysctls:
            if not key.startswith("net."):
                raise UsageError(f"sysctl {key} is not per network namespace: only net.* can be set")
        self.nft_ruleset = nft_ruleset
        self.name = ""
        self.created = False

    @property
    def path(self) -> Path:
        """The namespace file `ip netns` bind-mounts: /run/netns/NAME."""
        return NETNS_RUN_DIR / self.name

    def __repr__(self) -> str:
        return f"Namespace({self.name or self.tag!r}, created={self.created})"

    def __enter__(self) -> Namespace:
        self.create()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def create(self) -> None:
        """Create and configure the namespace; on any failure leave nothing behind."""
        if self.created:
            raise RuntimeError(f"{self.name} already created")
        try:
            self._add()
            self._configure()
        except BaseException:
            self.destroy()
            raise

    def _add(self) -> None:
        while True:
            self.name = f"{PREFIX}{os.getpid()}-{self.tag}-{next(_namespace_counter)}"
            if not (NETNS_RUN_DIR / self.name).exists():  # else a leftover of an earlier process with our pid
                break
        done = subprocess.run([_ip(), "netns", "add", self.name], capture_output=True, text=True)
        if done.returncode != 0:
            reason = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            if os.geteuid() != 0:
                raise EnvironmentProblem(privilege_message())
            raise EnvironmentProblem(f"cannot create network namespace {self.name}: {reason[0]}")
        self.created = True

    def _configure(self) -> None:
        if self.hosts is not None:
            etc = NETNS_ETC_DIR / self.name
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(self.hosts)
        with self.entered():
            _bring_up("lo")
            for key, value in self.sysctls.items():
                proc_path = Path("/proc/sys") / (key if "/" in key else key.replace(".", "/"))
                try:
                    proc_path.write_text(f"{value}\n")
                except FileNotFoundError:
                    raise UsageError(f"sysctl {key} does not exist in a network namespace") from None
                except OSError as error:
                    raise UsageError(f"sysctl {key}={value} rejected: {error.strerror}") from None
            if self.nft_ruleset is not None:
                # A child forked from this thread starts in the namespace this thread is in.
                nft = tool_path("nft", TOOL_PACKAGES["nft"])
                done = subprocess.run([nft, "-f", "-"], input=self.nft_ruleset, capture_output=True, text=True)
                if done.returncode != 0:
                    first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
                    raise UsageError(f"nftables ruleset rejected: {first}")

    def destroy(self) -> None:
        """Kill what still runs inside, remove the namespace and its /etc/netns directory. Idempotent."""
        if not self.name:
            return
        with _sigint_deferred():
            if self.created:
                _kill_all_in(self.path)
            _delete_namespace_files(self.name)
            self.created = False

    def processes(self) -> list[int]:
        """Pids of the processes whose network namespace this is."""
        return pids_in_namespace(self.path)

    def command(self, argv: Sequence[str], *, user: tuple[int, int] | None = None) -> list[str]:
        """The argv that runs `argv` inside this namespace, as `user` (uid, gid) when given.

        Goes through `ip netns exec` (so /etc/netns/NAME/hosts is bind-mounted over /etc/hosts)
        and `setpriv` (real and effective ids, no supplementary groups, no inheritable capabilities).
        `user=None` keeps root: only for tools, never for scenario programs.
        """
        prefix = [_ip(), "netns", "exec", self.name]
        if user is not None:
            uid, gid = user
            setpriv = tool_path("setpriv", TOOL_PACKAGES["setpriv"])
            prefix += [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all", "--"]
        return prefix + list(argv)

    @contextlib.contextmanager
    def entered(self) -> Iterator[Namespace]:
        """Move the calling thread (only it: setns is per thread) into this namespace, and back after.

        Sockets created inside the block live in the namespace for their whole life; child
        processes and threads started from this thread inside the block start in it too.
        """
        if not self.created:
            raise RuntimeError(f"namespace {self.name or self.tag} is not created")
        target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target, CLONE_NEWNET)
                try:
                    if os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(target).st_ino:
                        raise RuntimeError(f"setns into {self.name} did not take effect")
                    yield self
                finally:
                    _setns(original, CLONE_NEWNET)
            finally:
                os.close(original)
        finally:
            os.close(target)


def _bring_up(interface: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", interface.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", interface.encode(), flags | IFF_UP))


def _creator_pid(name: str, prefix: str = PREFIX) -> int | None:
    if not name.startswith(prefix):
        return None
    head = name[len(prefix):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def left_by_dead_process(name: str, prefix: str = PREFIX) -> bool:
    """Whether `name` is `<prefix><pid>-...` and that pid (not this process) is gone."""
    pid = _creator_pid(name, prefix)
    return pid is not None and pid != os.getpid() and not _alive(pid)


def remove_leftovers() -> list[str]:
    """Remove what runs whose process is gone left behind: namespaces (and /etc/netns dirs) with
    our prefix and the dead pid in their name, then the scenario cgroups (synrto); their names."""
    names: set[str] = set()
    for directory in (NETNS_RUN_DIR, NETNS_ETC_DIR):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            names.update(entry.name for entry in os.scandir(directory) if entry.name.startswith(PREFIX))
    removed = []
    for name in sorted(names):
        if not left_by_dead_process(name):
            continue
        with _sigint_deferred():
            if (NETNS_RUN_DIR / name).exists():
                _kill_all_in(NETNS_RUN_DIR / name)
            _delete_namespace_files(name)
        removed.append(name)
    from .synrto import remove_leftover_cgroups  # it imports this module

    return removed + remove_leftover_cgroups()
