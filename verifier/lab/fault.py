"""Faults a scenario program asks for at a point it chooses: the request channel, the kinds, and their rules in its namespace."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from verifier.lab.netns import TOOL_PACKAGES, Namespace, tool_path

# The program's side: `await fault(kind, options)` (verifier/lab/fault.mjs, copied beside the
# program as ./fault.mjs) connects to the unix socket named by VERIFIER_FAULT, writes one JSON
# line, and goes on when the lab's one-line JSON answer says the fault is in place.
CHANNEL_ENV = "VERIFIER_FAULT"
SOCKET_NAME = "fault.sock"
REQUEST_MAX = 4096  # bytes of one request line

# Kinds. nftables rules in the namespace's input hook (so the capture still sees every packet
# once, when it is sent; a dropped one never arrives): blackhole, reset, drop. The userspace
# relay (verifier.lab.relay; this kernel has no netem and no NFQUEUE): delay, reorder.
NFT_KINDS = ("blackhole", "reset", "drop")
RELAY_KINDS = ("delay", "reorder")
KINDS = NFT_KINDS + RELAY_KINDS + ("clear",)
DIRECTIONS = ("to", "from", "both")
DEFAULT_DIRECTION = {"blackhole": "both", "reset": "to", "drop": "to", "delay": "from", "reorder": "from"}
MAX_DELAY_MS = 10_000
MAX_EVERY = 1_000_000
NFT_TABLE = "verifier_fault"  # its own table: a scenario's `nft:` header keeps its table `verifier`
OPTION_KEYS = {"kind", "port", "address", "direction", "ms", "every"}


class FaultError(ValueError):
    """A request the lab cannot apply; its message goes back to the program, which then fails."""


@dataclass(frozen=True)
class Fault:
    """One fault: which packets (TCP to and/or from `port`, optionally only at `address`), and what happens to them.

    `direction` "to": packets whose destination is port (and address); "from": packets sent from
    them; "both". `every` N: the Nth, 2Nth ... matching packet (1: every one). `ms`: delay, or
    for reorder the longest a held packet waits for the one it is swapped with."""

    kind: str
    port: int
    direction: str
    address: str | None = None
    ms: int = 0
    every: int = 1

    def matches(self, src: str, sport: int, dst: str, dport: int) -> bool:
        """Whether a TCP packet src:sport > dst:dport is one this fault selects."""
        to = dport == self.port and (self.address is None or _same(dst, self.address))
        frm = sport == self.port and (self.address is None or _same(src, self.address))
        return (to and self.direction in ("to", "both")) or (frm and self.direction in ("from", "both"))


def _same(a: str, b: str) -> bool:
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)


def parse_request(line: bytes | str, default_port: int) -> Fault | None:
    """A fault from one request line (JSON); None for `clear`. FaultError saying what is wrong."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise FaultError("a fault request is one JSON object on one line") from None
    if not isinstance(request, dict):
        raise FaultError("a fault request is one JSON object on one line")
    unknown = sorted(set(request) - OPTION_KEYS)
    if unknown:
        raise FaultError(f"unknown fault option {unknown[0]!r}: one of {', '.join(sorted(OPTION_KEYS - {'kind'}))}")
    kind = request.get("kind")
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}: one of {', '.join(KINDS)}")
    if kind == "clear":
        return None
    port = request.get("port", default_port)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise FaultError(f"port must be a TCP port (1-65535), got {port!r}")
    address = request.get("address")
    if address is not None:
        try:
            address = str(ipaddress.ip_address(address))
        except (ValueError, TypeError):
            raise FaultError(f"address must be an IP address (::1, 127.0.0.1), got {address!r}") from None
    direction = request.get("direction", DEFAULT_DIRECTION[kind])
    if direction not in DIRECTIONS:
        raise FaultError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if kind == "reset" and direction != "to":
        raise FaultError("reset answers packets sent to the port: direction 'to' only")
    ms = request.get("ms", 0 if kind != "reorder" else 50)
    if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= MAX_DELAY_MS:
        raise FaultError(f"ms must be whole milliseconds, 0 to {MAX_DELAY_MS}, got {ms!r}")
    if kind == "delay" and "ms" not in request:
        raise FaultError("delay needs ms (the delay in milliseconds)")
    every = request.get("every", 2 if kind == "reorder" else 1)
    if not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= MAX_EVERY:
        raise FaultError(f"every must be a whole number of packets, 1 to {MAX_EVERY}, got {every!r}")
    if kind in ("blackhole", "reset") and "every" in request:
        raise FaultError(f"{kind} takes every packet: use drop with every for a fraction")
    if kind == "reorder" and every < 2:
        raise FaultError("reorder holds every Nth packet back past the next: every must be at least 2")
    return Fault(kind, port, direction, address, ms, every)


