"""Capture every packet on a namespace's `lo` (scapy or tcpdump), proven started and drained by marker packets."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from verifier.errors import EXIT_FAILED, UsageError, VerifierError
from verifier.lab.host import capture_argv, capture_filter, drops_from_report
from verifier.lab.netns import Namespace, tool_path

MARKER_PREFIX = b"verifier-marker-"
MARKER_PORT_HOST = "127.0.0.1"  # markers are UDP datagrams a socket sends to itself: no ICMP reply
MARKER_FRAME_MAX = 256  # bytes: a marker frame is ~100
# A scenario that floods the wire is stopped: beyond these a capture keeps nothing more, and
# overflow() tells the runner to kill the program (the seed's scenarios stay under 1 MiB).
CAPTURE_MAX_PACKETS = 200_000
CAPTURE_MAX_BYTES = 256 << 20
LINKTYPE_ETHERNET = 1  # what Linux `lo` shows: a 14-byte Ethernet header with zero addresses
SNAPLEN = 262144  # tcpdump's default for -s 0; lo's GSO packets stay below 64 KiB + headers
READY_TIMEOUT_S = 5.0
DRAIN_TIMEOUT_S = 5.0
MARKER_RESEND_FIRST_S = 0.005  # a marker sent before the sniffer was bound is lost: resend, backing off
MARKER_RESEND_MAX_S = 0.1

SOL_PACKET = 263
PACKET_STATISTICS = 6  # struct tpacket_stats {unsigned tp_packets, tp_drops}; reading resets it
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECEIVE_BUFFER = 32 << 20  # bytes of kernel queue for the packet socket (a lo packet takes up to 64 KiB)
TCPDUMP_BUFFER_KIB = 8 << 10  # -B: its ring is allocated at start, ~0.6 ms per MiB

PCAP_MAGIC_MICRO = 0xA1B2C3D4
PCAP_MAGIC_NANO = 0xA1B23C4D
PCAP_HEADER_LEN = 24
PCAP_RECORD_HEADER_LEN = 16


class CaptureFailed(VerifierError):
    """The capture cannot be trusted: not proven started, not drained, or the kernel dropped packets."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, result: CaptureResult | None = None):
        super().__init__(message)
        self.result = result  # what was captured anyway, when there is something to look at


@dataclass(frozen=True)
class CaptureResult:
    pcap: bytes  # classic pcap, LINKTYPE_ETHERNET, nanosecond timestamps, marker packets removed
    packets: int  # packets in `pcap`
    dropped: int  # packets the kernel reported dropped for this capture's socket
    backend: str


# Where the IP header starts, per link type a loopback capture uses (Ethernet on Linux lo, BSD
# NULL / LOOP on lo0, raw IP, Linux cooked SLL / SLL2).
_IP_OFFSET = {1: 14, 0: 4, 108: 4, 101: 0, 228: 0, 229: 0, 113: 16, 276: 20}


def marker_token(frame: bytes, linktype: int = 1) -> bytes | None:
    """The payload of a frame that is a UDP marker datagram (IPv4 or IPv6), else None."""
    offset = _IP_OFFSET.get(linktype)
    if offset is None or len(frame) > MARKER_FRAME_MAX or len(frame) < offset + 28:
        return None
    version = frame[offset] >> 4
    if version == 4 and frame[offset + 9] == 17:
        udp = offset + (frame[offset] & 0x0F) * 4
    elif version == 6 and len(frame) >= offset + 48 and frame[offset + 6] == 17:
        udp = offset + 40
    else:
        return None
    payload = frame[udp + 8 :]
    return bytes(payload) if payload.startswith(MARKER_PREFIX) else None


def new_marker(kind: str) -> bytes:
    return MARKER_PREFIX + kind.encode() + b"-" + os.urandom(8).hex().encode()


class _MarkerSender:
    """A UDP socket inside the namespace that sends marker datagrams to itself."""

    def __init__(self, ns: Namespace):
        with ns.entered():
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((MARKER_PORT_HOST, 0))
        self.address = self.sock.getsockname()

    def send(self, payload: bytes) -> None:
        try:
            self.sock.sendto(payload, self.address)
        except OSError as error:  # e.g. EPERM: an nftables rule of the scenario drops UDP on lo
            raise CaptureFailed(
                f"cannot send the capture marker to {self.address[0]}:{self.address[1]} inside the namespace: "
                f"{error.strerror} (does the namespace's firewall drop UDP?)"
            ) from None

    def close(self) -> None:
        self.sock.close()


