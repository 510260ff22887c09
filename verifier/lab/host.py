"""The lab without namespaces (macOS, Windows): the host's loopback interface with a port filter.

Linux runs each scenario in its own namespace (netns.Namespace). Elsewhere there is only the
host's stack: the capture listens on the loopback interface (lo0, the Npcap loopback adapter)
with a BPF filter on the scenario's ports and the marker's UDP port, and the program runs
directly. `Host` stands where a Namespace stands (entered(), command(), processes()), so the
capture backends and the runner take either.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Iterator, Sequence

# The loopback capture interface per OS family (tcpdump/dumpcap -i NAME).
LOOPBACK_INTERFACE = {"linux": "lo", "darwin": "lo0", "windows": r"\Device\NPF_Loopback"}
# The capture tool per OS family: Npcap installs dumpcap with Wireshark; tcpdump elsewhere.
CAPTURE_TOOL = {"linux": "tcpdump", "darwin": "tcpdump", "windows": "dumpcap"}


def os_family(platform: str | None = None) -> str:
    name = platform or sys.platform
    if name.startswith("linux"):
        return "linux"
    if name == "darwin":
        return "darwin"
    if name.startswith(("win32", "cygwin", "msys")):
        return "windows"
    return "any"


def capture_filter(ports: Sequence[int], marker_port: int | None = None) -> str:
    """A BPF filter for the scenario's TCP ports (and the capture marker's UDP port)."""
    if not ports:
        raise ValueError("a host capture needs the scenario's ports: the host's loopback carries other traffic")
    tcp = " or ".join(f"tcp port {int(p)}" for p in ports)
    return f"({tcp}) or (udp port {int(marker_port)})" if marker_port is not None else tcp


def capture_argv(family: str, tool: str, interface: str, path: str, bpf: str | None) -> list[str]:
    """The capture command: every packet to the file as it arrives, nanosecond stamps, no promiscuity."""
    if family == "windows":
        # dumpcap: -P writes classic pcap (what the follower reads), -q no packet count lines
        argv = [tool, "-i", interface, "-w", path, "-P", "-q", "-s", "262144"]
        return argv + (["-f", bpf] if bpf else [])
    argv = [tool, "-i", interface, "-w", path, "-n", "-p", "-s", "0", "--immediate-mode", "-U",
            "--time-stamp-precision=nano", "-B", "8192"]
    return argv + ([bpf] if bpf else [])


_TCPDUMP_DROPS = re.compile(r"(\d+) packets? dropped by kernel")
_DUMPCAP_DROPS = re.compile(r"Packets received/dropped on interface .*?: \d+/(\d+)")


def drops_from_report(tool: str, text: str) -> int | None:
    """Kernel drops from what the capture tool printed when it stopped; None if it did not say."""
    found = (_DUMPCAP_DROPS if os.path.basename(tool).startswith("dumpcap") else _TCPDUMP_DROPS).search(text)
    return int(found.group(1)) if found else None


def run_as(family: str, argv: Sequence[str], user: tuple[int, int] | None) -> list[str]:
    """The program's argv, dropping root to `user` where the OS allows (sudo on macOS)."""
    if user is None or family == "windows":
        return list(argv)  # Windows: Npcap needs no administrator for capture; the program runs as the caller
    uid, gid = user
    return ["sudo", "-n", "-u", f"#{uid}", "-g", f"#{gid}", "--", *argv]


class Host:
    """The host's own network stack standing in for a Namespace (no isolation, a port filter)."""

    def __init__(self, family: str | None = None):
        self.family = family or os_family()
        self.name = f"host-{self.family}"
        self.interface = LOOPBACK_INTERFACE.get(self.family, "lo")

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    @contextlib.contextmanager
    def entered(self) -> Iterator[Host]:
        yield self  # already there: sockets and tools use the host's stack

    def command(self, argv: Sequence[str], *, user: tuple[int, int] | None = None) -> list[str]:
        return run_as(self.family, argv, user)

    def processes(self) -> list[int]:
        return []
