"""Runs the coverage-guided fuzzer (atheris) on the sanitizer build of show's C loop and reports it.

`make fuzz` runs it: it builds fuzz/build/_showloop*.so (fuzz/build_sanitized.py), writes the seed
corpus (fuzz/seed_corpus.py: every capture of tests/data and generated ones), runs
fuzz/show_target.py under atheris's ASan runtime for --seconds, and prints which build it fuzzed,
executions, coverage, corpus and findings. The corpus grows in fuzz/build/corpus across runs.

    python fuzz/run.py [--seconds N] [--corpus DIR] [--findings DIR] [--keep-going] [--log FILE]

Exit 0: no finding; 1: a finding (its input is saved, its report printed, with the line that
replays it: copy the input to tests/data/fuzz/ and fix it); 3: clang, Python's headers or atheris
missing (one line saying how to get them)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
BUILD = FUZZ / "build"
sys.path.insert(0, str(FUZZ))
from seed_corpus import MAX_LEN  # noqa: E402

# malloc_context_size=0 and a small quarantine: with Python, recording a stack per malloc made
# the run 15x slower (9 against 132 executions a second) and its RSS 1.1 GB; a finding is
# replayed with full stacks (REPLAY_ASAN_OPTIONS)
ASAN_OPTIONS = "detect_leaks=0:malloc_context_size=0:quarantine_size_mb=64:allocator_may_return_null=1"
REPLAY_ASAN_OPTIONS = "detect_leaks=0:allocator_may_return_null=1"
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1"
FINDING_PREFIXES = ("crash-", "leak-", "timeout-", "oom-", "slow-unit-")
REPORT_MARKS = ("runtime error:", "==ERROR:", "=== Uncaught Python exception", "ALARM:", "==WARNING:")
TIMEOUT = 10  # seconds one input may take: more is a finding (show's time stays bounded)
RSS_LIMIT_MB = 2048


def environment() -> dict[str, str]:
    """LD_PRELOAD of atheris's ASan+libFuzzer runtime, the sanitizer options; exit 3 without atheris."""
    try:
        import atheris
    except ImportError:
        raise SystemExit("atheris is not installed: pip install -e '.[fuzz]' (make fuzz installs it)")
    runtime = Path(atheris.path()) / "asan_with_fuzzer.so"
    if not runtime.exists():
        raise SystemExit(f"atheris {atheris.__file__} has no {runtime.name}: install atheris's manylinux wheel")
    return {**os.environ, "LD_PRELOAD": str(runtime), "ASAN_OPTIONS": ASAN_OPTIONS, "UBSAN_OPTIONS": UBSAN_OPTIONS,
            "PYTHONUNBUFFERED": "1"}


def last(pattern: str, text: str, default: str = "?") -> str:
    found = re.findall(pattern, text)
    return found[-1] if found else default


