"""Tests of verifier.scenario: program headers, where the expectation comes from, resolving names and paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier import scenario as sc
from verifier.errors import UsageError
from verifier.expectation import parse as parse_expectation
from verifier.scenario import DEFAULT_ENV, Scenario, builtin, load, parse_program, resolve

PROGRAM = """\
// demo: a short description of the demo
// seed: DESIGN row "demo"
// nft: table inet a { chain input { type filter hook input priority 0; tcp dport $VERIFIER_PORT drop; }; }
// nft: table inet b { chain output { type filter hook output priority 0; tcp dport $VERIFIER_PORT_CLOSED drop; }; }
// sysctl: net.ipv4.tcp_syn_retries = 1
// sysctl: net.core.somaxconn=8
// timeout: 2.5
// syn-rto: 200ms
// Some prose: with a colon in it, which is not a header key.
import { done } from "./probe.mjs";
// timeout: 99  (after the first code line: not a header)
done();
"""


def program(tmp_path: Path, name: str, text: str, expect: str | None = None) -> Path:
    path = tmp_path / f"{name}.mjs"
    path.write_text(text)
    if expect is not None:
        (tmp_path / f"{name}.expect").write_text(expect)
    return path


def test_header_fields():
    s = parse_program("demo", Path("/x/demo.mjs"), PROGRAM, None, "")
    assert s.name == "demo" and s.program == Path("/x/demo.mjs")
    assert s.description == "a short description of the demo"
    assert s.seed == 'DESIGN row "demo"'
    assert len(s.nft) == 2 and s.nft[0].startswith("table inet a") and s.nft[1].startswith("table inet b")
    assert s.sysctls == (("net.ipv4.tcp_syn_retries", "1"), ("net.core.somaxconn", "8"))
    assert s.timeout == 2.5  # the `timeout: 99` after the code is not part of the header
    assert s.syn_rto == 0.2
    assert s.expectation is None and s.expectation_offset == 0
    assert s.env == DEFAULT_ENV and s.env is not DEFAULT_ENV


def test_header_defaults_and_description_only_from_the_first_line():
    s = parse_program("demo", Path("demo.mjs"), "// seed: x\n// demo: late\nimport x from 'y';\n", None, "")
    assert s.description == "(no description)" and s.seed == "x"
    assert s.nft == () and s.sysctls == () and s.timeout == 20.0 and s.syn_rto is None


def test_header_skips_blank_lines_and_stops_at_code():
    s = parse_program("demo", Path("demo.mjs"), "// demo: d\n\n// seed: s\nconst a = 1;\n// seed: not this\n", None, "")
    assert s.description == "d" and s.seed == "s"


@pytest.mark.parametrize("line,needle", [
    ("// sysctl: net.ipv4.tcp_syn_retries", "'sysctl:' takes key=value"),
    ("// timeout: soon", "'timeout:' takes seconds"),
    ("// syn-rto: fast", "'syn-rto:' takes a duration like 200ms or 0.2s, got 'fast'"),
    ("// syn-rto: 200", "'syn-rto:' takes a duration like 200ms or 0.2s, got '200'"),
    ("// syn-rto: -5ms", "'syn-rto:' takes a duration"),
    ("// syn-rto: 0ms", "'syn-rto:' 0ms is out of range: at least 1 ms"),
    ("// syn-rto: 0.5ms", "'syn-rto:' 0.5ms is out of range"),
    ("// syn-rto: 121s", "at most 120 s (TCP_RTO_MAX)"),
])
def test_bad_header_values_name_file_and_line(line, needle):
    text = f"// demo: d\n// seed: s\n{line}\n"
    with pytest.raises(UsageError) as err:
        parse_program("demo", Path("/s/demo.mjs"), text, None, "")
    assert str(err.value).startswith("/s/demo.mjs:3: ")
    assert needle in str(err.value)


@pytest.mark.parametrize("value,seconds", [("200ms", 0.2), ("0.2s", 0.2), ("1s", 1.0), ("100 ms", 0.1), ("4ms", 0.004), ("120s", 120.0)])
def test_syn_rto_takes_milliseconds_or_seconds(value, seconds):
    s = parse_program("demo", Path("demo.mjs"), f"// demo: d\n// syn-rto: {value}\n", None, "")
    assert s.syn_rto == pytest.approx(seconds)


def test_embedded_expect_block_with_its_line_offset(tmp_path):
    text = (
        "// demo: d\n"           # 1
        "import x from 'y';\n"   # 2
        "/* expect\n"            # 3
        "client hello n=1\n"     # 4
        "C > S  S 0:0(0)\n"      # 5
        "*/\n"
    )
    path = program(tmp_path, "demo", text)
    s = load(path)
    assert s.expectation == "client hello n=1\nC > S  S 0:0(0)\n"
    assert s.expectation_source == str(path)
    assert s.expectation_offset == 3
    # what `verifier run` does: the offset makes expectation line numbers the program's line numbers
    exp = parse_expectation("\n" * s.expectation_offset + s.expectation, "linux", s.expectation_source)
    assert [step.lineno for step in exp.steps] == [4, 5]
    assert (text.splitlines()[3], text.splitlines()[4]) == ("client hello n=1", "C > S  S 0:0(0)")


def test_expect_file_beside_the_program_wins_over_a_block(tmp_path):
    path = program(tmp_path, "demo", "// demo: d\n/* expect\nclient block\n*/\n", expect="client file\n")
    s = load(path)
    assert s.expectation == "client file\n"
    assert s.expectation_source == str(tmp_path / "demo.expect")
    assert s.expectation_offset == 0


def test_no_expectation_at_all(tmp_path):
    s = load(program(tmp_path, "demo", "// demo: d\n"))
    assert s.expectation is None


def test_load_unreadable_program_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read scenario"):
        load(tmp_path / "missing.mjs")


def test_resolve_by_builtin_name_and_all_when_none_named():
    (s,) = resolve(["client-end"])
    assert s.name == "client-end" and s.program == sc.BUILTIN_DIR / "client-end.mjs"
    assert [x.name for x in resolve([])] == [x.name for x in builtin()]


def test_resolve_file_and_folder(tmp_path):
    a = program(tmp_path, "a", "// a: first\n")
    program(tmp_path, "b", "// b: second\n")
    (tmp_path / "probe.mjs").write_text("// probe: not a scenario\n")
    (tmp_path / "notes.txt").write_text("not a program")
    assert [s.name for s in resolve([str(a)])] == ["a"]
    assert [s.name for s in resolve([str(tmp_path)])] == ["a", "b"]
    assert [s.description for s in resolve([str(tmp_path), "destroy"])] == [
        "first", "second", builtin()[[x.name for x in builtin()].index("destroy")].description]


def test_resolve_unknown_name_lists_the_known_ones():
    with pytest.raises(UsageError) as err:
        resolve(["no-such-scenario"])
    message = str(err.value)
    assert "unknown scenario 'no-such-scenario'" in message
    for s in builtin():
        assert s.name in message


def test_resolve_rejects_a_file_that_is_not_a_program(tmp_path):
    other = tmp_path / "demo.js"
    other.write_text("// demo: d\n")
    with pytest.raises(UsageError, match=r"demo\.js: a scenario is a \.mjs program"):
        resolve([str(other)])


def test_resolve_empty_folder(tmp_path):
    (tmp_path / "probe.mjs").write_text("")
    with pytest.raises(UsageError, match="no scenario programs"):
        resolve([str(tmp_path)])


def test_substitute_longest_variable_first():
    s = Scenario("demo", Path("demo.mjs"), "d")
    text = "dport { $VERIFIER_PORT_CLOSED, $VERIFIER_PORT } host $VERIFIER_HOST"
    assert s.substitute(text) == "dport { 5001, 5000 } host localhost"
    custom = Scenario("demo", Path("demo.mjs"), "d", env={"VERIFIER_PORT": "7", "VERIFIER_PORT_CLOSED": "8"})
    assert custom.substitute("$VERIFIER_PORT_CLOSED/$VERIFIER_PORT") == "8/7"


BUILTIN = builtin()

# Bug (reported): client-end.expect and server-end.expect have `linux:` and `darwin:` blocks but
# no `windows:` block, so for windows the `any:` ACK of the second FIN (ack 2) follows no FIN and
# the parser's TCP consistency check rejects the file: `verifier run` would exit 2 on Windows.


def test_builtin_catalogue():
    assert len(BUILTIN) >= 12
    names = [s.name for s in BUILTIN]
    assert "probe" not in names and len(set(names)) == len(names)
    for s in BUILTIN:
        assert s.description and s.description != "(no description)", s.name
        assert s.seed, f"{s.name}: no '// seed:' line"
        assert s.expectation, f"{s.name}: no expectation"
        for rule in s.nft:
            assert "$VERIFIER" not in s.substitute(rule)


@pytest.mark.parametrize("family", ["linux", "darwin", "windows"])
@pytest.mark.parametrize("name", [s.name for s in BUILTIN])
def test_builtin_expectation_parses_for_each_os_family(name, family):
    (s,) = [x for x in BUILTIN if x.name == name]
    exp = parse_expectation("\n" * s.expectation_offset + s.expectation, family, s.expectation_source)
    assert exp.steps, (name, family)


def test_source_header_names_the_report():
    s = parse_program("x", Path("x.mjs"), "// x: y\n// seed: none\n// source: nodejs/node#13391\n", None, "")
    assert s.source == "nodejs/node#13391" and s.seed == "none" and s.warnings == ()


def test_a_header_naming_another_name_is_warned_about():
    s = parse_program("close", Path("t/close.mjs"), "// closing: the server closes first\nlet x;\n", None, "")
    (warning,) = s.warnings
    assert warning.startswith("t/close.mjs:1: the header names 'closing' but the file is close.mjs")
    assert s.name == "close" and s.description == "the server closes first"
    assert parse_program("close", Path("close.mjs"), "// seed: a row\n", None, "").warnings == ()


def test_resolve_a_missing_path_says_no_such_file(tmp_path):
    for item in (str(tmp_path / "missing.mjs"), "./x", "missing.mjs", "tests/nothere"):
        with pytest.raises(UsageError, match=r"no such file or folder$"):
            resolve([item])


@pytest.mark.parametrize("text, expected", [
    ('import * as net from "node:net";\nimport { done } from "./probe.mjs";\n', True),
    ("import net from 'net';\nimport {\n  watch,\n  done,\n} from './probe.mjs';\nimport 'node:process';\n", True),
    ('import { makeServer } from "../src/server.mjs";\n', False),
    ('import greet from "greet";\n', False),
    ('export { x } from "./other.mjs";\n', False),
    ('import "./setup.mjs";\n', False),
    ('const m = await import("./probe.mjs");\n', True),
    ("const m = await import(process.env.VERIFIER_PROBE);\n", False),
    ('// import x from "./commented-out.mjs" is still an import to this scan: conservative\n', False),
])
def test_self_contained_programs_import_only_the_probe_and_builtins(text, expected):
    assert sc.self_contained(text) is expected


def test_floor_is_the_programs_own_timers():
    s = parse_program("x", Path("x.mjs"), "// x: y\n// floor: 1.2s\n", None, "")
    assert s.floor == 1.2 and s.warnings == ()
    assert parse_program("x", Path("x.mjs"), "// x: y\n", None, "").floor == 0.0
    with pytest.raises(UsageError, match=r"x.mjs:2: 'floor:' takes a duration"):
        parse_program("x", Path("x.mjs"), "// x: y\n// floor: soon\n", None, "")
    assert max(builtin(), key=lambda s: s.floor).name == "keepalive-dead-peer"
