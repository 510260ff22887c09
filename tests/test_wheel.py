"""`make wheel`'s binary wheel: built here, installed into a fresh venv without a compiler, it runs
the compiled loop and shows what the checkout shows; and .github/workflows/wheels.yml, which builds
the Linux, macOS and Windows wheels with cibuildwheel, passes actionlint."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from test_workflow import actionlint

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"
CAPTURES = [DATA / "analysis" / "keepalive.pcap", DATA / "loopback" / "linux-lo-scapy-sniff-doubled.pcap",
            DATA / "foreign" / "macos-lo0-ipv6-fin.pcap", DATA / "zeek" / "traces" / "tcp" / "retransmit-fast009.pcap"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (built,) = out.glob("verifier-*.whl")
    return built


def test_the_wheel_is_binary_and_carries_the_compiled_loop(wheel):
    # a py3-none-any wheel would mean setup.py's optional extension was not built into it
    assert "-none-any" not in wheel.name and "-cp3" in wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("verifier/wire/_showloop.") and n.endswith((".so", ".pyd")) for n in names), names


def test_the_wheel_installs_without_a_compiler_and_runs_the_compiled_loop(wheel, tmp_path):
    fresh = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, timeout=120)
    python = fresh / "bin" / "python"
    # no compiler in reach: PATH holds only the fresh venv, CC/CXX fail; installing from the wheel,
    # offline, with no build step (pip runs from this venv, installing into the fresh one)
    no_compiler = {"PATH": str(fresh / "bin"), "CC": "/bin/false", "CXX": "/bin/false", "HOME": str(tmp_path),
                   "LANG": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-index", "--no-build-isolation", str(wheel)], capture_output=True, text=True,
                          timeout=120, env={**no_compiler, "PATH": no_compiler["PATH"] + ":" + str(Path(sys.executable).parent)})
    assert done.returncode == 0, done.stderr[-3000:]
    site = subprocess.run([str(python), "-I", "-c", "import verifier.wire._showloop as m, verifier.wire.show as s; "
                           "print(m.__file__); print(s._showloop is m)"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=no_compiler)
    assert site.returncode == 0, site.stderr
    where, same = site.stdout.split()
    assert Path(where).is_relative_to(fresh) and same == "True"  # from the installed wheel, not the checkout
    for capture in CAPTURES:
        theirs = subprocess.run([str(fresh / "bin" / "verifier"), "show", "--json", str(capture)], capture_output=True,
                                text=True, timeout=60, cwd=tmp_path, env=no_compiler)
        ours = subprocess.run([sys.executable, "-m", "verifier", "show", "--json", str(capture)], capture_output=True,
                              text=True, timeout=60, cwd=ROOT)
        assert theirs.returncode == 0 == ours.returncode, theirs.stderr
        assert "slow path" not in theirs.stderr
        assert theirs.stdout == ours.stdout and theirs.stderr == ours.stderr, capture.name


def test_the_wheels_workflow_passes_actionlint():
    done = subprocess.run([actionlint(), str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_wheels_workflow_builds_three_oses_with_cibuildwheel_and_tests_each_wheel():
    import tomllib

    text = WORKFLOW.read_text()
    for needle in ("ubuntu-latest", "macos-latest", "windows-latest", "pypa/cibuildwheel@", "upload-artifact"):
        assert needle in text
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    commands = config["test-command"]
    assert any("import verifier.wire._showloop" in c for c in commands)  # a wheel without the loop fails
    assert any("tests/test_show.py" in c for c in commands)  # its texts pinned to the reference path
