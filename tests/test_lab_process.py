"""Tests for verifier.lab.process: timeouts and Ctrl-C kill whole process trees; output keeps its tail."""

from __future__ import annotations

import os
import signal
import time

import pytest

from verifier.lab.netns import Namespace, unprivileged_user
from verifier.lab.process import ProgramResult, run_program
from process_state import gone_or_zombie

pytestmark = pytest.mark.privileged

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def wait_gone(pids: list[int], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not all(gone_or_zombie(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_exit_status_output_and_times():
    before = time.time()
    result = run_program(["sh", "-c", "echo out; echo err >&2; sleep 0.2; exit 3"], env=ENV, timeout=10)
    assert isinstance(result, ProgramResult)
    assert (result.returncode, result.stdout, result.stderr, result.timed_out) == (3, "out\n", "err\n", False)
    assert 0.2 <= result.duration < 5
    assert before <= result.started <= before + 1


def test_the_program_gets_exactly_the_environment_and_cwd(tmp_path):
    result = run_program(["sh", "-c", "echo $FOO; pwd; env | wc -l"], env={**ENV, "FOO": "bar"}, cwd=tmp_path, timeout=10)
    foo, cwd, count = result.stdout.split()
    assert (foo, cwd) == ("bar", str(tmp_path))
    assert int(count) <= 4  # PATH, FOO and what sh itself sets (PWD)


def test_timeout_kills_the_whole_tree():
    result = run_program(["sh", "-c", "sleep 60 & echo $!; echo $$; wait"], env=ENV, timeout=0.5)
    assert result.timed_out
    assert result.returncode < 0
    assert 0.5 <= result.duration < 3
    child, shell = (int(pid) for pid in result.stdout.split())
    assert wait_gone([child, shell])


def test_a_tree_that_ignores_sigterm_is_killed_anyway():
    result = run_program(["sh", "-c", "trap '' TERM; sleep 60 & echo $!; wait"], env=ENV, timeout=0.3)
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL
    assert wait_gone([int(result.stdout)])


def test_keyboard_interrupt_kills_the_tree_and_propagates(tmp_path):
    pids = tmp_path / "pids"

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_program(["sh", "-c", f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"], env=ENV, timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert wait_gone([int(pid) for pid in pids.read_text().split()])


def test_a_child_left_behind_does_not_hold_up_the_result():
    started = time.monotonic()
    result = run_program(["sh", "-c", "sleep 60 & echo $!"], env=ENV, timeout=30)
    assert time.monotonic() - started < 3
    assert not result.timed_out and result.returncode == 0
    assert wait_gone([int(result.stdout)])


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_is_capped_keeping_the_tail(stream):
    redirect = "" if stream == "stdout" else ">&2"
    script = f"(head -c 5000000 /dev/zero | tr '\\0' x; echo; echo END) {redirect}"
    result = run_program(["sh", "-c", script], env=ENV, timeout=30, output_cap=1000)
    text = getattr(result, stream)
    assert len(text) == 1000
    assert text.endswith("x\nEND\n")
    assert getattr(result, f"{stream}_dropped") == 5000000 + 5 - 1000


def test_invalid_utf8_does_not_break_decoding():
    result = run_program(["printf", "\\377ok"], env=ENV, timeout=10)
    assert result.stdout.endswith("ok")


def test_a_program_in_a_namespace_runs_unprivileged():
    user = unprivileged_user()
    with Namespace("process") as ns:
        result = run_program(ns.command(["sh", "-c", "id -u; sleep 60"], user=user), env=ENV, timeout=0.5)
        assert result.timed_out
        assert result.stdout.split() == [str(user[0])]
        assert ns.processes() == []


def test_a_background_child_not_holding_the_output_is_killed_at_exit():
    result = run_program(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], env=ENV, timeout=30)
    assert result.returncode == 0
    assert wait_gone([int(result.stdout)])
