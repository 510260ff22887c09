"""The fuzz target: one input through the whole `show` path, under the sanitizer build of the C loop.

For each input, tests/test_show.py's check_bytes: the compiled loop's JSON, transcript and -v
transcript texts, stats, warnings and error against the reference object path (and decode's two
paths against each other). A difference is a finding (AssertionError), so is any exception but
the CaptureError a bad capture ends in, and so is anything AddressSanitizer or
UndefinedBehaviorSanitizer sees in the C loop. Python modules of verifier.wire are instrumented
by atheris (coverage of the reference path and the reader), the C loop by clang's
-fsanitize=fuzzer-no-link (fuzz/build_sanitized.py).

Run it through fuzz/run.py (`make fuzz`), which sets LD_PRELOAD and ASAN_OPTIONS; by hand:

    LD_PRELOAD=$(python -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))') \\
    ASAN_OPTIONS=detect_leaks=0 python fuzz/show_target.py CORPUS_DIR [libFuzzer flags]
    ... python fuzz/show_target.py CRASH_FILE     # replays one input

VERIFIER_FUZZ_MODULE=PATH loads that build of _showloop instead of fuzz/build's (tests use it)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "fuzz")]


def sanitizer_runtime() -> str | None:
    """The ASan runtime mapped into this process (LD_PRELOAD's), or None."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "asan" in line.rsplit("/", 1)[-1]:
                return line.split()[-1]
    return None


def load_sanitized() -> str:
    """Put the sanitizer build in sys.modules as verifier.wire._showloop, before show imports it."""
    path = os.environ.get("VERIFIER_FUZZ_MODULE")
    if not path:
        from build_sanitized import build

        path = str(build(quiet=True))
    spec = importlib.util.spec_from_file_location("verifier.wire._showloop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["verifier.wire._showloop"] = module
    return path


def main() -> None:
    runtime = sanitizer_runtime()
    if runtime is None:
        sys.exit("the ASan runtime is not loaded: run through fuzz/run.py (make fuzz), or LD_PRELOAD atheris's asan_with_fuzzer.so")
    import atheris

    module = load_sanitized()
    with atheris.instrument_imports(include=os.environ.get("VERIFIER_FUZZ_INSTRUMENT", "verifier").split(",")):
        from verifier.wire import analysis, capture, classify, connections, decode, show, transcript, zeek  # noqa: F401
    assert show._showloop is sys.modules["verifier.wire._showloop"] and show._showloop.__file__ == module
    from test_show import LOOPS, check_bytes

    assert len(LOOPS) == 3, "the compiled loop's three texts are not all checked"
    print(f"fuzzing the sanitizer build {module} (ASan+UBSan, runtime {runtime})", file=sys.stderr, flush=True)

    def one_input(data: bytes) -> None:
        problems = check_bytes(data)
        if problems:
            raise AssertionError("the compiled loop differs from the reference path: " + "; ".join(problems))

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
