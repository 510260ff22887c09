"""Builds the fuzzer's seed corpus: every capture of tests/data (cut to MAX_LEN) plus generated ones.

tests/data holds real Linux/macOS/Windows/FreeBSD captures, the pcapng variants, malformed files,
Zeek's traces, encapsulations and the fuzz regressions (tests/data/fuzz); the generated seeds
are tests/test_show.py's random captures (every link type the compiled loop reads itself, copies,
reused 4-tuples, options, time jumps), which reach the loop's edges in few bytes.

    python fuzz/seed_corpus.py OUT_DIR      # prints how many seeds it wrote"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
MAX_LEN = 4096  # libFuzzer's -max_len for the run: bigger seeds are cut (a cut capture is a capture)
GENERATED = 40


def seeds() -> list[bytes]:
    files = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".bin"))
    out = [p.read_bytes()[:MAX_LEN] for p in files]
    sys.path.insert(0, str(ROOT / "tests"))
    from test_show import random_capture

    rng = random.Random(13)
    out += [random_capture(rng)[:MAX_LEN] for _ in range(GENERATED)]
    return out


def write(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for data in seeds():
        path = out_dir / hashlib.sha1(data).hexdigest()  # libFuzzer's own naming: no duplicates
        if not path.exists():
            path.write_bytes(data)
            written += 1
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python fuzz/seed_corpus.py OUT_DIR")
    print(write(Path(sys.argv[1])))