def _await_marker(
    sender: _MarkerSender, token: bytes, seen_within: Callable[[float], bool], timeout: float, failure: str
) -> float:
    """Send `token` until `seen_within(seconds)` says the sniffer saw it; the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    interval = MARKER_RESEND_FIRST_S
    while True:
        sender.send(token)
        remaining = deadline - time.monotonic()
        if seen_within(max(0.0, min(interval, remaining))):
            return time.monotonic() - t0
        if time.monotonic() >= deadline:
            raise CaptureFailed(failure)
        interval = min(interval * 2, MARKER_RESEND_MAX_S)


class CaptureBackend(ABC):
    """Capture on `lo` of one namespace: start() proves it runs, stop() drains and returns the packets.

    Use: `backend.start(ns)`, run the scenario, `result = backend.stop()`; `close()` (or the
    `with` block) releases everything if stop() is not reached.
    """

    name: ClassVar[str]

    @abstractmethod
    def start(self, ns: Namespace, *, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once the sniffer has seen a start marker sent inside `ns`; else CaptureFailed."""

    @abstractmethod
    def stop(self, *, timeout: float = DRAIN_TIMEOUT_S, allow_drops: bool = False) -> CaptureResult:
        """Drain (the end marker was seen), stop, return the capture; CaptureFailed if the kernel dropped packets."""

    def overflow(self) -> str | None:
        """Why the capture stopped keeping packets (the scenario flooded), or None."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the sniffer without a result. Idempotent."""

    def __enter__(self) -> CaptureBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _checked(self, result: CaptureResult, allow_drops: bool) -> CaptureResult:
        if result.dropped and not allow_drops:
            raise CaptureFailed(
                f"the kernel dropped {result.dropped} packets during the {self.name} capture: it is incomplete",
                result,
            )
        return result


# --- scapy ---------------------------------------------------------------------------------


@functools.cache
def _raw_pcap_writer() -> type:
    """scapy's RawPcapWriter, imported once and only when first needed (the import costs ~0.2 s)."""
    from scapy.utils import RawPcapWriter

    return RawPcapWriter


def import_scapy() -> float:
    """Import scapy now (not in the middle of a timed scenario); the seconds it took (0 once done)."""
    t0 = time.perf_counter()
    _raw_pcap_writer()
    return time.perf_counter() - t0


def open_packet_socket(ns: Namespace, interface: str = "lo") -> socket.socket:
    """An AF_PACKET socket inside `ns` receiving every frame on `interface`, with nanosecond timestamps.

    Created with protocol 0 (it receives nothing yet) and then bound to ETH_P_ALL on the interface:
    binding a socket that already listens on all interfaces (as scapy's L2ListenSocket does) waits
    for an RCU grace period in the kernel, 8-16 ms per capture; this way there is nothing to flush.
    """
    with ns.entered():
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((interface, ETH_P_ALL))  # the interface name is resolved in the socket's namespace
    except BaseException:
        sock.close()
        raise
    return sock


def _close_in_background(sock: socket.socket) -> None:
    """Closing an AF_PACKET socket waits for an RCU grace period (~10 ms): nobody needs to wait for it."""
    threading.Thread(target=sock.close, name="close-packet-socket", daemon=True).start()


def _flood_message(packets: int, size: int) -> str:
    return (f"the scenario flooded the capture (over {CAPTURE_MAX_PACKETS} packets or {CAPTURE_MAX_BYTES >> 20} MiB; "
            f"{packets} packets, {size >> 20} MiB seen): it was stopped")


