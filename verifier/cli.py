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
    parser = _Parser(prog="verifier", description="Check the FIN/ACK/RST sequences and socket events that really happen on the wire.")
    parser.add_argument("--version", action="version", version=f"verifier {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True

    show = sub.add_parser("show", help="every TCP connection in pcap/pcapng files, and how it ended")
    show.add_argument("files", nargs="+", metavar="FILE")
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
    import gc

    from .wire.capture import read_frames
    from .wire.show import CaptureReading

    # Check every file's header first: a file that is not a capture prints nothing at all.
    for path in args.files:
        with open_capture(path) as stream:
            try:
                next(read_frames(stream), None)
            except CaptureError as e:
                raise CaptureError(f"{path}: {e.message}", e.offset) from None
    # Then stream. An error further into a file (after valid records) ends the output cleanly:
    # what was read is shown, the document is complete, and the error is the exit status.
    failure: CaptureError | None = None
    # A capture's segments and connections hold no reference cycles: reference counting frees
    # them all, and the cyclic collector would only walk the ~10^5 live objects again and again
    # (half the run time on a million-packet file). Off while streaming, restored after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if args.json:
            out.write('{"files": [')
        for n, path in enumerate(args.files):
            with open_capture(path) as stream:
                reading = CaptureReading(stream)
                if args.json:
                    out.write(("," if n else "") + "\n {" + f'"file": {json.dumps(path)}, "connections": [')
                else:
                    out.write(f"== {path}\n")
                count = 0
                try:
                    if args.json:  # connection_json(conn) of each of reading.connections(), faster
                        for text in reading.connections_json():
                            out.write(("," if count else "") + "\n  " + text)
                            count += 1
                    else:  # connection_text(conn) of each of reading.connections(), faster
                        for text in reading.connection_texts(verbose=args.verbose):
                            out.write(text + "\n\n")
                            count += 1
                except CaptureError as e:
                    failure = CaptureError(f"{path}: {e.message}", e.offset)
                    reading.info.warnings.append(f"stopped reading: {failure}")
                s = reading.stats
                if args.json:
                    out.write(
                        f'], "packets": {s.packets}, "tcp_packets": {s.tcp}, "other_packets": {s.other}, '
                        f'"duplicates_removed": {s.duplicates}, "warnings": {json.dumps(reading.warnings())}, '
                        f'"format": {json.dumps(reading.info.format)}, "sections": {json.dumps(reading.info.sections)}' + "}"
                    )
                else:
                    plural = "" if count == 1 else "s"
                    out.write(f"{s.packets} packets ({s.tcp} TCP, {s.other} other), {count} connection{plural}\n")
                    for w in reading.warnings():
                        out.write(f"warning: {path}: {w}\n")
            if failure is not None:
                break
        if args.json:
            out.write("\n]}\n")
    finally:
        if gc_was_enabled:
            gc.enable()
    if failure is not None:
        raise failure
    return EXIT_OK


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
