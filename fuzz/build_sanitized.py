"""Builds the sanitizer build of show's compiled loop (verifier/wire/_showloop.c) for the fuzzer.

clang, -fsanitize=address,undefined (every UB check fatal) and fuzzer-no-link (libFuzzer's
coverage counters, so atheris sees which branches of the C loop an input reaches), into
fuzz/build/. It is loaded by fuzz/show_target.py in place of the ordinary build, under
atheris's ASan runtime (LD_PRELOAD of asan_with_fuzzer.so: fuzz/run.py sets it up).

    python fuzz/build_sanitized.py          # prints the path of the built module

Exit 3 (the project's environment code) in one line when clang or Python's headers are missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "verifier" / "wire" / "_showloop.c"
OUT_DIR = ROOT / "fuzz" / "build"
# recorded beside the build (.flags): a change of flags or compiler, or a newer source, rebuilds it
FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-std=c11", "-ffp-contract=off",
         "-fsanitize=address,undefined,fuzzer-no-link", "-fno-sanitize-recover=all",
         "-shared", "-fPIC"]


def target() -> Path:
    return OUT_DIR / ("_showloop" + sysconfig.get_config_var("EXT_SUFFIX"))


def build(quiet: bool = False, source: Path = SOURCE, out: Path | None = None) -> Path:
    """The path of the sanitizer build of `source`, rebuilt when the source or the flags changed."""
    clang = shutil.which("clang")
    if clang is None:
        raise SystemExit("clang is not on PATH: the sanitizer build needs it (Debian: apt-get install clang; make fuzz installs it)")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        raise SystemExit(f"Python's headers are not in {include} (Debian: apt-get install python3-dev)")
    out = out or target()
    stamp = out.with_suffix(".flags")
    wanted = " ".join([clang, *FLAGS])
    fresh = (out.exists() and stamp.exists() and stamp.read_text() == wanted
             and out.stat().st_mtime >= source.stat().st_mtime)
    if not fresh:
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [clang, *FLAGS, f"-I{include}", str(source), "-o", str(out)]
        if not quiet:
            print("building:", " ".join(cmd), file=sys.stderr)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the sanitizer build of {source.name} failed:\n{done.stderr}")
        stamp.write_text(wanted)
    return out


if __name__ == "__main__":
    try:
        print(build())
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            sys.exit(3)
        raise
