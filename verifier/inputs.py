"""Open what `verifier show` reads: capture files, and pipes, FIFOs or standard input read once, as they arrive.

A regular file can be opened twice (once to check its header, once to read it). A stream cannot:
its bytes are gone once read, and a FIFO's writer sees its reader go away. So a stream is opened
once and wrapped in `Stream`, which
- records what the header check reads and replays it to the reader that follows (`rewind()`),
  so the capture reader sees the stream from its first byte, in one pass;
- returns from `read(n)` with what has arrived (one `os.read`), never waiting for `n` bytes: a
  record is handed on as soon as it is complete, not when a megabyte has piled up;
- calls `on_wait` (the output's flush) before it blocks for more input: what was printed reaches
  the reader of the output while the capture is still being written, with one flush per pause of
  the input, not one per connection;
- ends like the end of the stream once `Interrupt` has seen Ctrl-C: the capture reader finishes
  normally, so everything read is shown and the JSON document is completed;
- with `pause` set (seconds), returns None when nothing has arrived for that long (and again after
  each such wait): the capture reader yields `capture.PAUSE` there, for a reader that hands on
  finished connections when traffic stops (see cli.cmd_show).

`Checked` does the last of these for regular files. `Interrupt` is the SIGINT handler `show`
installs while it reads (main thread only): the first Ctrl-C ends the input, a second one raises
KeyboardInterrupt at once.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import threading
from collections.abc import Callable

from .errors import CaptureError

STDIN = "-"


class Interrupt:
    """Ctrl-C while reading: `seen` once SIGINT came; `wake` is a descriptor that becomes readable then."""

    def __init__(self) -> None:
        self.seen = False
        self.wake: int | None = None
        self._write: int | None = None
        self._old_handler = None
        self._old_wakeup = -1

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only: nothing to install
        self.wake, self._write = os.pipe()
        os.set_blocking(self.wake, False)
        os.set_blocking(self._write, False)
        self._old_handler = signal.signal(signal.SIGINT, self._handler)
        self._old_wakeup = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        return self

    def _handler(self, signum, frame) -> None:
        if self.seen:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (the output is closed by the caller)
        self.seen = True

    def drain(self) -> None:
        try:
            while os.read(self.wake, 256):
                pass
        except BlockingIOError:
            pass

    def __exit__(self, *exc) -> None:
        if self.wake is None:
            return
        signal.set_wakeup_fd(self._old_wakeup)
        signal.signal(signal.SIGINT, self._old_handler)
        os.close(self.wake)
        os.close(self._write)
        self.wake = self._write = None


class Stream:
    """A pipe, FIFO, character device or socket read once, as its bytes arrive (see the module's docstring)."""

    def __init__(self, fd: int, name: str, owner=None) -> None:
        self.fd = fd
        _grow_pipe(fd)
        self.name = name
        self._owner = owner  # the file object that closes fd (None for standard input: not ours to close)
        self._recorded: list[bytes] | None = []
        self._replay = b""
        self.delivered = 0  # bytes handed to the reader since rewind()
        self.cut = False  # ended by Ctrl-C, not by the writer
        self.interrupt: Interrupt | None = None
        self.on_wait: Callable[[], None] | None = None
        self.pause: float | None = None  # seconds without input after which read() returns None

    def rewind(self) -> None:
        """Read again from the first byte: what was read so far is replayed, then the stream goes on."""
        self._replay = b"".join(self._recorded or ())
        self._recorded = None
        self.delivered = 0

    def read(self, n: int = -1) -> bytes | None:
        if self._replay:
            if n < 0 or n >= len(self._replay):
                data, self._replay = self._replay, b""
            else:
                data, self._replay = self._replay[:n], self._replay[n:]
            self.delivered += len(data)
            return data
        data = self._arrived(n if n > 0 else 1 << 20)
        if data is None:
            return None
        if self._recorded is not None:
            self._recorded.append(data)
        self.delivered += len(data)
        return data

    def _arrived(self, n: int) -> bytes | None:
        interrupt = self.interrupt
        wake = interrupt.wake if interrupt is not None else None
        while True:
            if interrupt is not None and interrupt.seen:
                self.cut = True
                return b""
            if wake is not None or self.on_wait is not None or self.pause is not None:
                poll = select.poll()
                poll.register(self.fd, select.POLLIN)
                if not poll.poll(0):  # nothing there yet: show what was printed, then wait
                    if self.on_wait is not None:
                        self.on_wait()
                    if wake is not None:
                        poll.register(wake, select.POLLIN)
                    events = poll.poll(None if self.pause is None else max(1, round(self.pause * 1000)))
                    if not events:
                        return None  # paused
                    if wake is not None and any(fd == wake for fd, _ in events):
                        interrupt.drain()
                        continue
            try:
                return os.read(self.fd, n)
            except BlockingIOError:  # a descriptor someone left non-blocking: wait with poll
                if wake is None and self.on_wait is None:
                    select.select([self.fd], [], [])
                continue

    def close(self) -> None:
        if self._owner is not None:
            self._owner.close()


class Checked:
    """A regular file whose reading ends, like the end of the file, once Ctrl-C came."""

    def __init__(self, file, interrupt: Interrupt) -> None:
        self.file = file
        self.interrupt = interrupt
        self.delivered = 0
        self.cut = False

    def read(self, n: int = -1) -> bytes:
        if self.interrupt.seen:
            self.cut = True
            return b""
        data = self.file.read(n)
        self.delivered += len(data)
        return data


def is_stream(path: str) -> bool:
    """Whether `path` is read as a stream: `-`, or anything that is not a regular file or a directory."""
    if path == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # open_capture names the problem
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def open_stream(path: str) -> Stream:
    """`-` (standard input) or a pipe/FIFO path, opened once; errors a user can cause as CaptureError."""
    if path == STDIN:
        try:
            fd = os.dup(0)  # ours to close; fd 0 itself stays as it is
        except OSError:
            raise CaptureError("- (standard input): closed") from None
        if os.isatty(fd):
            os.close(fd)
            raise CaptureError("- (standard input): a terminal, not a capture: pipe one in "
                               "(tcpdump -U -w - | verifier show -)")
        return Stream(fd, path, owner=_Fd(fd))
    try:
        f = open(path, "rb", buffering=0)  # a FIFO: waits here for its writer
    except PermissionError:
        raise CaptureError(f"{path}: permission denied") from None
    except OSError as e:
        raise CaptureError(f"{path}: cannot read: {e.strerror}") from None
    return Stream(f.fileno(), path, owner=f)


def _grow_pipe(fd: int) -> None:
    """A pipe's buffer as big as Linux lets anyone make it (1 MiB): a burst of packets is read in fewer
    reads, and a writer waits less often on a reader that is busy printing. Anything else: as it is."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError):
        pass


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
