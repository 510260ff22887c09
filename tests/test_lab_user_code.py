"""Scenarios that import the user's own code: run in place under every runtime, the probe laid over
their folder, their files untouched; named actors end to end; --accept; unreadable folders refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from verifier.errors import EnvironmentProblem
from verifier.lab.netns import unprivileged_user
from verifier.lab.run import check_readable, remove_leftover_work_dirs
from verifier.lab.runtime import LOCAL_BINARIES, LOCAL_DIR
from verifier.scenario import load

pytestmark = pytest.mark.privileged

SERVER = """\
// the user's own module: greets each connection (a package from their node_modules), then ends it
import * as net from "node:net";
import greet from "greet";

export function makeServer() {
  return net.createServer((socket) => socket.end(greet("client")));
}
"""

SCENARIO = """\
// close: the user's greeting server, read by two clients in turn
import { makeServer } from "../src/server.mjs";
import { accept, connect, done, env, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(makeServer());
accept(server);
await listen(server, env.port, "127.0.0.1");
for (const side of ["client", "client2"]) {
  const socket = connect(side, { host: "127.0.0.1", port: env.port });
  await once(socket, "close");
}
done();
"""

# What every runtime does here (the greeting is 15 bytes: "hello client\\n" is 13, see GREET)
EXPECT = """\
@1 C > S  S 0:0(0)
@1 S > C  S. 0:0(0) ack 1
@1 C > S  . 1:1(0) ack 1
@1 S > C  P. 1:14(13) ack 1
@1 C > S  . 1:1(0) ack 14
@1 S > C  F. 14:14(0) ack 1
@1 C > S  F. 1:1(0) ack 15
@1 S > C  . 15:15(0) ack 2
@2 C > S  S 0:0(0)
@2 S > C  S. 0:0(0) ack 1
@2 C > S  . 1:1(0) ack 1
@2 S > C  P. 1:14(13) ack 1
@2 C > S  . 1:1(0) ack 14
@2 S > C  F. 14:14(0) ack 1
@2 C > S  F. 1:1(0) ack 15
@2 S > C  . 15:15(0) ack 2
meanwhile:
  client data len=13
  client close hadError=false
  client2 data len=13
  client2 close hadError=false
end
never client error
never client2 error
never R
"""

GREET = 'export default function greet(name) { return `hello ${name}\\n`; }\n'


def user_project(root: Path) -> Path:
    """A user's project: src/ (their server), node_modules/greet (a package), test/close.mjs; readable by all."""
    (root / "src").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "node_modules" / "greet").mkdir(parents=True)
    (root / "package.json").write_text('{"name": "proj", "private": true, "type": "module"}\n')
    (root / "node_modules" / "greet" / "package.json").write_text(
        '{"name": "greet", "version": "1.0.0", "type": "module", "exports": "./index.js"}\n')
    (root / "node_modules" / "greet" / "index.js").write_text(GREET)
    (root / "src" / "server.mjs").write_text(SERVER)
    (root / "test" / "close.mjs").write_text(SCENARIO)
    (root / "test" / "close.expect").write_text(EXPECT)
    open_to_others(root)
    return root / "test" / "close.mjs"


def open_to_others(root: Path) -> None:
    """What a user's checkout usually is: searchable on the way (pytest's own folders are 0700), readable inside."""
    for folder in root.parents:
        if folder == Path("/"):
            break
        os.chmod(folder, os.stat(folder).st_mode | 0o001)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size, p.stat().st_mode) for p in sorted(root.rglob("*"))}


