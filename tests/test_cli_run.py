"""`verifier run` end to end (verifier.commands): fixture drift, --record, --summary, --accept, and what is refused before anything runs."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from verifier.commands import platform_info
from verifier.lab import runtime as runtimes
from verifier.wire.capture import read_frames
from verifier.wire.model import CaptureInfo

QUIET_PROGRAM = """\
// quiet: a server listens and closes; nothing is ever on the wire
import * as net from "node:net";
import { done, env, listen, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
await listen(server, env.port, "127.0.0.1");
server.close(() => done());
"""

QUIET_EXPECT = "listener listening\nlistener close\n"

TALK_PROGRAM = """\
// talk: the client sends a few bytes and ends; the server ends on 'end' (3 packets: it had data)
import * as net from "node:net";
import { accept, connect, done, endOnEnd, env, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server, endOnEnd("server"));
await listen(server, env.port, "127.0.0.1");
const client = connect("client", { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
client.on("close", () => { server.close(); done(); });
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "write", "hello");
await once(socket, "data");
invoke(client, "client", "end");
"""

WRONG_EXPECT = "C > S  S 0:0(0)\nS > C  S. 0:0(0) ack 1\nC > S  . 1:1(0) ack 0\n"  # line 3 is wrong on purpose


def verifier(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def fixture_folder(captures: Path) -> Path:
    return captures / platform_info()["label"] / runtimes.resolve("node").label


@pytest.fixture
def shared_tmp():
    """A temp folder the unprivileged program user can read (pytest's tmp_path is root's, mode 0700):
    user programs run where they are, so their folder must be readable by that user."""
    path = Path(tempfile.mkdtemp(prefix="verifier-test-cli-run-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def user_folder(tmp_path: Path, **programs: tuple[str, str | None]) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    folder.chmod(0o755)
    for name, (program, expect) in programs.items():
        (folder / f"{name}.mjs").write_text(program)
        if expect is not None:
            (folder / f"{name}.expect").write_text(expect)
    return folder


# --- drift ---------------------------------------------------------------------------------------


@pytest.mark.privileged
def test_an_edited_fixture_fails_the_run_and_names_the_difference(tmp_path):
    caps, keep = tmp_path / "caps", str(tmp_path / "k")
    done = verifier("run", "destroy", "--record", "--captures", str(caps), "--keep", keep, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    fixture = fixture_folder(caps) / "destroy.txt"
    again = verifier("run", "destroy", "--captures", str(caps), "--keep", keep, cwd=tmp_path)
    assert again.returncode == 0, again.stdout  # the run it was recorded from: no drift
    assert re.search(r"^\[ 1/1\] held +destroy ", again.stdout, re.M)
    text = fixture.read_text()
    assert "C > S  F. 4:4(0) ack 1" in text
    fixture.write_text(text.replace("C > S  F.", "C > S  R.", 1))
    out_json = tmp_path / "out.json"
    drifted = verifier("run", "destroy", "--captures", str(caps), "--keep", keep, "--json", str(out_json), cwd=tmp_path)
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert re.search(r"^\[ 1/1\] DRIFTED destroy ", drifted.stdout, re.M)  # the run line says it
    named = "connection 1: RST instead of FIN: A's client resets where B's client closes with a FIN"
    assert f"  - {named}" in drifted.stdout
    assert "1 run: 0 held, 0 failed, 0 errors, 1 drifted" in drifted.stdout
    (r,) = json.loads(out_json.read_text())["results"]
    assert r["status"] == "drifted" and r["passed"] is False
    assert r["fixture"]["path"] == str(fixture) and named in r["fixture"]["differences"]
    # exploratory runs skip the check
    free = verifier("run", "destroy", "--captures", str(caps), "--keep", keep, "--no-fixture-check", cwd=tmp_path)
    assert free.returncode == 0 and "DRIFTED" not in free.stdout and "where behaviour differs" not in free.stdout


# --- --record ------------------------------------------------------------------------------------


@pytest.mark.privileged
def test_record_writes_failed_runs_and_runs_without_a_packet(shared_tmp):
    tmp_path = shared_tmp
    crash = "// crash: logs an event, then exits with status 3\nimport { log } from './probe.mjs';\nlog('client', 'started');\nprocess.exit(3);\n"
    folder = user_folder(tmp_path, quiet=(QUIET_PROGRAM, QUIET_EXPECT), talk=(TALK_PROGRAM, WRONG_EXPECT),
                         crash=(crash, "client started\n"))
    caps = tmp_path / "caps"
    done = verifier("run", str(folder), "--record", "--captures", str(caps), "--keep", str(tmp_path / "k"), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # talk failed, crash erred: both recorded all the same
    assert re.search(r"^\[ ?\d/3\] ERROR +crash ", done.stdout, re.M) and re.search(r"^\[ ?\d/3\] FAILED +talk ", done.stdout, re.M)
    plat, node = platform_info(), runtimes.resolve("node")
    assert f"fixtures: 3 written under {caps}/{plat['label']}/ ({node.label}), 0 not recorded" in done.stdout
    written = fixture_folder(caps)
    assert sorted(os.listdir(written)) == ["crash.pcapng", "crash.txt", "quiet.pcapng", "quiet.txt", "talk.pcapng", "talk.txt"]
    assert (written / "crash.txt").read_text() == "# crash: logs an event, then exits with status 3\nclient started\n"
    info = CaptureInfo()
    assert list(read_frames(io.BytesIO((written / "quiet.pcapng").read_bytes()), info)) == []
    assert info.format == "pcapng" and len(info.interfaces) == 1
    quiet = (written / "quiet.txt").read_text().splitlines()
    assert quiet[0].startswith("# quiet: ") and quiet[1].startswith("listener listening") and quiet[-1] == "listener close"
    assert not any(" > " in line for line in quiet)
    assert "C > S  S 0:0(0)" in (written / "talk.txt").read_text()


# --- --summary -----------------------------------------------------------------------------------


@pytest.mark.privileged
def test_summary_is_appended_markdown(tmp_path):
    summary = tmp_path / "step-summary.md"
    summary.write_text("# an earlier step\n")
    done = verifier("run", "destroy", "--summary", str(summary), "--keep", str(tmp_path / "k"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    text = summary.read_text()
    assert text.startswith("# an earlier step\n## verifier run: linux ")
    assert re.search(r"^\| destroy \| node \S+ \| held \| \d+ \| 1 \| [\d.]+ s \|$", text, re.M)


def test_summary_into_a_folder_that_is_not_there_stops_before_anything_runs(tmp_path):
    done = verifier("run", "destroy", "--summary", str(tmp_path / "nope" / "s.md"), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"verifier: --summary {tmp_path / 'nope'}: not a writable folder\n"
    (tmp_path / "adir").mkdir()
    done = verifier("run", "destroy", "--summary", str(tmp_path / "adir"), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == f"verifier: --summary {tmp_path / 'adir'}: not a writable file\n"


# --- expectations: refused when missing, --accept ------------------------------------------------


def test_a_program_without_expectation_is_refused_before_it_runs(tmp_path):
    folder = user_folder(tmp_path, talk=(TALK_PROGRAM, None))
    program = folder / "talk.mjs"
    done = verifier("run", str(program), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"verifier: {program} has no expectation: write talk.expect beside it (or a /* expect ... */ "
                           f"block), or record one from a run with: verifier run {program} --accept\n")


@pytest.mark.parametrize("argv, words", [
    (["destroy", "--accept"], "destroy is built in"),
    (["--accept"], "name your own .mjs files or folders"),
    (["mine", "--accept", "--runtime", "node", "--runtime", "node22"], "--accept takes one --runtime"),
    (["mine", "--accept", "--record"], "--accept and --record: one at a time"),
])
def test_accept_usage_errors_are_one_line(tmp_path, argv, words):
    user_folder(tmp_path, talk=(TALK_PROGRAM, None))
    done = verifier("run", *argv, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and words in done.stderr and "Traceback" not in done.stderr


def test_accept_writes_each_run_that_is_not_an_error(monkeypatch, tmp_path):
    """The wiring: accept.write_expectation for each run that did not end in ERROR, one line each."""
    from verifier import commands
    from test_report import run

    written = []

    def write_expectation(result, family):
        written.append((result.scenario.name, family))
        return tmp_path / f"{result.scenario.name}.expect"

    monkeypatch.setitem(sys.modules, "verifier.accept", SimpleNamespace(write_expectation=write_expectation))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    results = [run("close", connections=2, events=9), run("crash", status="error", problems=["the program exited with status 1"]),
               run("diverged", status="failed")]
    commands._accept(results, "linux", out)
    assert written == [("close", "linux"), ("diverged", "linux")]
    assert out.getvalue().splitlines() == [
        "accepted: wrote close.expect (2 connections, 12 segments, 9 events) from node 20.20.2",
        "not accepted: /x/crash.mjs: the program exited with status 1",
        "accepted: wrote diverged.expect (1 connection, 6 segments, 2 events) from node 20.20.2",
    ]


@pytest.mark.privileged
def test_accept_then_the_next_run_holds(shared_tmp):
    tmp_path = shared_tmp
    pytest.importorskip("verifier.accept", reason="verifier/accept.py (the lead's part of issue 10) is not there yet")
    folder = user_folder(tmp_path, talk=(TALK_PROGRAM, None))
    program = folder / "talk.mjs"
    done = verifier("run", "mine/talk.mjs", "--accept", "--keep", str(tmp_path / "k"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^accepted: wrote mine/talk\.expect \(1 connection, \d+ segments, \d+ events\) from node \d+\.\d+\.\d+$",
                     done.stdout, re.M), done.stdout
    assert (folder / "talk.expect").is_file()
    again = verifier("run", str(program), "--keep", str(tmp_path / "k"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 run: 1 held" in again.stdout


@pytest.mark.privileged
def test_a_program_the_program_user_cannot_read_is_refused_before_the_table(tmp_path):
    # pytest's tmp_path is root's (mode 0700); a program that imports its neighbours cannot be copied
    folder = user_folder(tmp_path, talk=(TALK_PROGRAM.replace('"./probe.mjs";', '"./probe.mjs";\nimport "./other.mjs";'), "client end()\n"))
    (folder / "other.mjs").write_text("export const x = 1;\n")
    done = verifier("run", str(folder / "talk.mjs"), cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1 and "cannot read it where it is" in done.stderr


@pytest.mark.privileged
def test_scenario_warnings_are_said_before_the_run(shared_tmp):
    folder = user_folder(shared_tmp, talk=(TALK_PROGRAM.replace("// talk:", "// chat:", 1), "client end()\n"))
    done = verifier("run", str(folder / "talk.mjs"), "--keep", str(shared_tmp / "k"), cwd=shared_tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "chat" in warnings[0] and "talk.mjs" in warnings[0]
