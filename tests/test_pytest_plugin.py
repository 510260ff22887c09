"""The pytest plugin, used as a user would: a test file of theirs, run by pytest itself."""

import pytest

pytest_plugins = ["pytester"]

SCENARIO = """// idle-close: the server closes an idle connection with a FIN
import * as net from "node:net";
import { connect, done, env, familyOptions, invoke, listen, once, watch, watchServer } from "./probe.mjs";
const server = watchServer(net.createServer((s) => { watch(s, "server"); invoke(s, "server", "end"); }));
await listen(server, env.port, env.host);
const client = connect("client", { host: env.host, port: env.port, ...familyOptions("client") });
client.on("close", () => { server.close(); done(); });
"""
EXPECT = """C > S  S 0:0(0)
S > C  S. 0:0(0) ack 1
C > S  . 1:1(0) ack 1
S > C  F. 1:1(0) ack 1
? C > S  . 1:1(0) ack 2
C > S  F. 1:1(0) ack 2
S > C  . 2:2(0) ack 2
never R
"""


@pytest.mark.privileged
def test_verifier_run_fixture_in_a_users_test_file(pytester):
    pytester.makefile(".mjs", **{"idle-close": SCENARIO})
    pytester.makefile(".expect", **{"idle-close": EXPECT})
    pytester.makepyfile(test_server="""
        def test_idle_close_is_a_fin(verifier_run):
            result = verifier_run("idle-close.mjs")
            assert result.passed, result.report
            assert result.connections[0]["zeek_state"] == "SF"

        def test_a_wrong_expectation_fails_with_the_line(verifier_run, tmp_path):
            import shutil
            shutil.copy("idle-close.mjs", tmp_path / "x.mjs")
            (tmp_path / "x.expect").write_text("C > S  S 0:0(0)\\nS > C  R. 1:1(0) ack 1\\n")
            result = verifier_run(tmp_path / "x.mjs")
            assert not result.passed and "x.expect:2: segment differs: flags expected R. vs actual S." in result.report
    """)
    outcome = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=2)


@pytest.mark.privileged
def test_verifier_run_a_scenario_that_imports_the_users_server(pytester):
    """The README's plugin example: tests/scenarios/idle-close.mjs imports the user's src/server.mjs."""
    from test_lab_user_code import open_to_others

    root = pytester.path
    (root / "src").mkdir()
    (root / "src" / "server.mjs").write_text(
        'import * as net from "node:net";\n'
        "// the user's server: closes an idle connection at once (a FIN, never a RST)\n"
        "export function makeServer() { return net.createServer((socket) => socket.end()); }\n")
    (root / "tests" / "scenarios").mkdir(parents=True)
    (root / "tests" / "scenarios" / "idle-close.mjs").write_text(
        "// idle-close: my server closes an idle connection with a FIN\n"
        'import { makeServer } from "../../src/server.mjs";\n'
        'import { accept, connect, done, env, listen, once, watchServer } from "./probe.mjs";\n'
        "const server = watchServer(makeServer());\n"
        "accept(server);\n"
        "await listen(server, env.port, env.host);\n"
        'const client = connect("client", { host: env.host, port: env.port });\n'
        'await once(client, "close");\n'
        "done();\n")
    (root / "tests" / "scenarios" / "idle-close.expect").write_text(EXPECT)
    open_to_others(root)
    pytester.makepyfile(test_server="""
        def test_my_server_closes_idle_connections_with_fin(verifier_run):
            result = verifier_run("tests/scenarios/idle-close.mjs")  # idle-close.expect beside it
            assert result.passed, result.report                      # the report names line and field
            assert result.connections[0]["zeek_state"] == "SF"

        def test_a_scenario_without_expectation_is_refused(verifier_run, tmp_path):
            import pytest
            from verifier.errors import UsageError
            (tmp_path / "bare.mjs").write_text("// bare: no expectation\\n")
            with pytest.raises(UsageError, match="has no expectation.*--accept"):
                verifier_run(tmp_path / "bare.mjs")
    """)
    outcome = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=2)


def test_verifier_show_fixture(pytester):
    from pathlib import Path

    capture = Path(__file__).parent / "data" / "foreign" / "macos-lo0-ipv6-fin.pcap"
    pytester.makepyfile(test_capture=f"""
        def test_macos_close(verifier_show):
            (conn,) = verifier_show({str(capture)!r})
            assert (conn["outcome"], conn["fin_ack"]) == ("fin-client-first", "separate")
    """)
    pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider").assert_outcomes(passed=1)