def verifier(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def runtime_names() -> list[str]:
    return ["node"] + [name for name, rel in LOCAL_BINARIES.items() if (LOCAL_DIR / rel).exists()]


@pytest.fixture
def project(tmp_path):
    return user_project(tmp_path / "proj")


def test_a_scenario_imports_the_users_modules_and_packages_under_every_runtime(project, tmp_path):
    names = runtime_names()
    if os.environ.get("CI"):
        assert len(names) == 5, "make test installs node22, node24, bun and deno"
    before = snapshot(project.parents[1])
    args = ["run", str(project), "--json", str(tmp_path / "out.json"), "--no-fixture-check"]
    for name in names:
        args += ["--runtime", name]
    done = verifier(*args)
    doc = json.loads((tmp_path / "out.json").read_text())
    statuses = {r["runtime"]: r["status"] for r in doc["results"]}
    assert statuses == {name: "held" for name in names}, done.stdout + done.stderr
    assert done.returncode == 0
    for r in doc["results"]:  # the named actor's events are in the JSON under its own name
        assert [e["name"] for e in r["events"] if e["side"] == "client2"][-1] == "close"
    # their folders are as they were: no probe.mjs, no deno cache, no lock file left behind
    assert snapshot(project.parents[1]) == before


def test_the_probe_shadows_a_stale_copy_beside_the_program(project):
    (project.parent / "probe.mjs").write_text("export const stale = true;\n")
    os.chmod(project.parent / "probe.mjs", 0o644)
    done = verifier("run", str(project), "--no-fixture-check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project.parent / "probe.mjs").read_text() == "export const stale = true;\n"


def test_the_program_runs_from_its_folder_with_the_probe_path_in_its_environment(tmp_path):
    folder = user_project(tmp_path / "proj").parent
    (folder / "where.mjs").write_text(
        "// where: reports its working folder and the probe's path, then connects once\n"
        "import * as fs from 'node:fs';\n"
        "import * as net from 'node:net';\n"
        "const probe = await import(process.env.VERIFIER_PROBE);\n"
        "probe.log('client', 'where', { cwd: process.cwd(), probe: process.env.VERIFIER_PROBE,\n"
        "  beside: fs.existsSync('probe.mjs') });\n")
    (folder / "where.expect").write_text("client where\n")
    os.chmod(folder / "where.mjs", 0o644)
    os.chmod(folder / "where.expect", 0o644)
    done = verifier("run", str(folder / "where.mjs"), "--json", "-", "--no-fixture-check")
    (result,) = json.loads(done.stdout)["results"]
    (where,) = [e for e in result["events"] if e["name"] == "where"]
    assert where["args"] == {"cwd": str(folder), "probe": str(folder / "probe.mjs"), "beside": True}


def test_accept_writes_an_expectation_the_next_run_holds(project):
    project.with_suffix(".expect").unlink()
    refused = verifier("run", str(project))
    assert refused.returncode == 2 and "--accept" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert "[ 1/1]" not in refused.stdout  # refused before the program ran
    accepted = verifier("run", str(project), "--accept")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    written = project.with_suffix(".expect").read_text()
    assert "linux:\n@1 C > S  S 0:0(0)\n" in written and "@2 S > C  . 15:15(0) ack 2\n" in written
    assert "  client2 close hadError=false" in written
    # ephemeral ports are left out, the scenario's own are kept
    assert "  listener connection localAddress=127.0.0.1 localPort=5000 remoteAddress=127.0.0.1 side=server\n" in written
    assert "  client connect localAddress=127.0.0.1 remoteAddress=127.0.0.1 remotePort=5000 " in written
    again = verifier("run", str(project), "--no-fixture-check")
    assert again.returncode == 0, again.stdout + again.stderr
    # and it is not vacuous: a changed line fails, naming it
    project.with_suffix(".expect").write_text(written.replace("  client2 close hadError=false", "  client2 close hadError=true"))
    failed = verifier("run", str(project), "--no-fixture-check")
    assert failed.returncode == 1
    assert "client2 close hadError=true" in failed.stdout and "hadError expected true vs actual false" in failed.stdout


def test_an_unreadable_scenario_folder_is_refused_before_anything_runs(project, tmp_path):
    os.chmod(project.parent, 0o700)
    user = unprivileged_user()
    with pytest.raises(EnvironmentProblem) as e:
        check_readable([load(project)], user)
    assert f"uid {user[0]}" in str(e.value) and str(project.parent) in str(e.value)
    done = verifier("run", str(project))
    assert done.returncode == 3 and len(done.stderr.strip().splitlines()) == 1
    assert "cannot read it where it is" in done.stderr and "chmod o+rx" in done.stderr


def test_work_folders_of_a_killed_run_are_removed_by_the_next(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    leftover = Path(f"/tmp/verifier-run-{dead}-abcd1234")
    leftover.mkdir()
    (leftover / "events.jsonl").write_text("")
    alive = Path(f"/tmp/verifier-run-{os.getpid()}-alive")
    alive.mkdir()
    try:
        remove_leftover_work_dirs.cache_clear()
        removed = remove_leftover_work_dirs()
        assert str(leftover) in removed and not leftover.exists()
        assert alive.exists()  # ours: this process is alive
    finally:
        alive.rmdir()
