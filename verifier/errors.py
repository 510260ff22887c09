"""Errors a user can cause, each carrying the exit code of the CLI contract."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # an expectation failed / a difference found
EXIT_USAGE = 2  # bad usage or unreadable input
EXIT_ENVIRONMENT = 3  # missing privilege or tool
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM


class VerifierError(Exception):
    """An error the user can cause: printed as one line, never as a traceback."""

    exit_code = EXIT_USAGE


class CaptureError(VerifierError):
    """A capture file cannot be read (not a capture, impossible lengths, unknown version...).

    `offset` is the byte offset in the file where the problem was found, when it applies.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, offset: int | None = None):
        self.message = message
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (at byte offset {offset})")


class UsageError(VerifierError):
    exit_code = EXIT_USAGE


class EnvironmentProblem(VerifierError):
    """Missing privilege or tool; the message says which and how to get it."""

    exit_code = EXIT_ENVIRONMENT
