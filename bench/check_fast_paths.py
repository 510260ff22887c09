"""Check the fast paths of `verifier show` against the plain ones on big captures too.

    .venv/bin/python bench/check_fast_paths.py [EXTRA.pcap ...]

The checks live in tests/test_show.py (where `make test` runs them on every capture in tests/data
and on random captures); this runs them on the files named, e.g. bench/data/*.pcap, before
`make bench` times anything. Exit 1 on the first difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_show import check_file  # noqa: E402


def main(argv: list[str]) -> int:
    bad = 0
    for path in map(Path, argv):
        for problem in check_file(path):
            print(f"DIFFERS {path}: {problem}")
            bad += 1
    print(f"fast paths: {len(argv)} captures: {'no difference' if not bad else f'{bad} differences'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
