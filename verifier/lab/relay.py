"""Delay or reorder chosen packets of a namespace's loopback in userspace (no netem, no NFQUEUE here): nft takes them off lo, a thread puts them back."""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import itertools
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from verifier.lab.fault import Fault, match_expressions
from verifier.lab.netns import Namespace, _bring_up

# How it works. A `netdev` table on lo's egress hook (which runs before the packet taps, so no
# capture sees the packet there) forwards the chosen TCP packets to a TAP device, `vrelay0`.
# The relay thread reads each frame from the TAP, decides when it goes on (Schedule, pure), and
# sends it on lo through an AF_PACKET socket with mark RELAY_MARK, which the egress rule lets
# pass: lo then taps it (the capture sees it once, when it re-enters the wire) and receives it
# as any other packet. The TAP and its rules live in the scenario's namespace and go with it.
TAP_NAME = "vrelay0"
RELAY_MARK = 0x7672  # "vr": frames the relay re-injected
NFT_TABLE = "verifier_relay"
FRAME_MAX = 65536 + 14 + 64  # lo's MTU is 65536; its frames carry a 14-byte Ethernet header
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
SIOCSIFMTU = 0x8922
TAP_MTU = 65521  # a TUN/TAP device's largest (lo's GSO packets are re-segmented to it)
ETH_HEADER = 14
SO_MARK = getattr(socket, "SO_MARK", 36)


@dataclass(frozen=True)
class Packet:
    """The addresses and ports of a TCP frame (Ethernet + IPv4/IPv6 + TCP)."""

    src: str
    sport: int
    dst: str
    dport: int


def parse_frame(frame: bytes) -> Packet | None:
    """A TCP frame's addresses and ports, as lo carries it (a zero Ethernet header first); None for anything else."""
    if len(frame) < ETH_HEADER + 20:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = ETH_HEADER
    if ethertype == 0x0800 and frame[ip] >> 4 == 4 and frame[ip + 9] == 6:
        tcp = ip + (frame[ip] & 0x0F) * 4
        src, dst = socket.inet_ntop(socket.AF_INET, frame[ip + 12:ip + 16]), socket.inet_ntop(socket.AF_INET, frame[ip + 16:ip + 20])
    elif ethertype == 0x86DD and len(frame) >= ip + 40 and frame[ip] >> 4 == 6 and frame[ip + 6] == 6:
        tcp = ip + 40
        src, dst = socket.inet_ntop(socket.AF_INET6, frame[ip + 8:ip + 24]), socket.inet_ntop(socket.AF_INET6, frame[ip + 24:ip + 40])
    else:
        return None
    if len(frame) < tcp + 4:
        return None
    sport, dport = struct.unpack_from("!HH", frame, tcp)
    return Packet(src, sport, dst, dport)


def _ones_complement_sum(data: bytes) -> int:
    """RFC 1071's sum of 16-bit words: as a big number modulo 0xFFFF (2**16 is 1 modulo it), fast for 64 KiB."""
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    return 0xFFFF if total == 0 and any(data) else total


def with_tcp_checksum(frame: bytes) -> bytes:
    """The frame with its TCP checksum computed. lo leaves it to the 'hardware' (CHECKSUM_PARTIAL: only the
    pseudo-header's sum is there), and a frame sent again through a packet socket is checked for real."""
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = ETH_HEADER
    if ethertype == 0x0800:
        tcp = ip + (frame[ip] & 0x0F) * 4
        length = struct.unpack_from("!H", frame, ip + 2)[0] - (tcp - ip)
        pseudo = frame[ip + 12:ip + 20] + struct.pack("!HH", 6, length)
    else:
        tcp = ip + 40
        length = struct.unpack_from("!H", frame, ip + 4)[0]
        pseudo = frame[ip + 8:ip + 40] + struct.pack("!IxxxB", length, 6)
    segment = bytearray(frame[tcp:tcp + length])
    segment[16:18] = b"\0\0"
    checksum = ~_ones_complement_sum(pseudo + bytes(segment)) & 0xFFFF
    return frame[:tcp + 16] + struct.pack("!H", checksum) + frame[tcp + 18:]


@dataclass
class Schedule:
    """When each packet the relay is given goes on (pure: the time is an argument).

    The first rule that matches a packet decides: delay sends it `ms` later (order kept: the
    delay is the same for all); reorder holds every `every`th matching packet back until the next
    matching one has gone (then it follows at once), or until `ms` have passed without one.
    A packet no rule matches (a rule just removed) goes on at once."""

    rules: Sequence[Fault]
    counts: list[int] = field(default_factory=list)
    held: dict[int, tuple[float, bytes]] = field(default_factory=dict)  # rule index -> (deadline, frame)

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.rules)

    def arrive(self, packet: Packet | None, frame: bytes, now: float) -> list[tuple[float, bytes]]:
        """The (time to send, frame) pairs this arrival releases, in order."""
        index = next((i for i, r in enumerate(self.rules)
                      if packet is not None and r.matches(packet.src, packet.sport, packet.dst, packet.dport)), None)
        if index is None:
            return [(now, frame)]
        rule = self.rules[index]
        self.counts[index] += 1
        if rule.kind == "delay":
            return [(now + rule.ms / 1000, frame)]
        if index in self.held:  # reorder: this one overtakes the held one
            _, earlier = self.held.pop(index)
            return [(now, frame), (now, earlier)]
        if self.counts[index] % rule.every == 0:
            self.held[index] = (now + rule.ms / 1000, frame)
            return []
        return [(now, frame)]

    def expired(self, now: float) -> list[tuple[float, bytes]]:
        """Held packets whose wait is over (no packet came to overtake them)."""
        out = []
        for index, (deadline, frame) in sorted(self.held.items(), key=lambda kv: kv[1][0]):
            if deadline <= now:
                del self.held[index]
                out.append((deadline, frame))
        return out

    def next_deadline(self) -> float | None:
        return min((d for d, _ in self.held.values()), default=None)


