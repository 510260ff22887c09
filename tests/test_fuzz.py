"""The fuzz pass of `make test`: the sanitizer build of show's C loop under atheris, and its regressions.

A short coverage-guided run (FUZZ_TEST_SECONDS, default 40) of fuzz/run.py must end with no
finding, after running every seed; a heap overflow put into a copy of the C loop must come out as
a finding (so a run that finds nothing has really run under AddressSanitizer); every input the
fuzzer ever found (tests/data/fuzz) is replayed through the normal build. In CI a missing clang,
sanitizer runtime or atheris fails here (it never skips); elsewhere it skips, saying how to get them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_show import check_file
from verifier.wire import show

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "fuzz" / "run.py"
REGRESSIONS = sorted((Path(__file__).parent / "data" / "fuzz").glob("*.pcap*"))
SECONDS = int(os.environ.get("FUZZ_TEST_SECONDS") or 40)


def fuzz(tmp_path: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(RUN), "--corpus", str(tmp_path / "corpus"), "--findings",
                           str(tmp_path / "findings"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode == 3:  # the environment: clang, Python's headers, atheris
        message = f"the fuzz run cannot start: {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the sanitizer build: make test installs clang and atheris)")
        pytest.skip(message)
    return done


def test_a_short_fuzz_run_of_the_sanitizer_build_finds_nothing(tmp_path):
    done = fuzz(tmp_path, "--seconds", str(SECONDS), timeout=SECONDS + 240)
    out = done.stdout
    assert done.returncode == 0, out[-6000:] + done.stderr[-2000:]
    assert "fuzz: the sanitizer build " in out and "-fsanitize=address,undefined" in out
    seeds = int(re.search(r"fuzz: (\d+) seeds", out).group(1))
    summary = re.search(r"fuzz: (\d+) executions .* coverage (\d+) edges .* (\d+) findings?", out)
    assert summary, out[-3000:]
    executions, coverage, findings = map(int, summary.groups())
    assert seeds > 100 and executions >= seeds and coverage > 0 and findings == 0
    assert not any((tmp_path / "findings").iterdir())


def test_a_heap_overflow_in_the_c_loop_is_a_finding(tmp_path):
    # the same source with one out-of-bounds write at the top of Loop_next, built as the fuzzer's build
    sys.path.insert(0, str(ROOT / "fuzz"))
    from build_sanitized import SOURCE, build, target

    source = tmp_path / "_showloop.c"
    text = SOURCE.read_text()
    anchor = "static PyObject *Loop_next(Loop *self) {\n"
    assert text.count(anchor) == 1
    source.write_text(text.replace(anchor, anchor + "    { char *volatile p = malloc(4); p[4] = 1; free(p); }\n"))
    try:
        module = build(quiet=True, source=source, out=tmp_path / "bad" / target().name)
    except SystemExit as e:  # no clang: as the short run
        if os.environ.get("CI"):
            pytest.fail(f"the sanitizer build cannot be made: {e.code}")
        pytest.skip(f"the sanitizer build cannot be made: {e.code}")
    done = fuzz(tmp_path, "--seconds", "30", "--module", str(module), timeout=240)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "heap-buffer-overflow" in done.stdout and "fuzz: FINDING" in done.stdout
    assert [p.name[:6] for p in (tmp_path / "findings").iterdir()] == ["crash-"]
    assert "1 finding" in done.stdout and "replay it with full stacks" in done.stdout


def test_zeek_timers_fire_once_each_however_long_the_gap(monkeypatch):
    # the fuzzer's first finding: one frame stamped 1971 among frames of 2026 made wire.zeek fire
    # its self-rescheduling expire timer once per tcp_session_timer interval of the 56-year gap
    from verifier.wire import zeek
    from verifier.wire.show import CaptureReading

    fired = []

    def counted(rule):
        def fire(c, t):
            fired.append(t)
            assert len(fired) < 1000, "a timer fires again and again within one gap"
            return rule(c, t)
        return fire

    for kind, rule in list(zeek.TIMER_RULES.items()):
        monkeypatch.setitem(zeek.TIMER_RULES, kind, counted(rule))
    data = (Path(__file__).parent / "data" / "fuzz" / "zeek-timers-after-a-time-jump.pcap").read_bytes()
    import io

    conns = list(CaptureReading(io.BytesIO(data)).connections())
    states = [zeek.zeek_state(c) for c in conns]
    assert states == ['SF', 'SF', 'OTH', 'SF'] and len(fired) < 10, (len(fired), states)


def test_the_fuzz_regressions_are_there():
    # tests/data/NOTICE names each; tests/test_show.py replays them among all captures too
    notice = (Path(__file__).parent / "data" / "NOTICE").read_text()
    for path in REGRESSIONS:
        assert path.name in notice, f"{path.name} has no provenance line in tests/data/NOTICE"


def test_fuzz_regressions_read_the_same_on_both_paths_and_end_cleanly():
    # one test, not one per file: an empty folder must not be a skip (CI fails on skips)
    for path in REGRESSIONS:
        assert check_file(path) == [], path.name
        done = subprocess.run([sys.executable, "-m", "verifier", "show", "--json", str(path)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode in (0, 2) and "Traceback" not in done.stderr, (path.name, done.stderr)
        assert len(done.stderr.strip().splitlines()) <= 1 + (show._showloop is None), (path.name, done.stderr)