def match_expressions(fault: Fault) -> list[str]:
    """nft match expressions for the fault's packets, one per direction it covers."""
    out = []
    family = None if fault.address is None else ("ip6" if ":" in fault.address else "ip")
    for direction, port_key, addr_key in (("to", "dport", "daddr"), ("from", "sport", "saddr")):
        if fault.direction not in (direction, "both"):
            continue
        address = f"{family} {addr_key} {fault.address} " if family else ""
        out.append(f"{address}tcp {port_key} {fault.port}")
    return out


def nft_rules(fault: Fault) -> list[str]:
    """The nft rules (for the input chain of table inet verifier_fault) of a blackhole, reset or drop."""
    action = {"blackhole": "drop", "reset": "reject with tcp reset", "drop": "drop"}[fault.kind]
    sample = f"numgen inc mod {fault.every} {fault.every - 1} " if fault.every > 1 else ""
    return [f"{match} {sample}{action}" for match in match_expressions(fault)]


def nft_table(rules: list[str]) -> str:
    """The whole `inet verifier_fault` table (replaced as one transaction at each fault)."""
    body = "".join(f"    {r}\n" for r in rules)
    return (f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n"
            f"table inet {NFT_TABLE} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n"
            f"{body}  }}\n}}\n")


def apply_nft(ns: Namespace, ruleset: str) -> None:
    """Load a ruleset inside `ns` (FaultError with nft's first line if it refuses)."""
    nft = tool_path("nft", TOOL_PACKAGES["nft"])
    with ns.entered():
        done = subprocess.run([nft, "-f", "-"], input=ruleset, capture_output=True, text=True)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
        raise FaultError(f"nftables refused the fault: {first}")


class FaultChannel:
    """The lab's end of the channel for one run: a unix socket in the run's work folder, served by
    a thread that applies each request to the namespace before answering. A `with` block: on
    exit (also after Ctrl-C) the thread, the socket and any relay are stopped; the rules go with
    the namespace."""

    def __init__(self, ns: Namespace, work: Path, user: tuple[int, int], default_port: int):
        self.ns = ns
        self.path = work / SOCKET_NAME
        self.user = user
        self.default_port = default_port
        self.faults: list[Fault] = []  # applied, in order
        self.log: list[str] = []  # one line per request: what was applied, or why not
        self.relay = None
        self._server: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1  # close() wakes the serving thread at once (no polling)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._lock = threading.Lock()

    def __enter__(self) -> FaultChannel:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def env(self) -> dict[str, str]:
        return {CHANNEL_ENV: str(self.path)}

    def start(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(self.path))
            os.chown(self.path, *self.user)
            os.chmod(self.path, 0o600)
            server.listen(8)
        except BaseException:
            server.close()
            raise
        self._server = server
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._serve, name=f"fault-{self.ns.name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping:
            ready, _, _ = select.select([self._server, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    line = _read_line(conn)
                    answer = self.handle(line)
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    continue

    def handle(self, line: bytes) -> dict:
        """Apply one request; the answer the program gets ({"ok": true} or {"error": "..."})."""
        with self._lock:
            if self._stopping:
                return {"error": "the run is ending"}
            try:
                fault = parse_request(line, self.default_port)
                self._apply(fault)
            except FaultError as e:
                self.log.append(f"refused: {e}")
                return {"error": str(e)}
            self.log.append("clear" if fault is None else f"applied: {fault}")
            return {"ok": True}

    def _apply(self, fault: Fault | None) -> None:
        faults = [] if fault is None else [*self.faults, fault]
        nft = [f for f in faults if f.kind in NFT_KINDS]
        relayed = [f for f in faults if f.kind in RELAY_KINDS]
        if relayed and self.relay is None:
            from verifier.lab.relay import Relay

            self.relay = Relay(self.ns)
            try:
                self.relay.start()
            except OSError as e:
                self.relay.close()
                self.relay = None
                raise FaultError(f"cannot start the relay for {fault.kind}: {e.strerror or e}") from None
        # the relay's rules first (packets it may be given), then, in one nft transaction, its
        # forwarding from lo's egress and the drops on input
        ruleset = nft_table([r for f in nft for r in nft_rules(f)])
        if self.relay is not None:
            from verifier.lab.relay import nft_relay_table

            self.relay.set_rules(relayed)
            ruleset = nft_relay_table(relayed) + ruleset
        apply_nft(self.ns, ruleset)
        self.faults = faults

    def problems(self) -> list[str]:
        """What went wrong in the lab's part of the faults (the relay thread failed), for the run's report."""
        if self.relay is not None and self.relay.error is not None:
            return [f"the fault relay failed: {self.relay.error}"]
        return []

    def close(self) -> None:
        """Stop serving and stop the relay (what it still held is dropped: lost in the network). Idempotent."""
        self._stopping = True
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        with self._lock:
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join()
            self._thread = None
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._wake_r, self._wake_w = -1, -1
            if self._server is not None:
                self._server.close()
                self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            if self.relay is not None:
                self.relay.close()


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(REQUEST_MAX)
        if not chunk:
            break
        data += chunk
        if len(data) > REQUEST_MAX:
            return b"{}" + b"x"  # not JSON: refused with the usual message
    return data.split(b"\n", 1)[0]