class ScapyCapture(CaptureBackend):
    """An AF_PACKET socket on `lo` opened inside the namespace, read by a background thread; scapy writes the pcap.

    Not scapy's L2ListenSocket: it keeps lo's PACKET_OUTGOING duplicate of every packet (its
    recv() does not expose the packet type), dissects each packet, has a 64 KiB receive buffer
    (one lo packet) and costs an RCU grace period at bind. recvmsg here gives the packet type (the
    outgoing copy is dropped, as libpcap does) and the kernel timestamp to the nanosecond.
    """

    name = "scapy"

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._sender: _MarkerSender | None = None
        self._thread: threading.Thread | None = None
        self._frames: list[tuple[int, int, bytes]] = []  # (seconds, nanoseconds, frame)
        self._bytes = 0
        self._overflow: str | None = None
        self._truncated = 0
        self._start_token = new_marker("start")
        self._end_token = new_marker("end")
        self._start_seen = threading.Event()
        self._end_seen = threading.Event()
        self._abort = False
        self._reader_error: BaseException | None = None
        self.start_seconds = 0.0
        self.stop_seconds = 0.0

    def start(self, ns: Namespace, *, timeout: float = READY_TIMEOUT_S) -> None:
        _raw_pcap_writer()  # the one-time import happens here, not between the scenario and its result
        t0 = time.perf_counter()
        try:
            self._sock = open_packet_socket(ns, "lo")
            self._sock.settimeout(0.1)  # so an aborted capture's thread notices within 100 ms
            self._sender = _MarkerSender(ns)
            self._thread = threading.Thread(target=self._read, name=f"capture-{ns.name}", daemon=True)
            self._thread.start()
            _await_marker(
                self._sender,
                self._start_token,
                self._start_seen.wait,
                timeout,
                f"capture not ready: the packet socket did not see the start marker within {timeout:g} s",
            )
            if self._reader_error is not None:
                raise CaptureFailed(f"the scapy capture failed: {self._reader_error}")
        except BaseException:
            self.close()
            raise
        self.start_seconds = time.perf_counter() - t0

    def _read(self) -> None:
        raw = self._sock
        ancillary_size = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(32)
        frames = self._frames
        try:
            while not self._abort:
                try:
                    frame, ancillary, flags, address = raw.recvmsg(SNAPLEN, ancillary_size)
                except TimeoutError:
                    continue
                if address[2] == PACKET_OUTGOING:
                    continue  # lo: the copy seen on transmit; the same packet comes back as received
                seconds = nanoseconds = None
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        seconds, nanoseconds = struct.unpack("qq" if len(data) >= 16 else "ii", data[:16])
                if seconds is None:
                    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
                if flags & socket.MSG_TRUNC:
                    self._truncated += 1
                token = marker_token(frame)
                if token is None:
                    if self._overflow is None:
                        self._bytes += len(frame)
                        if len(frames) >= CAPTURE_MAX_PACKETS or self._bytes > CAPTURE_MAX_BYTES:
                            self._overflow = _flood_message(len(frames), self._bytes)
                        else:
                            frames.append((seconds, nanoseconds, frame))
                elif token == self._start_token:
                    self._start_seen.set()
                elif token == self._end_token:
                    self._end_seen.set()
                    # lo hands a sent packet to the receive path on the sending CPU before send()
                    # returns: what the scenario sent before the end marker is already queued here.
                    return
        except BaseException as error:  # surfaced by stop()
            self._reader_error = error
            self._start_seen.set()  # wake start()/stop(): they report the error
            self._end_seen.set()

    def overflow(self) -> str | None:
        """Why the capture stopped keeping packets (a flood), or None."""
        return self._overflow

    def stop(self, *, timeout: float = DRAIN_TIMEOUT_S, allow_drops: bool = False) -> CaptureResult:
        if self._sock is None or self._sender is None:
            raise RuntimeError("capture not started")
        t0 = time.perf_counter()
        try:
            _await_marker(
                self._sender,
                self._end_token,
                self._end_seen.wait,
                timeout,
                f"capture did not drain: the packet socket did not see the end marker within {timeout:g} s",
            )
            self._thread.join()
            if self._reader_error is not None:
                raise CaptureFailed(f"the scapy capture failed: {self._reader_error}")
            _, dropped = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            pcap = self._pcap()
        finally:
            self.close()
        if self._truncated:
            raise CaptureFailed(f"{self._truncated} packets were longer than {SNAPLEN} bytes and were cut")
        self.stop_seconds = time.perf_counter() - t0
        result = CaptureResult(pcap=pcap, packets=len(self._frames), dropped=dropped, backend=self.name)
        return self._checked(result, allow_drops)

    def _pcap(self) -> bytes:
        raw_pcap_writer = _raw_pcap_writer()
        buffer = io.BytesIO()
        writer = raw_pcap_writer(buffer, linktype=LINKTYPE_ETHERNET, nano=True, snaplen=SNAPLEN)
        writer.write_header(None)
        for seconds, nanoseconds, frame in self._frames:
            writer.write_packet(frame, sec=seconds, usec=nanoseconds)
        writer.flush()
        return buffer.getvalue()

    def close(self) -> None:
        self._abort = True
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        if self._sock is not None:
            _close_in_background(self._sock)
            self._sock = None
        if self._sender is not None:
            self._sender.close()


