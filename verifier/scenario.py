"""What a scenario is: its program's header (description, seed, nft, sysctl, syn-rto) and its expectation text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

BUILTIN_DIR = Path(__file__).parent / "scenarios"
PROBE = BUILTIN_DIR / "probe.mjs"
PROGRAM_SUFFIX = ".mjs"
NOT_SCENARIOS = {"probe.mjs", "fault.mjs"}  # the modules scenarios import
HARNESS_MODULES = {"./" + name for name in NOT_SCENARIOS}  # laid beside every program by the lab

# Default addresses/ports: every scenario has its own namespace, so fixed ports cannot collide
# and transcripts stay the same from run to run.
DEFAULT_ENV = {"VERIFIER_HOST": "localhost", "VERIFIER_PORT": "5000", "VERIFIER_PORT_CLOSED": "5001"}

KNOWN_KEYS = ("seed", "source", "nft", "sysctl", "timeout", "syn-rto", "floor")
_HEADER = re.compile(r"^//\s*(?P<key>[A-Za-z][\w-]*)\s*:\s*(?P<value>.*?)\s*$")
_EXPECT_BLOCK = re.compile(r"/\*\s*expect\s*\n(?P<body>.*?)\*/", re.S)
# Module specifiers a program imports: static `import ... from "x"`, `import "x"`, `export ... from
# "x"`, and `import("x")` with a literal; `import(` with anything else cannot be known.
_SPECIFIER = re.compile(
    r"""(?:\bimport\s*(?:[\w$*{}\s,]+?\s*from\s*)?|\bexport\s*[\w$*{}\s,]*?\s*from\s*|\bimport\s*\(\s*)(["'])(?P<spec>[^"'\n]+)\1""")
_DYNAMIC_IMPORT = re.compile(r"\bimport\s*\(\s*(?![\"'\s])")
# Node's built-in modules a scenario may import without the node: prefix
NODE_BUILTINS = frozenset({
    "assert", "async_hooks", "buffer", "child_process", "crypto", "dgram", "dns", "events", "fs", "fs/promises",
    "http", "http2", "https", "net", "os", "path", "perf_hooks", "process", "readline", "stream", "timers",
    "timers/promises", "tls", "url", "util", "worker_threads", "zlib",
})
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s)")
SYN_RTO_MIN_S = 0.001  # a jiffy is at least 1 ms where HZ <= 1000; the lab checks the kernel's own HZ
SYN_RTO_MAX_S = 120.0  # TCP_RTO_MAX: the kernel caps any RTO there


@dataclass(frozen=True)
class Scenario:
    name: str
    program: Path
    description: str
    seed: str = ""
    source: str = ""  # the real report it reproduces (owner/repo#N)
    nft: tuple[str, ...] = ()  # nftables rulesets to load in the namespace ($VARS substituted)
    sysctls: tuple[tuple[str, str], ...] = ()
    timeout: float = 20.0
    syn_rto: float | None = None  # seconds: the initial SYN RTO of the program's sockets (Linux: lab.synrto)
    floor: float = 0.0  # seconds the program's own timers take at least (`floor:`): what no harness can beat
    expectation: str | None = None  # the expectation's text
    expectation_source: str = ""  # where it came from (file name), for messages
    expectation_offset: int = 0  # line offset of an embedded block inside the program
    env: dict = field(default_factory=lambda: dict(DEFAULT_ENV))
    self_contained: bool = True  # imports nothing but ./probe.mjs and Node's built-ins (runs from a copy too)
    warnings: tuple[str, ...] = ()  # said before the run (a header name that is not the file's, ...)

    @property
    def ports(self) -> tuple[int, ...]:
        """The fixed ports the harness gives the program (VERIFIER_PORT, VERIFIER_PORT_CLOSED...)."""
        return tuple(sorted({int(v) for k, v in self.env.items() if k.startswith("VERIFIER_PORT")}))

    def missing_expectation(self) -> str:
        """What to say of a scenario without an expectation (it is refused before it runs)."""
        return (f"{self.program} has no expectation: write {self.name}.expect beside it (or a /* expect ... */ "
                f"block), or record one from a run with: verifier run {self.program} --accept")

    def substitute(self, text: str) -> str:
        for key in sorted(self.env, key=len, reverse=True):  # $VERIFIER_PORT_CLOSED before $VERIFIER_PORT
            text = text.replace("$" + key, self.env[key])
        return text


def parse_program(name: str, program: Path, text: str, expectation: str | None, expectation_source: str) -> Scenario:
    """A scenario from its program's text: leading `// key: value` comment lines are its header.

    The first header line is `// NAME: description`; then `seed:`, `source:` (the report it
    reproduces, owner/repo#N), `nft:` (repeatable),
    `sysctl: key=value` (repeatable), `timeout: seconds`, `syn-rto: 200ms` (or `0.2s`). The
    expectation is a NAME.expect file beside the program or a `/* expect ... */` block in the program."""
    description, seed, source, nft, sysctls, timeout, syn_rto, floor = "", "", "", [], [], 20.0, None, 0.0
    for n, line in enumerate(text.splitlines()):
        if not line.startswith("//"):
            if line.strip():
                break
            continue
        m = _HEADER.match(line)
        if not m:
            continue
        key, value = m["key"], m["value"]
        if n == 0 and (key == name or key not in KNOWN_KEYS):
            description = value  # a first line naming another name is warned about below
        elif key == "seed":
            seed = value
        elif key == "source":
            source = value
        elif key == "nft":
            nft.append(value)
        elif key == "sysctl":
            if "=" not in value:
                raise UsageError(f"{program}:{n + 1}: 'sysctl:' takes key=value, got {value!r}")
            k, v = value.split("=", 1)
            sysctls.append((k.strip(), v.strip()))
        elif key == "timeout":
            try:
                timeout = float(value)
            except ValueError:
                raise UsageError(f"{program}:{n + 1}: 'timeout:' takes seconds, got {value!r}") from None
        elif key == "floor":
            try:
                floor = parse_duration(value)
            except ValueError as e:
                raise UsageError(f"{program}:{n + 1}: 'floor:' {e}") from None
        elif key == "syn-rto":
            try:
                syn_rto = parse_syn_rto(value)
            except ValueError as e:
                raise UsageError(f"{program}:{n + 1}: 'syn-rto:' {e}") from None
    warnings = []
    first = _HEADER.match(text.splitlines()[0]) if text.strip() else None
    if first and first["key"] != name and first["key"] not in KNOWN_KEYS:
        warnings.append(f"{program}:1: the header names '{first['key']}' but the file is {name}{PROGRAM_SUFFIX}: "
                        f"the scenario is called {name} (write '// {name}: description')")
    offset = 0
    if expectation is None:
        block = _EXPECT_BLOCK.search(text)
        if block:
            expectation = block["body"]
            expectation_source = str(program)
            offset = text[: block.start("body")].count("\n")
    return Scenario(
        name=name, program=program, description=description or "(no description)", seed=seed, source=source,
        nft=tuple(nft), sysctls=tuple(sysctls), timeout=timeout, syn_rto=syn_rto, floor=floor, expectation=expectation,
        expectation_source=expectation_source, expectation_offset=offset,
        self_contained=self_contained(text), warnings=tuple(warnings),
    )


def self_contained(text: str) -> bool:
    """Whether a program imports nothing but the harness's modules (./probe.mjs, ./fault.mjs) and
    Node's built-ins (so a copy of it alone runs as well as the original)."""
    if _DYNAMIC_IMPORT.search(text):
        return False
    for m in _SPECIFIER.finditer(text):
        spec = m["spec"]
        if spec not in HARNESS_MODULES and not spec.startswith("node:") and spec not in NODE_BUILTINS:
            return False
    return True


def parse_duration(value: str) -> float:
    """`200ms` or `0.2s` in seconds; ValueError (saying what it takes) for anything else."""
    m = _DURATION.fullmatch(value.strip())
    if not m:
        raise ValueError(f"takes a duration like 200ms or 0.2s, got {value!r}")
    return float(m["number"]) / (1000 if m["unit"] == "ms" else 1)


def parse_syn_rto(value: str) -> float:
    """`200ms` or `0.2s` in seconds, within what the kernel can do; ValueError (saying what it takes)."""
    seconds = parse_duration(value)
    if not SYN_RTO_MIN_S <= seconds <= SYN_RTO_MAX_S:
        raise ValueError(f"{value.strip()} is out of range: at least 1 ms (a jiffy at HZ=1000), at most 120 s (TCP_RTO_MAX)")
    return seconds


def load(program: Path) -> Scenario:
    name = program.name[: -len(PROGRAM_SUFFIX)]
    try:
        text = program.read_text()
    except OSError as e:
        raise UsageError(f"{program}: cannot read scenario: {e.strerror}") from None
    expect_path = program.with_name(name + ".expect")
    expectation = expect_path.read_text() if expect_path.exists() else None
    return parse_program(name, program, text, expectation, str(expect_path))


def builtin() -> list[Scenario]:
    return [load(p) for p in sorted(BUILTIN_DIR.glob("*" + PROGRAM_SUFFIX)) if p.name not in NOT_SCENARIOS]


def resolve(names: list[str]) -> list[Scenario]:
    """Scenarios by built-in name, program path or folder of programs; all built-ins if none named."""
    if not names:
        return builtin()
    known = {s.name: s for s in builtin()}
    out: list[Scenario] = []
    for item in names:
        path = Path(item)
        if item in known and not path.exists():
            out.append(known[item])
        elif path.is_dir():
            found = [load(p) for p in sorted(path.glob("*" + PROGRAM_SUFFIX)) if p.name not in NOT_SCENARIOS]
            if not found:
                raise UsageError(f"{item}: no scenario programs (*.mjs) in this folder")
            out.extend(found)
        elif path.is_file():
            if not item.endswith(PROGRAM_SUFFIX):
                raise UsageError(f"{item}: a scenario is a {PROGRAM_SUFFIX} program")
            out.append(load(path))
        elif "/" in item or item.endswith(PROGRAM_SUFFIX) or item.startswith("."):
            raise UsageError(f"{item}: no such file or folder")
        else:
            raise UsageError(f"unknown scenario {item!r}; known: {', '.join(sorted(known))}")
    return out