def nft_relay_table(rules: Sequence[Fault], device: str = TAP_NAME) -> str:
    """The netdev table that hands the rules' packets from lo's egress to the TAP device."""
    lines = [f"meta mark != {RELAY_MARK:#x} {match} fwd to \"{device}\"" for rule in rules for match in match_expressions(rule)]
    body = "".join(f"    {l}\n" for l in lines)
    return (f"table netdev {NFT_TABLE}\ndelete table netdev {NFT_TABLE}\n"
            f"table netdev {NFT_TABLE} {{\n  chain egress {{\n"
            f"    type filter hook egress device \"lo\" priority 0; policy accept;\n{body}  }}\n}}\n")


class Relay:
    """The TAP device, the re-injecting packet socket and the thread between them, in one namespace.

    start() creates them; set_rules() replaces what is relayed and how; close() stops the thread
    (frames still held are dropped: lost in the network) and closes both ends (the TAP device
    goes with its file). Idempotent; also called on every exit path of the run."""

    def __init__(self, ns: Namespace):
        self.ns = ns
        self._tap: int | None = None
        self._out: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._schedule = Schedule(())
        self._lock = threading.Lock()
        self._stopping = False
        self.relayed = 0  # frames sent on
        self.dropped_at_close = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        try:
            with self.ns.entered():
                self._tap = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
                fcntl.ioctl(self._tap, TUNSETIFF, struct.pack("16sH22x", TAP_NAME.encode(), IFF_TAP | IFF_NO_PI))
                with contextlib.suppress(OSError):  # no IPv6 chatter of its own (router solicitations)
                    with open(f"/proc/sys/net/ipv6/conf/{TAP_NAME}/disable_ipv6", "w") as f:
                        f.write("1\n")
                # a frame sent through a packet socket has no route yet (lo's own packets keep the
                # one they were sent with): the input lookup then drops 127.0.0.0/8 sources as
                # martians (IP_LOCALNET) and local sources (IP_LOCAL_SOURCE) unless these are set
                for key in ("route_localnet", "accept_local"):
                    with open(f"/proc/sys/net/ipv4/conf/lo/{key}", "w") as f:
                        f.write("1\n")
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    fcntl.ioctl(s, SIOCSIFMTU, struct.pack("16si20x", TAP_NAME.encode(), TAP_MTU))
                _bring_up(TAP_NAME)
                self._out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self._out.setsockopt(socket.SOL_SOCKET, SO_MARK, RELAY_MARK)
            self._out.bind(("lo", 0))
            os.set_blocking(self._tap, False)
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            self._thread = threading.Thread(target=self._run, name=f"relay-{self.ns.name}", daemon=True)
            self._thread.start()
        except BaseException:
            self.close()
            raise

    def set_rules(self, rules: Sequence[Fault]) -> None:
        """Relay these faults' packets from now on (replacing the rules before; held frames go on at
        once). The caller loads nft_relay_table(rules) after this, so nothing reaches the TAP unplanned."""
        with self._lock:
            pending = [frame for _, frame in sorted(self._schedule.held.values(), key=lambda x: x[0])]
            self._schedule = Schedule(tuple(rules))
            self._pending_now = pending
        self._wake()

    _pending_now: list[bytes] = []

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        queue: list[tuple[float, int, bytes]] = []
        order = itertools.count()
        try:
            while not self._stopping:
                with self._lock:
                    schedule = self._schedule
                    for frame in self._pending_now:
                        heapq.heappush(queue, (time.monotonic(), next(order), frame))
                    self._pending_now = []
                now = time.monotonic()
                for due, frame in schedule.expired(now):
                    heapq.heappush(queue, (due, next(order), frame))
                while queue and queue[0][0] <= now:
                    self._send(heapq.heappop(queue)[2])
                deadlines = [d for d in (queue[0][0] if queue else None, schedule.next_deadline()) if d is not None]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                ready, _, _ = select.select([self._tap, self._wake_r], [], [], timeout)
                if self._wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                if self._tap in ready:
                    while True:
                        try:
                            frame = os.read(self._tap, FRAME_MAX)
                        except BlockingIOError:
                            break
                        packet = parse_frame(frame)
                        if packet is None:
                            continue  # the TAP's own chatter: nothing of the scenario's
                        for due, out in schedule.arrive(packet, frame, time.monotonic()):
                            heapq.heappush(queue, (due, next(order), out))
            self.dropped_at_close = len(queue) + len(self._schedule.held)
        except BaseException as e:  # surfaced by close() to the run
            self.error = e

    def _send(self, frame: bytes) -> None:
        self._out.send(with_tcp_checksum(frame))
        self.relayed += 1

    def close(self) -> None:
        self._stopping = True
        if self._wake_w >= 0:
            self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        for fd in (self._tap, self._wake_r, self._wake_w):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._tap, self._wake_r, self._wake_w = None, -1, -1
        if self._out is not None:
            self._out.close()
            self._out = None
