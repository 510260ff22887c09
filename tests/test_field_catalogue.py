"""The field catalogue (issue 12, docs/field-catalogue.md): each scenario reproduces a real report.

Checked here without a lab (the lab tests run every built-in scenario): each program's header
names it, says it has no seed row and cites its report as owner/repo#N; the program parses
(`node --check`); its expectation parses for every OS family; the timers the catalogue's
wall-time budget depends on stay small; the probe's HTTP helpers are exported.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from verifier.expectation import FAMILIES
from verifier.expectation import parse as parse_expectation
from verifier.scenario import load

SCENARIOS = Path(__file__).resolve().parent.parent / "verifier" / "scenarios"
DOC = Path(__file__).resolve().parent.parent / "docs" / "field-catalogue.md"

FIELD = (
    "keepalive-timeout-idle", "keepalive-race", "reuse-after-fin", "server-close", "headers-timeout",
    "allow-half-open", "data-fin-before-reader", "end-then-echo", "set-timeout", "process-exit",
    "http2-goaway", "backlog-overflow",
)

SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+#[1-9][0-9]*$")
NODE = shutil.which("node")


@pytest.fixture(params=FIELD)
def scenario(request):
    return load(SCENARIOS / f"{request.param}.mjs")


def test_header_names_the_file_and_cites_a_report(scenario):
    first = scenario.program.read_text().splitlines()[0]
    assert first.startswith(f"// {scenario.name}: ")
    assert scenario.description and not scenario.warnings
    assert scenario.seed == "none (field report)"
    assert SOURCE.match(scenario.source), scenario.source


def test_expectation_parses_for_every_os_family(scenario):
    assert scenario.expectation, f"{scenario.name} has no expectation"
    for family in FAMILIES:
        exp = parse_expectation(scenario.expectation, family, scenario.expectation_source)
        assert exp.steps or family != "linux"


@pytest.mark.skipif(NODE is None, reason="node is not on PATH")
def test_program_parses(scenario):
    run = subprocess.run([NODE, "--check", str(scenario.program)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr


def test_timeout_is_small(scenario):
    # the whole catalogue must stay within 15 s wall at -j 2: no scenario may wait long
    assert scenario.timeout <= 15


def test_backlog_overflow_sets_its_namespace_sysctls():
    s = load(SCENARIOS / "backlog-overflow.mjs")
    assert ("net.core.somaxconn", "1") in s.sysctls
    assert ("net.ipv4.tcp_abort_on_overflow", "1") in s.sysctls
    assert s.syn_rto == pytest.approx(0.1)


def test_catalogue_page_has_a_row_per_scenario():
    text = DOC.read_text()
    for name in FIELD:
        assert re.search(rf"^\| \[?`?{re.escape(name)}`?", text, re.M), f"no row for {name} in {DOC.name}"
        source = load(SCENARIOS / f"{name}.mjs").source
        assert source in text, f"{name}'s source {source} is not cited in {DOC.name}"


@pytest.mark.skipif(NODE is None, reason="node is not on PATH")
def test_probe_exports_the_http_helpers_and_keeps_the_others():
    names = ("accept blockLoop call connect done endOnEnd env events fail familyOptions invoke listen log once "
             "supports watch watchAgent watchHttpServer watchRequest watchServer").split()
    code = f"import(process.argv[1]).then((m) => console.log(Object.keys(m).sort().join(' ')))"
    run = subprocess.run([NODE, "-e", code, str(SCENARIOS / "probe.mjs")], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert set(names) <= set(run.stdout.split())
