"""Run one scenario program under a timeout, keep the tail of its output, and kill its whole process tree when needed."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import psutil

KILL_GRACE_S = 0.2  # SIGTERM first; SIGKILL whatever is still alive after this
STRAGGLER_GRACE_S = 0.2  # after the program exits: how long leftover children may hold its output open
READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class ProgramResult:
    returncode: int  # negative: killed by that signal (e.g. -15 after a timeout)
    stdout: str  # the last `output_cap` bytes, decoded (invalid UTF-8 replaced)
    stderr: str
    timed_out: bool
    duration: float  # seconds from spawn until the program exited (or was killed)
    started: float  # epoch seconds at spawn
    stdout_dropped: int = 0  # bytes cut from the head of stdout to respect the cap
    stderr_dropped: int = 0
    halted: str | None = None  # why `halt` stopped the program (then timed_out is True too)


class _Tail:
    """The last `cap` bytes written to a stream, and how many were dropped before them."""

    def __init__(self, cap: int):
        self.cap = cap
        self.buffer = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.buffer += chunk
        excess = len(self.buffer) - self.cap
        if excess > 0:
            del self.buffer[:excess]
            self.dropped += excess

    def text(self) -> str:
        return self.buffer.decode("utf-8", errors="replace")


def kill_tree(proc: subprocess.Popen, grace: float = KILL_GRACE_S) -> None:
    """Terminate `proc` and all its descendants: children first, then the parent; SIGKILL after `grace`.

    The tree is frozen (SIGSTOP, top down) before anything is signalled, so no process can fork
    a new child or react to a child's death while the tree is taken down. The parent is waited
    for through `proc` (its exit status stays with the Popen object); descendants are polled,
    a zombie counts as gone.
    """
    if proc.poll() is not None:
        return
    descendants = _freeze(proc.pid)
    for victim in reversed(descendants):  # deepest first
        _signal(victim, signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    for victim in descendants:
        _signal(victim, signal.SIGCONT)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)
    alive = _wait_gone(proc, descendants, grace)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGSTOP)  # so it cannot see its children die and exit on its own terms
    for victim in reversed(alive):
        _signal(victim, signal.SIGKILL)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    _wait_gone(proc, alive, grace)


def _signal(process: psutil.Process, signum: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        process.send_signal(signum)


def _freeze(pid: int) -> list[psutil.Process]:
    """SIGSTOP `pid` and its descendants, parents before children; the descendants, top down."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    _signal(root, signal.SIGSTOP)
    frozen: dict[int, psutil.Process] = {}
    for _ in range(3):  # a child forked just before its parent stopped shows up on the next pass
        try:
            found = root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        fresh = [child for child in found if child.pid not in frozen]
        if not fresh:
            break
        for child in fresh:
            _signal(child, signal.SIGSTOP)
            frozen[child.pid] = child
    return list(frozen.values())


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(proc: subprocess.Popen, descendants: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` for `proc` and `descendants` to exit; the descendants still running."""
    end = time.monotonic() + timeout
    delay = 0.0005
    while True:
        alive = [victim for victim in descendants if _running(victim)]
        parent_alive = proc.poll() is None
        if (not alive and not parent_alive) or time.monotonic() >= end:
            return alive
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of the program's process group (descendants re-parented away from it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _exit_notifier(pid: int) -> int | None:
    """A pidfd (Linux 5.3+) that becomes readable when `pid` exits; None where unsupported."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class Cancelled(KeyboardInterrupt):
    """Raised in a worker thread when the run was interrupted: the program tree is killed first."""


CANCEL_POLL_S = 0.02  # how often a worker looks at the cancel flag while its program runs


def run_program(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
    timeout: float,
    output_cap: int = 1 << 20,
    cancel: threading.Event | None = None,
    halt: Callable[[], str | None] | None = None,
) -> ProgramResult:
    """Run `argv` to completion or until `timeout` seconds, whichever comes first.

    The program gets its own session (its own process group), no stdin, and exactly `env`.
    On timeout, and on any exception here (Ctrl-C included), its whole process tree is killed
    before returning or re-raising; when it exits by itself, what it left in its process group
    is killed. Output beyond `output_cap` bytes per stream keeps the tail.
    """
    started = time.time()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    tails = {proc.stdout.fileno(): _Tail(output_cap), proc.stderr.fileno(): _Tail(output_cap)}
    out_tail, err_tail = tails.values()
    timed_out = False
    halted: str | None = None
    duration: float | None = None
    try:
        with selectors.DefaultSelector() as selector:
            for pipe in (proc.stdout, proc.stderr):
                os.set_blocking(pipe.fileno(), False)
                selector.register(pipe.fileno(), selectors.EVENT_READ)
            exit_fd = _exit_notifier(proc.pid)  # readable when the program exits: an exact duration
            if exit_fd is not None:
                selector.register(exit_fd, selectors.EVENT_READ)
            deadline = t0 + timeout
            straggler_kills = 0
            try:
                while True:
                    if duration is None and exit_fd is None and proc.poll() is not None:
                        duration = time.monotonic() - t0
                    pipes_open = any(fd in tails for fd in selector.get_map())
                    if duration is not None and not pipes_open:
                        break
                    now = time.monotonic()
                    if duration is None and now >= deadline:
                        timed_out = True
                        kill_tree(proc)
                        duration = time.monotonic() - t0
                    if duration is not None:
                        # The program is gone but something it started still holds its pipes.
                        limit = t0 + duration + STRAGGLER_GRACE_S * (straggler_kills + 1)
                        if now >= limit:
                            if straggler_kills >= 2:
                                break  # escaped its process group too: stop reading rather than hang
                            _kill_group(proc.pid)
                            straggler_kills += 1
                            continue
                    else:
                        limit = deadline
                    wait = max(0.0, limit - now)
                    if exit_fd is None:
                        wait = min(wait, 0.01)
                    if cancel is not None:
                        if cancel.is_set():  # Ctrl-C / SIGTERM seen by the main thread
                            raise Cancelled("the run was interrupted")
                        wait = min(wait, CANCEL_POLL_S)
                    if halt is not None and duration is None:
                        reason = halt()
                        if reason:  # e.g. the program floods the wire: stop it like a timeout
                            halted = reason
                            timed_out = True
                            kill_tree(proc)
                            duration = time.monotonic() - t0
                            continue
                        wait = min(wait, CANCEL_POLL_S)
                    for key, _ in selector.select(timeout=wait):
                        if key.fd == exit_fd:
                            if duration is None:
                                duration = time.monotonic() - t0
                            selector.unregister(exit_fd)
                            continue
                        try:
                            chunk = os.read(key.fd, READ_CHUNK)
                        except BlockingIOError:
                            continue
                        if chunk:
                            tails[key.fd].add(chunk)
                        else:
                            selector.unregister(key.fd)
            finally:
                if exit_fd is not None:
                    os.close(exit_fd)
        _kill_group(proc.pid)  # nothing the program started outlives it (the group id is still held)
        returncode = proc.wait()
    except BaseException:
        kill_tree(proc)
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            proc.wait(timeout=1)
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return ProgramResult(
        returncode=returncode,
        stdout=out_tail.text(),
        stderr=err_tail.text(),
        timed_out=timed_out,
        duration=duration,
        started=started,
        stdout_dropped=out_tail.dropped,
        stderr_dropped=err_tail.dropped,
        halted=halted,
    )
