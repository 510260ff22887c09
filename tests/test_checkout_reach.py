"""Tests for make's refusal of a checkout the program user cannot enter (make reachable, make runtimes)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from verifier.errors import EXIT_ENVIRONMENT, EnvironmentProblem
from verifier.lab import runtime as runtimes
from verifier.lab.runtime import check_checkout_reachable, chmod_fix, closed_folders

pytestmark = pytest.mark.privileged  # chown, and setpriv to ask the kernel as another user

REPO = Path(__file__).resolve().parents[1]
NOBODY = (65534, 65534)


def copy_checkout(parent: Path) -> Path:
    """A checkout with what `make reachable` needs (Makefile, the verifier package) as real files, no symlink."""
    checkout = parent / "verifier-checkout"
    checkout.mkdir(parents=True)
    shutil.copy(REPO / "Makefile", checkout / "Makefile")
    shutil.copytree(REPO / "verifier", checkout / "verifier", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return checkout


def make(checkout: Path, target: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SUDO_UID", "SUDO_GID", "MAKEFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "-s", "-C", str(checkout), target], capture_output=True, text=True,
                          env={**base, "PYTHONDONTWRITEBYTECODE": "1", **env}, timeout=120)


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("make")]


# --- the pure parts: which folders, which chmod -------------------------------------------------


def test_every_closed_folder_on_the_way_is_named_with_one_chmod(open_dir):
    inner = open_dir / "a" / "b" / "c"
    inner.mkdir(parents=True)
    (open_dir / "a").chmod(0o700)
    (open_dir / "a" / "b").chmod(0o750)
    closed = closed_folders(inner, NOBODY[0], {NOBODY[1]})
    assert closed == [open_dir / "a", open_dir / "a" / "b"]
    assert chmod_fix(closed, NOBODY[0], {NOBODY[1]}) == f"chmod o+x {open_dir / 'a'} {open_dir / 'a' / 'b'}"
    assert closed_folders(open_dir, NOBODY[0], {NOBODY[1]}) == []


def test_the_chmod_is_for_the_owner_or_group_when_the_user_is_one(open_dir):
    mine, ours = open_dir / "mine", open_dir / "ours"
    mine.mkdir(mode=0o600)
    ours.mkdir(mode=0o770)
    os.chown(mine, 4242, 0)
    os.chown(ours, 0, 4343)
    mine.chmod(0o600)
    ours.chmod(0o700)
    assert chmod_fix([mine, ours], 4242, {4343}) == f"chmod u+x {mine} && chmod g+x {ours}"


def test_a_checkout_under_a_0700_folder_is_refused_naming_it_and_the_fix(open_dir):
    private = open_dir / "private"
    checkout = copy_checkout(private)
    private.chmod(0o700)
    with pytest.raises(EnvironmentProblem) as e:
        check_checkout_reachable(NOBODY, checkout)
    message = str(e.value)
    assert e.value.exit_code == EXIT_ENVIRONMENT and "\n" not in message
    assert f"cannot enter {private} (mode drwx------) on the way to this checkout {checkout}" in message
    assert f"run `chmod o+x {private}`" in message and "clone the repository under" in message
    private.chmod(0o701)  # what the message says to do
    check_checkout_reachable(NOBODY, checkout)


# --- make, as CI and a user run it ---------------------------------------------------------------


def test_make_test_refuses_a_0700_checkout_in_one_line_before_setting_anything_up(open_dir):
    private = open_dir / "private"
    checkout = copy_checkout(private)
    private.chmod(0o700)
    for target in ("test", "runtimes"):
        done = make(checkout, target)
        assert done.returncode != 0
        (line,) = our_lines(done.stderr)
        assert line.startswith("verifier: uid 65534 (nobody), the user scenario programs run as"), done.stderr
        assert f"chmod o+x {private}" in done.stderr and f"Error {EXIT_ENVIRONMENT}" in done.stderr
        assert not (checkout / ".venv").exists() and not (checkout / "runtimes").exists()  # refused first
    private.chmod(0o701)
    done = make(checkout, "reachable")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_sudo_caller_is_the_user_checked(open_dir):
    home = open_dir / "home"
    checkout = copy_checkout(home)
    os.chown(home, 4242, 4242)
    home.chmod(0o700)  # like a home folder: its owner may enter, nobody else
    assert make(checkout, "reachable", SUDO_UID="4242", SUDO_GID="4242").returncode == 0
    refused = make(checkout, "reachable")  # without sudo: nobody
    assert refused.returncode != 0 and f"cannot enter {home}" in refused.stderr


def test_this_checkout_is_reachable_as_make_test_requires():
    """CI runs `make test` as root in a fresh clone: the same check, on this very checkout."""
    done = make(REPO, "reachable")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


def test_make_test_checks_before_setup_and_runtimes_before_installing():
    makefile = (REPO / "Makefile").read_text()
    assert "\ntest: reachable setup runtimes" in makefile  # reachable first (what follows runtimes may grow)
    assert "\nruntimes: reachable runtimes/node_modules/.installed\n" in makefile


def test_installed_runtimes_run_as_the_program_user():
    if not (REPO / "runtimes" / "node_modules").is_dir():
        pytest.skip("runtimes not installed: run `make runtimes`")
    done = subprocess.run(["python3", "-m", "verifier.lab.runtime", "--installed"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == list(runtimes.LOCAL_BINARIES)


def test_a_runtime_the_program_user_cannot_run_is_named(open_dir, monkeypatch, capsys):
    fake = open_dir / "runtimes"
    for rel in runtimes.LOCAL_BINARIES.values():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text("#!/bin/sh\necho v1.2.3\n")
        (fake / rel).chmod(0o755)
    first = next(iter(runtimes.LOCAL_BINARIES))
    (fake / runtimes.LOCAL_BINARIES[first]).chmod(0o700)
    monkeypatch.setattr(runtimes, "LOCAL_DIR", fake)
    monkeypatch.delenv("SUDO_UID", raising=False)
    assert runtimes.main(["--installed"]) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"runtime {first} " in err and "not executable by uid 65534" in err