# --- tcpdump -------------------------------------------------------------------------------


class PcapFollower:
    """Reads a classic pcap file as another process appends to it: complete records only."""

    def __init__(self, path: Path):
        self.path = path
        self.data = bytearray()
        self.header: bytes | None = None
        self.endian = "<"
        self.linktype = 1
        self.records: list[tuple[int, int, bytes | None]] = []  # (start, end, marker token or None)
        self.markers_seen: set[bytes] = set()
        self._parsed = 0
        self._file = None

    def poll(self) -> None:
        """Read what was appended and index every complete record."""
        if self._file is None:
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
            except FileNotFoundError:
                return
        chunk = self._file.read()
        if not chunk:
            return
        self.data += chunk
        if self.header is None:
            if len(self.data) < PCAP_HEADER_LEN:
                return
            magic = struct.unpack("<I", self.data[:4])[0]
            if magic in (PCAP_MAGIC_MICRO, PCAP_MAGIC_NANO):
                self.endian = "<"
            elif struct.unpack(">I", self.data[:4])[0] in (PCAP_MAGIC_MICRO, PCAP_MAGIC_NANO):
                self.endian = ">"
            else:
                raise CaptureFailed(f"tcpdump wrote something that is not a classic pcap file: {self.path}")
            self.header = bytes(self.data[:PCAP_HEADER_LEN])
            self.linktype = struct.unpack(self.endian + "I", self.header[20:24])[0] & 0xFFFF
            self._parsed = PCAP_HEADER_LEN
        record_header = struct.Struct(self.endian + "IIII")
        data = self.data
        while len(data) - self._parsed >= PCAP_RECORD_HEADER_LEN:
            caplen = record_header.unpack_from(data, self._parsed)[2]
            end = self._parsed + PCAP_RECORD_HEADER_LEN + caplen
            if end > len(data):
                break
            token = None
            if caplen <= MARKER_FRAME_MAX:  # markers are small: do not copy every big frame to look
                token = marker_token(bytes(data[self._parsed + PCAP_RECORD_HEADER_LEN : end]), self.linktype)
            if token is not None:
                self.markers_seen.add(token)
            self.records.append((self._parsed, end, token))
            self._parsed = end

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TcpdumpCapture(CaptureBackend):
    """tcpdump on `lo` inside the namespace, writing a pcap file in a private directory.

    Started from a thread inside the namespace (a forked child keeps its parent thread's network
    namespace; no mount namespace is needed). `--immediate-mode -U`: every packet reaches the
    file when it is captured, so the markers can be looked for in the file.
    """

    name = "tcpdump"

    def __init__(self, *, interface: str = "lo", ports: tuple[int, ...] | None = None, family: str = "linux") -> None:
        """`ports`: capture only these TCP ports (plus the marker), as on a shared host loopback."""
        from .host import CAPTURE_TOOL

        self.interface = interface
        self.ports = ports
        self.family = family
        self._tcpdump = tool_path(CAPTURE_TOOL.get(family, "tcpdump"), "tcpdump" if family != "windows" else "Wireshark (dumpcap)")
        self._process: subprocess.Popen | None = None
        self._directory: str | None = None
        self._follower: PcapFollower | None = None
        self._sender: _MarkerSender | None = None
        self._stderr = bytearray()
        self._start_token = new_marker("start")
        self._end_token = new_marker("end")
        self.start_seconds = 0.0
        self.stop_seconds = 0.0

    def start(self, ns: Namespace, *, timeout: float = READY_TIMEOUT_S) -> None:
        t0 = time.perf_counter()
        self._directory = tempfile.mkdtemp(prefix="verifier-tcpdump-")
        path = Path(self._directory) / "lo.pcap"
        try:
            self._sender = _MarkerSender(ns)
            bpf = capture_filter(self.ports, self._sender.address[1]) if self.ports else None
            argv = capture_argv(self.family, self._tcpdump, self.interface, str(path), bpf)
            with ns.entered():
                self._process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # Ctrl-C is ours to handle: tcpdump is stopped by stop()/close()
                )
            self._follower = PcapFollower(path)
            self._await_listening(time.monotonic() + timeout)
            _await_marker(
                self._sender,
                self._start_token,
                functools.partial(self._poll_for, self._start_token),
                timeout,
                f"capture not ready: tcpdump did not capture the start marker within {timeout:g} s",
            )
        except BaseException:
            self.close()
            raise
        self.start_seconds = time.perf_counter() - t0

    def _await_listening(self, deadline: float) -> None:
        """Wait for tcpdump's 'listening on lo' (its socket is bound) before sending markers."""
        stderr = self._process.stderr
        while b"listening on" not in self._stderr:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CaptureFailed(f"capture not ready: tcpdump did not start listening on {self.interface} in time")
            readable, _, _ = select.select([stderr], [], [], remaining)
            if readable:
                chunk = os.read(stderr.fileno(), 4096)
                if not chunk:
                    message = self._stderr.decode(errors="replace").strip().replace("\n", "; ")
                    raise CaptureFailed(f"tcpdump exited before capturing: {message or 'no message'}")
                self._stderr += chunk

    def overflow(self) -> str | None:
        """A flood: tcpdump's file grew past the cap (packets are not counted while it runs)."""
        try:
            size = os.stat(self._follower.path).st_size if self._follower else 0
        except FileNotFoundError:
            return None
        return _flood_message(-1, size).replace("-1 packets, ", "") if size > CAPTURE_MAX_BYTES else None

    def _poll_for(self, token: bytes, within: float) -> bool:
        deadline = time.monotonic() + within
        delay = 0.0002
        while True:
            self._follower.poll()
            if token in self._follower.markers_seen:
                return True
            if self._process.poll() is not None:
                message = self._stderr.decode(errors="replace").strip().replace("\n", "; ")
                raise CaptureFailed(f"tcpdump exited early: {message or 'no message'}")
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)  # polling a file tcpdump appends to; bounded by `within`
            delay = min(delay * 2, 0.002)

    def stop(self, *, timeout: float = DRAIN_TIMEOUT_S, allow_drops: bool = False) -> CaptureResult:
        if self._process is None or self._sender is None or self._follower is None:
            raise RuntimeError("capture not started")
        t0 = time.perf_counter()
        try:
            _await_marker(
                self._sender,
                self._end_token,
                functools.partial(self._poll_for, self._end_token),
                timeout,
                f"capture did not drain: tcpdump did not capture the end marker within {timeout:g} s",
            )
            self._process.send_signal(signal.SIGINT)
            try:
                _, stderr_rest = self._process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise CaptureFailed(f"tcpdump did not exit within {timeout:g} s of SIGINT") from None
            self._stderr += stderr_rest
            report = self._stderr.decode(errors="replace")
            dropped = drops_from_report(self._tcpdump, report)
            if dropped is None:
                raise CaptureFailed(f"tcpdump did not report its kernel drops: {report.strip()}")
            self._follower.poll()
            pcap, packets = self._pcap()
        finally:
            self.close()
        self.stop_seconds = time.perf_counter() - t0
        return self._checked(CaptureResult(pcap=pcap, packets=packets, dropped=dropped, backend=self.name), allow_drops)

    def _pcap(self) -> tuple[bytes, int]:
        """tcpdump's file up to our end marker, without marker records."""
        follower = self._follower
        parts = [follower.header]
        for start, end, marker in follower.records:
            if marker == self._end_token:
                break
            if marker is None:
                parts.append(follower.data[start:end])
        return b"".join(parts), len(parts) - 1

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        if self._follower is not None:
            self._follower.close()
        if self._sender is not None:
            self._sender.close()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


BACKENDS: dict[str, type[CaptureBackend]] = {"scapy": ScapyCapture, "tcpdump": TcpdumpCapture}


def capture_backend(name: str) -> CaptureBackend:
    """A new backend by its CLI name (`--backend scapy|tcpdump`)."""
    try:
        return BACKENDS[name]()
    except KeyError:
        raise UsageError(f"unknown capture backend {name!r}: choose one of {', '.join(BACKENDS)}") from None
