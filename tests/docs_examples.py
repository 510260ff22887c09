"""The machinery that executes the examples of README.md and docs/*.md (tests/test_docs.py).

sybil (a well-kept library for executable documentation) finds the fenced blocks and hands
each to an evaluator; this module holds the two evaluators the pages need, which sybil does
not ship (its own evaluators run Python and doctest):

- ```console blocks: `$ command` lines, each followed by its expected output. The command runs
  in bash from the repository root, the venv's `verifier` first on PATH, standard error merged
  into standard output. In the expected output a line `...` matches any number of lines (none
  included) and `...` inside a line matches any text on that line (times, pids, temp paths).
  Trailing blanks and trailing empty lines are ignored. A command's exit status is not
  compared: a page that wants to show it writes `echo "exit $?"` after the command.
- a block preceded by `<!-- file: PATH -->` must be the file PATH (from the repository root)
  exactly: a page that shows an example scenario shows the file the tests run.

A block may be preceded by `<!-- doctest: xfail REASON -->` (an example of a feature that is
being built: the test is expected to fail until it lands) or `<!-- doctest: skip REASON -->`.
The blocks of a page run in order; a block may use what an earlier one made (a /tmp folder).
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sybil import Document, Example, Sybil
from sybil.parsers.markdown import CodeBlockParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "docs/*.md"]
COMMAND_TIMEOUT = 120  # seconds for one command of a block (a catalogue run takes a few)

_DIRECTIVE = re.compile(r"<!--\s*(?P<kind>file|doctest):\s*(?P<value>.*?)\s*-->\s*\n\s*$")


def directive(example: Example) -> tuple[str, str] | None:
    """The `<!-- file: ... -->` or `<!-- doctest: ... -->` comment right above the block, if any."""
    before = example.document.text[: example.start]
    m = _DIRECTIVE.search(before[-300:])
    return (m["kind"], m["value"]) if m else None


# --- console blocks -------------------------------------------------------------------------------


@dataclass
class Command:
    line: int  # 0-based line of `$ ...` within the block
    command: str
    expected: list[str]


def split_console(source: str) -> list[Command]:
    commands: list[Command] = []
    for n, line in enumerate(source.splitlines()):
        if line.startswith("$ "):
            commands.append(Command(n, line[2:], []))
        elif commands:
            commands[-1].expected.append(line)
        elif line.strip():
            raise ValueError(f"console block: output before the first '$ ' command: {line!r}")
    return commands


def pattern_for(expected: list[str]) -> re.Pattern:
    """A regex for the expected lines: a `...` line matches any lines, `...` in a line any text."""
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.rstrip().split("...")) + r"\n")
    return re.compile("".join(parts))


def normalise(lines: list[str]) -> list[str]:
    out = [line.rstrip() for line in lines]
    while out and not out[-1]:
        out.pop()
    return out


def matches(expected: list[str], actual: str) -> bool:
    exp = normalise(expected)
    act = normalise(actual.splitlines())
    text = "".join(line + "\n" for line in act)
    return pattern_for(exp).fullmatch(text) is not None


def environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "80"  # argparse's help wraps at the terminal's width
    return env


def run_command(command: str) -> str:
    proc = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=environment(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT,
    )
    return proc.stdout


def evaluate_console(example: Example) -> str | None:
    """Run every command of the block in turn; a message naming the page, line and difference on failure."""
    start_line = example.line + 1  # the fence is example.line; the block's first line follows
    for cmd in split_console(example.parsed):
        actual = run_command(cmd.command)
        if not matches(cmd.expected, actual):
            diff = "\n".join(difflib.unified_diff(
                normalise(cmd.expected), normalise(actual.splitlines()),
                "expected (the page)", "actual", lineterm=""))
            return (f"{example.path}:{start_line + cmd.line}: `{cmd.command}` printed something else "
                    f"('...' matches anything):\n{diff}")
    return None


# --- blocks that show a file ----------------------------------------------------------------------


def evaluate_file(example: Example, path: str) -> str | None:
    target = ROOT / path
    if not target.is_file():
        return f"{example.path}:{example.line}: the page shows {path}, which does not exist"
    shown, actual = example.parsed, target.read_text()
    if shown.rstrip("\n") != actual.rstrip("\n"):
        diff = "\n".join(difflib.unified_diff(
            shown.rstrip("\n").splitlines(), actual.rstrip("\n").splitlines(), "the page", path, lineterm=""))
        return f"{example.path}:{example.line}: the block differs from {path}:\n{diff}"
    return None


class ConsoleParser(CodeBlockParser):
    language = "console"

    def evaluate(self, example: Example) -> str | None:
        return evaluate_console(example)


class FileBlockParser:
    """Any fenced block right below `<!-- file: PATH -->`: it must be that file."""

    def __init__(self):
        self.lexer = FencedCodeBlockLexer(language=r".+", mapping={"language": "language", "source": "source"})

    def __call__(self, document: Document):
        for region in self.lexer(document):
            m = _DIRECTIVE.search(document.text[: region.start][-300:])
            if m and m["kind"] == "file" and region.lexemes["language"] != "console":
                path = m["value"]
                region.parsed = region.lexemes["source"]
                region.evaluator = lambda example, path=path: evaluate_file(example, path)
                yield region


SYBIL = Sybil(parsers=[ConsoleParser(), FileBlockParser()], path="..")


def pages() -> list[Path]:
    found: list[Path] = []
    for pattern in PAGES:
        found += sorted(ROOT.glob(pattern))
    return found


def examples() -> list[tuple[str, Example]]:
    """(id, example) for every executed block of every page: id is `PAGE:LINE`."""
    out = []
    for page in pages():
        document = SYBIL.parse(page)
        for example in document.examples():
            out.append((f"{page.relative_to(ROOT)}:{example.line}", example))
    return out


def needs_root(example: Example) -> bool:
    """A block that runs `verifier run` needs namespaces and capture (root)."""
    if not isinstance(example.parsed, str) or example.region.lexemes.get("arguments") != "console":
        return False
    return any(re.search(r"\bverifier run\b", c.command) for c in split_console(example.parsed))

