"""The `verifier` command line: parse arguments, call the core and the lab, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from . import __version__
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, CaptureError, VerifierError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints usage too; keep it short)
        see = "verifier --help" if self.prog == "verifier" else f"{self.prog} --help"
        self.exit(EXIT_USAGE, f"verifier: {message} (see '{see}')\n")


def build_parser() -> argparse.ArgumentParser:
    from .wire.connections import LINGER

    parser = _Parser(prog="verifier", description="Check the FIN/ACK/RST sequences and socket events that really happen on the wire.")
    parser.add_argument("--version", action="version", version=f"verifier {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True

    show = sub.add_parser(
        "show", help="every TCP connection in pcap/pcapng files, and how it ended",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Every TCP connection in pcap/pcapng captures, and how it ended.",
        epilog=(
            "streams: '-' is standard input; '-', /dev/stdin, a pipe or a FIFO is read once, as it arrives:\n"
            "    tcpdump -i any -U -w - | verifier show -\n"
            "A connection is printed (the output flushed) once it is finished (a RST, or both FINs ACKed)\n"
            f"and a later packet is {LINGER:g} s or more past its last one in capture time, while the capture\n"
            "is still being written; connections print in the order they began. What is printed is\n"
            "dropped: memory stays flat on an endless stream. When the stream ends, every connection left\n"
            "is printed. Ctrl-C ends the reading as if the capture ended there: what was read is shown,\n"
            "the --json document is completed, exit status 130.\n"
            "exit status: 0 read (a capture cut mid-record too: a warning names the byte offset); 2 not a\n"
            "capture, or a broken one (what was read before the error is shown; the error names the byte\n"
            "offset); 130 interrupted."
        ),
    )
    show.add_argument("files", nargs="+", metavar="FILE", help="a pcap or pcapng file; '-' for standard input")
    show.add_argument("--json", action="store_true", help="JSON instead of text (the contract's shape)")
    show.add_argument("-v", "--verbose", action="store_true", help="show windows and TCP options too")

    from .commands import register_lab_verbs

    register_lab_verbs(sub)
    return parser


def open_capture(path: str):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{path}: is a directory, not a capture file") from None
    except PermissionError:
        raise CaptureError(f"{path}: permission denied") from None
    except OSError as e:
        raise CaptureError(f"{path}: cannot read: {e.strerror}") from None


def cmd_show(args, out) -> int:
    from .inputs import STDIN, Interrupt, is_stream, open_stream
    from .wire.capture import read_frames

    if args.files.count(STDIN) > 1:
        raise CaptureError("- (standard input) named more than once: it can be read only once")
    # Check every input's header first: an input that is not a capture prints nothing at all.
    # A file is opened again to be read; a stream (-, a pipe, a FIFO) is opened once, and what the
    # check read is replayed to the reader (inputs.Stream): its bytes cannot be read twice.
    streams = {}
    try:
        for path in args.files:
            if is_stream(path):
                stream = streams[path] = open_stream(path)
                _check_header(read_frames, stream, path)
                stream.rewind()
            else:
                with open_capture(path) as stream:
                    _check_header(read_frames, stream, path)
        from .wire import show

        if show._showloop is None:  # said once: the output is the same, only slower
            print("verifier: show's compiled loop is not built here: reading on the slow path (the same output, "
                  "about 5x slower; install a verifier wheel, or gcc and Python's headers, then reinstall)",
                  file=sys.stderr)
        with Interrupt() as interrupt:
            return _show(args, out, streams, interrupt)
    finally:
        for stream in streams.values():
            stream.close()


def _showloop_built() -> bool:
    """Whether show's compiled loop is there (only it prints finished connections when a stream pauses)."""
    from .wire import show

    return show._showloop is not None


def _check_header(read_frames, stream, path: str) -> None:
    try:
        next(read_frames(stream), None)
    except CaptureError as e:
        message = e.message
        if path == "-" and message == "empty file":
            message = "empty (the stream ended before its first byte)"
        raise CaptureError(f"{_label(path)}: {message}", e.offset) from None


def _label(path: str) -> str:
    """An input as error messages name it."""
    return "- (standard input)" if path == "-" else path


