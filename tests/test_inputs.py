"""Tests for verifier.inputs: a stream is read once (the header check's bytes replayed), as it arrives;
Ctrl-C ends it like the end of the capture; both loops of `show` read it as they read a file."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from verifier.wire import show
from verifier.wire import capture
from verifier.wire.capture import read_frames
from verifier.wire.connections import LINGER
from verifier.wire.show import CaptureReading
from verifier.inputs import Checked, Interrupt, Stream, is_stream, open_stream

DATA = Path(__file__).parent / "data"
CAPTURES = [*sorted((DATA / "foreign").iterdir()), *sorted((DATA / "pcapng-variants").glob("*/*.pcapng"))[:6]]


def piped(data: bytes, pause_at: int | None = None, pause: float = 0.0, close: bool = True):
    """A Stream on the read end of a pipe a thread writes `data` into (pausing `pause` s at byte `pause_at`)."""
    r, w = os.pipe()

    def write():
        with os.fdopen(w, "wb", buffering=0) as out, contextlib.suppress(BrokenPipeError):  # (the test may be done)
            cut = len(data) if pause_at is None else pause_at
            out.write(data[:cut])
            if pause:
                time.sleep(pause)
            out.write(data[cut:])
            if not close:
                time.sleep(3600)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return Stream(r, "pipe", owner=os.fdopen(r, "rb", buffering=0))


def test_what_the_header_check_read_is_read_again_then_the_rest():
    data = (DATA / "foreign" / "macos-lo0-ipv6-fin.pcap").read_bytes()
    stream = piped(data)
    next(read_frames(stream), None)  # the check: the header and the first record
    stream.rewind()
    assert list(read_frames(stream)) == list(read_frames(io.BytesIO(data)))
    assert stream.delivered == len(data)
    stream.close()


def test_a_read_returns_what_has_arrived_without_waiting_for_more():
    data = bytes(range(256)) * 4
    stream = piped(data, pause_at=100, pause=30, close=False)
    stream.rewind()
    got = b""
    while len(got) < 100:
        got += stream.read(1 << 20)  # would block for 30 s if a read waited for its n bytes
    assert got == data[:100]
    stream.close()


def test_on_wait_is_called_before_waiting_not_on_every_read():
    data = b"x" * 200_000  # more than a pipe holds: the reader drains it in several reads
    waits = []
    stream = piped(data, pause_at=150_000, pause=0.3)
    stream.rewind()
    stream.on_wait = lambda: waits.append(stream.delivered)
    got = b""
    while chunk := stream.read(1 << 20):
        got += chunk
    assert got == data
    assert 150_000 in waits  # it waited at the pause, having shown what was read before it
    assert len(waits) < 20
    stream.close()


def test_ctrl_c_ends_a_stream_like_its_end():
    stream = piped(b"abc", close=False)
    stream.rewind()
    with Interrupt() as interrupt:
        stream.interrupt = interrupt
        assert stream.read(10) == b"abc"
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        assert stream.read(10) == b""  # woken from its wait by the signal
        assert stream.cut and interrupt.seen
        with pytest.raises(KeyboardInterrupt):  # a second one stops at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is not interrupt._handler  # put back


def test_a_file_ends_at_ctrl_c_too(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"abcdef")
    interrupt = Interrupt()
    with open(path, "rb") as f:
        checked = Checked(f, interrupt)
        assert checked.read(2) == b"ab"
        interrupt.seen = True
        assert (checked.read(2), checked.cut, checked.delivered) == (b"", True, 2)


def test_what_is_a_stream(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_bytes(b"")
    assert [is_stream(p) for p in ("-", str(tmp_path / "fifo"), "/dev/null", str(tmp_path / "file"), str(tmp_path),
                                   str(tmp_path / "missing"))] == [True, True, True, False, False, False]


def test_open_stream_names_what_it_cannot_open(tmp_path):
    from verifier.errors import CaptureError

    with pytest.raises(CaptureError, match="cannot read"):
        open_stream(str(tmp_path / "missing"))


LOOPS = [("objects", lambda r: [show.connection_json(c) for c in r.connections()]), ("text", lambda r: r.connection_texts())]
if show._showloop is not None:
    LOOPS.append(("compiled", lambda r: show._compiled_texts(r, LINGER, show._Hooks)))


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_both_loops_read_a_pipe_as_they_read_the_file(path):
    data = path.read_bytes()
    for name, loop in LOOPS:
        reading = CaptureReading(io.BytesIO(data))
        expected = (list(loop(reading)), reading.stats, reading.warnings())
        stream = piped(data, pause_at=len(data) // 2, pause=0.01)
        stream.rewind()
        reading = CaptureReading(stream)
        assert (list(loop(reading)), reading.stats, reading.warnings()) == expected, name
        stream.close()
    if show._showloop is not None:  # and the compiled loop says what the object path says
        a, b = CaptureReading(piped(data)), CaptureReading(piped(data))
        assert list(show._compiled_texts(a, LINGER, show._Hooks)) == [show.connection_json(c) for c in b.connections()]
        a.stream.close()
        b.stream.close()


def test_a_pause_of_the_stream_reads_as_none_then_the_stream_goes_on():
    data = (DATA / "foreign" / "linux-sll-lo-fin.pcap").read_bytes()
    stream = piped(data, pause_at=24 + 100, pause=0.5)  # the header and part of a record, then nothing for 0.5 s
    stream.rewind()
    stream.pause = 0.1
    records = list(capture.read_records(stream))
    assert None in records  # capture.PAUSE, between two records
    assert [r[0] for r in records if r is not None] == [f.index for f in read_frames(io.BytesIO(data))]
    stream.close()
