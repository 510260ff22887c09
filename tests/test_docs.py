"""Every example whose output README.md or a page of docs/ shows is run here and compared.

The pages' ```console blocks run their `$ commands` from the repository root and compare the
output ('...' matches anything; see tests/docs_examples.py); a block under `<!-- file: PATH -->`
must be that file. Blocks that run `verifier run` need root (privileged, like the lab's tests).
A block under `<!-- doctest: xfail REASON -->` shows a feature being built: expected to fail
until it lands (not strict, so the day it holds it simply passes).
"""

import pytest

from docs_examples import directive, examples, matches, needs_root, split_console


def _params():
    out = []
    for ident, example in examples():
        marks = []
        if needs_root(example):
            marks.append(pytest.mark.privileged)
        d = directive(example)
        if d and d[0] == "doctest":
            kind, _, reason = d[1].partition(" ")
            if kind == "xfail":
                marks.append(pytest.mark.xfail(strict=False, reason=reason or "a feature being built"))
            elif kind == "skip":
                marks.append(pytest.mark.skip(reason=reason or "skipped by the page"))
            else:
                raise ValueError(f"{ident}: unknown doctest directive {d[1]!r} (xfail or skip)")
        out.append(pytest.param(example, id=ident, marks=marks))
    return out


@pytest.mark.parametrize("example", _params())
def test_page_example(example):
    __tracebackhide__ = True
    example.evaluate()


def test_the_pages_have_examples():
    # a page whose blocks stopped being found (a changed fence, a moved file) must not pass quietly
    found = {ident.split(":")[0] for ident, _ in examples()}
    assert {"README.md", "docs/scenarios.md", "docs/expectations.md", "docs/fixtures.md"} <= found


# The matcher itself: '...' lines and '...' inside lines, and that it can say no.

def test_dots_line_matches_any_lines():
    assert matches(["a", "...", "d"], "a\nb\nc\nd\n")
    assert matches(["a", "...", "d"], "a\nd\n")
    assert not matches(["a", "...", "d"], "a\nb\nc\n")


def test_dots_in_a_line_match_any_text():
    assert matches(["took ... s"], "took 0.123 s\n")
    assert not matches(["took ... s"], "took 0.123 ms\nmore\n")


def test_exact_text_must_match():
    assert not matches(["2 differences"], "3 differences\n")
    assert matches(["x   ", "", ""], "x\n")


def test_console_blocks_split_into_commands():
    cmds = split_console("$ a\nout\n$ b\n")
    assert [(c.command, c.expected) for c in cmds] == [("a", ["out"]), ("b", [])]


# Links between the pages: a moved file or a renamed heading must not leave a dead link.

import re  # noqa: E402

from docs_examples import ROOT, pages  # noqa: E402

_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _slug(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation but '-' and '_' dropped, spaces to '-'
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def test_links_between_pages_resolve():
    dead = []
    for page in pages():
        prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", page.read_text(), flags=re.S))
        for m in _LINK.finditer(prose):
            target = m["target"]
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            where = (page.parent / path).resolve() if path else page
            if not where.exists():
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not dead, "\n".join(dead)