def fuzz(seconds: int, corpus: Path, findings: Path, module: str | None = None, log: Path | None = None) -> int:
    from build_sanitized import build
    from seed_corpus import write

    env = environment()
    if module:  # a build given by the caller (tests inject a known bug into one)
        env["VERIFIER_FUZZ_MODULE"] = module
    else:
        module = str(build())
    seeds = corpus.with_name(corpus.name + "-seeds")  # beside the corpus: runs on other corpora do not share it
    shutil.rmtree(seeds, ignore_errors=True)
    count = write(seeds)
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    before = set(findings.iterdir())
    print(f"fuzz: the sanitizer build {module} (clang -fsanitize=address,undefined,fuzzer-no-link)\n"
          f"fuzz: {count} seeds from tests/data and generated captures, corpus {corpus}, {seconds} s", flush=True)
    cmd = [sys.executable, str(FUZZ / "show_target.py"), str(corpus), str(seeds), f"-max_total_time={seconds}",
           f"-max_len={MAX_LEN}", f"-timeout={TIMEOUT}", f"-rss_limit_mb={RSS_LIMIT_MB}", "-print_final_stats=1",
           f"-artifact_prefix={findings}/", "-print_pcs=0", f"-dict={FUZZ / 'pcap.dict'}"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", cwd=ROOT)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(("#", "fuzzing ")) and ("pulse" in line or "INITED" in line or "DONE" in line
                                                   or line.startswith("fuzzing ")):
            print("  " + line.rstrip(), flush=True)
    code = proc.wait()
    elapsed = time.monotonic() - started
    output = "".join(lines)
    if log:
        log.write_text(output)
    new = sorted(p for p in set(findings.iterdir()) - before if p.name.startswith(FINDING_PREFIXES))
    execs = last(r"stat::number_of_executed_units: (\d+)", output)
    rate = last(r"stat::average_exec_per_sec:\s+(\d+)", output)
    cov, ft = last(r" cov: (\d+)", output), last(r" ft: (\d+)", output)
    corp = last(r" corp: (\d+)/", output)
    rss = last(r"stat::peak_rss_mb:\s+(\d+)", output)
    print(f"fuzz: {execs} executions in {elapsed:.0f} s ({rate}/s), coverage {cov} edges ({ft} features: the C loop's "
          f"and verifier.wire's Python), corpus {corp} inputs, peak RSS {rss} MB, {len(new)} finding{'s' * (len(new) != 1)}",
          flush=True)
    if not new and code == 0:
        print(f"fuzz: the C loop's coverage by the corpus and seeds: {c_coverage(cmd[:2], [corpus, seeds], env)}",
              flush=True)
    if new or code != 0:
        # from the first line of a sanitizer's, libFuzzer's or Python's report
        starts = [i for i in (output.find(m) for m in REPORT_MARKS) if i >= 0]
        report = output[output.rfind("\n", 0, min(starts)) + 1:] if starts else output[-4000:]
        lines = report.splitlines()
        if len(lines) > 60:  # the report's head (what and where), then its end (SUMMARY, stats)
            lines = lines[:40] + [f"  ... ({len(lines) - 55} lines: the whole output with --log)"] + lines[-15:]
        print("fuzz: FINDING" + (f" (the fuzzer exited {code})" if not new else "") + "\n" + "\n".join(lines), flush=True)
        for path in new:
            print(f"fuzz: input saved as {path}; replay it with full stacks:\n"
                  f"  LD_PRELOAD={env['LD_PRELOAD']} ASAN_OPTIONS={REPLAY_ASAN_OPTIONS} "
                  f"{sys.executable} fuzz/show_target.py {path}", flush=True)
        return 1
    return 0


def c_coverage(target: list[str], corpora: list[Path], env: dict[str, str]) -> str:
    """Edges of _showloop.c the corpus reaches: one pass over it with libFuzzer's -print_coverage
    (clang's counters are per edge of the C code; atheris's Python counters are not in that list)."""
    symbolizer = shutil.which("llvm-symbolizer")
    env = {**env, **({"ASAN_SYMBOLIZER_PATH": symbolizer} if symbolizer else {})}
    done = subprocess.run([*target, *map(str, corpora), "-runs=0", f"-max_len={MAX_LEN}", "-print_coverage=1"], env=env,
                          capture_output=True, text=True, errors="replace", cwd=ROOT)
    covered = total = funcs = funcs_hit = 0
    for m in re.finditer(r"^(UN)?COVERED_FUNC: hits: (\d+) edges: (\d+)/(\d+) (\S+) (\S+):\d+", done.stderr + done.stdout, re.M):
        if m.group(6).endswith("_showloop.c"):
            covered += int(m.group(3))
            total += int(m.group(4))
            funcs += 1
            funcs_hit += m.group(1) is None
    if not total:
        return "not measured (no symbolized coverage: llvm-symbolizer missing?)"
    return f"{covered} of {total} edges ({100 * covered / total:.0f} %), {funcs_hit} of {funcs} functions"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS") or 600))
    parser.add_argument("--corpus", type=Path, default=BUILD / "corpus")
    parser.add_argument("--findings", type=Path, default=BUILD / "findings")
    parser.add_argument("--module", help="fuzz this build of _showloop instead of fuzz/build's")
    parser.add_argument("--log", type=Path, help="write the fuzzer's whole output here")
    parser.add_argument("--keep-going", action="store_true",
                        help="after a finding, start again (the corpus kept) until --seconds have passed")
    args = parser.parse_args(argv)
    try:
        if not args.keep_going:
            return fuzz(args.seconds, args.corpus, args.findings, args.module, args.log)
        end, runs, found = time.monotonic() + args.seconds, 0, 0
        while (left := int(end - time.monotonic())) >= 10:
            runs += 1
            log = args.log and args.log.with_name(f"{args.log.name}.{runs}")
            found += fuzz(left, args.corpus, args.findings, args.module, log) == 1
        print(f"fuzz: {runs} run{'s' * (runs != 1)} in {args.seconds} s, {found} ended by a finding", flush=True)
        return 1 if found else 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(f"fuzz: {e.code}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