def _show(args, out, streams: dict, interrupt) -> int:
    """Read and print every input, its header already checked (`streams`: the inputs read as streams)."""
    import gc

    from .inputs import Checked
    from .wire.connections import LINGER
    from .wire.show import CaptureReading

    # An error further into a file (after valid records) ends the output cleanly:
    # what was read is shown, the document is complete, and the error is the exit status.
    # Ctrl-C ends the input being read as if the capture ended there (inputs.Interrupt): the same.
    failure: CaptureError | None = None
    # A capture's segments and connections hold no reference cycles: reference counting frees
    # them all, and the cyclic collector would only walk the ~10^5 live objects again and again
    # (half the run time on a million-packet file). Off while streaming, restored after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    opened = False  # the JSON document has been started
    texts = reading = None  # of the input being read, until its tail is written
    try:
        if args.json:
            out.write('{"files": [')
            opened = True
        for n, path in enumerate(args.files):
            stream = streams.get(path)
            file = None
            if stream is None:
                file = open_capture(path)
                stream = Checked(file, interrupt)
            else:
                stream.interrupt = interrupt
                stream.on_wait = out.flush  # printed connections reach the reader while the capture is written
                if _showloop_built():
                    stream.pause = LINGER  # traffic stopped that long (wall clock): finished connections are printed
            try:
                if args.json:
                    out.write(("," if n else "") + "\n {" + f'"file": {json.dumps(path)}, "connections": [')
                else:
                    out.write(f"== {path}\n")
                reading = CaptureReading(stream)  # from here on, a tail closes this input's part
                count = 0
                try:
                    if args.json:  # connection_json(conn) of each of reading.connections(), faster
                        texts = reading.connections_json()
                        for text in texts:
                            out.write(("," if count else "") + "\n  " + text)
                            count += 1
                    else:  # connection_text(conn) of each of reading.connections(), faster
                        texts = reading.connection_texts(verbose=args.verbose)
                        for text in texts:
                            out.write(text + "\n\n")
                            count += 1
                except CaptureError as e:
                    failure = CaptureError(f"{_label(path)}: {e.message}", e.offset)
                    reading.info.warnings.append(f"stopped reading: {failure}")
                if stream.cut:
                    _interrupted(reading, stream)
                texts = None
                _write_tail(args, out, path, reading, count)
                reading = None
            finally:
                if file is not None:
                    file.close()
            if failure is not None or interrupt.seen:
                break
        if args.json:
            out.write("\n]}\n")
            opened = False
    except KeyboardInterrupt:  # a second Ctrl-C, or SIGTERM: stop now, but leave valid JSON behind
        if opened:
            try:
                if reading is not None:
                    if texts is not None and hasattr(texts, "close"):
                        texts.close()  # publishes the counts
                    reading.info.warnings.append("interrupted while reading: the connections after the last one shown were not read")
                    _write_tail(args, out, None, reading, None)
                out.write("\n]}\n")
                out.flush()
            except Exception:  # the output may be gone too: the exit status still says interrupted
                pass
        raise
    finally:
        if gc_was_enabled:
            gc.enable()
    if failure is not None:
        raise failure
    if interrupt.seen:
        out.flush()
        raise KeyboardInterrupt
    return EXIT_OK


def _interrupted(reading, stream) -> None:
    """Ctrl-C ended this input: a record cut short by it is no truncated capture; say where reading stopped."""
    warnings = reading.info.warnings
    warnings[:] = [w for w in warnings if not w.startswith("truncated: ")]
    warnings.append(f"interrupted (Ctrl-C) after byte offset {stream.delivered}: shown as read up to there")


def _write_tail(args, out, path, reading, count) -> None:
    """What follows an input's connections: its counts and warnings."""
    s = reading.stats
    if args.json:
        out.write(
            f'], "packets": {s.packets}, "tcp_packets": {s.tcp}, "other_packets": {s.other}, '
            f'"duplicates_removed": {s.duplicates}, "warnings": {json.dumps(reading.warnings())}, '
            f'"format": {json.dumps(reading.info.format)}, "sections": {json.dumps(reading.info.sections)}' + "}"
        )
    elif count is not None:
        plural = "" if count == 1 else "s"
        out.write(f"{s.packets} packets ({s.tcp} TCP, {s.other} other), {count} connection{plural}\n")
        for w in reading.warnings():
            out.write(f"warning: {path}: {w}\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (everything cleaned up), exit 143."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        # Ctrl-C must clean up even when started from a shell that ignores SIGINT in the background
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        if args.verb == "show":
            code = cmd_show(args, out)
        else:
            code = args.handler(args, out)
        out.flush()
        return code
    except VerifierError as e:
        sys.stdout.flush()
        print(f"verifier: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        if isinstance(e, Terminated):
            print("verifier: terminated (SIGTERM); everything it started was stopped and removed", file=sys.stderr)
            return EXIT_TERMINATED
        print("verifier: interrupted; everything it started was stopped and removed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `verifier show big.pcap | head`: the reader went away; not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
