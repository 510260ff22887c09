"""Fixtures: captures/<os>-<kernel>/<runtime>/<scenario>.pcapng (events as packet comments) + .txt transcript."""

from __future__ import annotations

import io
import os
import struct
import tempfile
from pathlib import Path

from . import __version__
from .timeline import merge, transcript_text
from .wire import capture, pcapng
from .wire.model import CaptureInfo
from .wire.transcript import EventLine


# Fixtures keep headers only (Ethernet 14 + IPv6 40 + TCP with options 60 = 114): a payload is
# not behaviour, and a 1 MiB transfer would otherwise weigh 1 MiB in git. Lengths stay exact.
FIXTURE_SNAPLEN = 128


def fixture_dir(root: Path, platform_label: str, runtime_label: str) -> Path:
    return root / platform_label / runtime_label


# Event arguments that name an ephemeral port change on every run: written as `*` in fixtures
# (a wildcard in the notation), so a fixture diff shows behaviour, not port numbers.
EPHEMERAL_PORT_KEYS = ("localPort", "remotePort", "port")


def stable_events(events: list[EventLine], fixed_ports: set[int]) -> list[EventLine]:
    out = []
    for ev in events:
        args = tuple(
            (k, "*") if k in EPHEMERAL_PORT_KEYS and isinstance(v, int) and v not in fixed_ports else (k, v)
            for k, v in ev.args
        )
        out.append(EventLine(ev.side, ev.name, args, ev.t))
    return out


def transcript_for(result) -> str:
    """The fixture transcript: the merged timeline without times (stable from run to run)."""
    entries = merge(result.connections, stable_events(result.events, set(result.scenario.ports)))
    head = f"# {result.scenario.name}: {result.scenario.description}\n"
    return head + transcript_text(entries, len(result.connections), with_time=False)


def event_comments(frame_times: list[float], events: list[EventLine]) -> dict[int, str]:
    """Attach each event to the first packet at or after it (the last packet for later events)."""
    comments: dict[int, list[str]] = {}
    if not frame_times:
        return {}
    i = 0
    for ev in events:
        while i < len(frame_times) and frame_times[i] < ev.t:
            i += 1
        if i < len(frame_times):
            where, note = i, f"{(frame_times[i] - ev.t) * 1e6:.0f} us before this packet"
        else:
            where, note = len(frame_times) - 1, f"{(ev.t - frame_times[-1]) * 1e6:.0f} us after this packet"
        comments.setdefault(where, []).append(f"{ev.text(with_time=False)} ({note})")
    return {k: "\n".join(v) for k, v in comments.items()}


def _pcap_stamps_ns(pcap: bytes) -> list[int]:
    """Exact per-record timestamps (ns) of a classic pcap (what the capture backends write); [] otherwise."""
    for e in "<>":
        if len(pcap) >= 24 and struct.unpack_from(e + "I", pcap)[0] in (0xA1B2C3D4, 0xA1B23C4D):
            unit = 1 if struct.unpack_from(e + "I", pcap)[0] == 0xA1B23C4D else 1000
            out, pos = [], 24
            while pos + 16 <= len(pcap):
                sec, frac, incl, _ = struct.unpack_from(e + "IIII", pcap, pos)
                out.append(sec * 1_000_000_000 + frac * unit)
                pos += 16 + incl
            return out
    return []


def pcapng_for(result, plat: dict) -> bytes:
    info = CaptureInfo()
    frames = list(capture.read_frames(io.BytesIO(result.pcap), info))
    linktype = frames[0].linktype if frames else (info.interfaces[0]["linktype"] if info.interfaces else 1)
    comments = event_comments([f.t for f in frames], result.events)
    rt = result.runtime
    head = pcapng.section_header(
        os=f"Linux {plat['kernel']}" if plat["os"] == "linux" else plat["os"],
        hardware=plat.get("machine", ""),
        userappl=f"verifier {__version__}; runtime {rt.kind} {rt.version}; scenario {result.scenario.name}; backend {result.backend}",
        comments=[f"{result.scenario.name}: {result.scenario.description}"]
        + ([f"events before the first packet or without one: {len(result.events)}"] if not frames and result.events else []),
    )
    body = [head, pcapng.interface(linktype, snaplen=FIXTURE_SNAPLEN)]
    stamps = _pcap_stamps_ns(result.pcap)
    exact = len(stamps) == len(frames)
    for n, f in enumerate(frames):
        body.append(pcapng.packet(f.t, f.data[:FIXTURE_SNAPLEN], f.orig_len, comments.get(n), stamps[n] if exact else None))
    return b"".join(body)


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def not_recorded_reason(result) -> str | None:
    """Why a run cannot be a fixture (None: it can). Any run that produced a capture can: held,
    failed, an error after the capture, or no TCP connection at all (a behaviour too)."""
    if result.pcap:
        return None
    why = result.problems[0] if getattr(result, "problems", None) else "the run stopped before it was captured"
    return f"no capture: {why}"


def write_fixture(folder: Path, result, plat: dict) -> tuple[Path, Path]:
    pcap_path = folder / f"{result.scenario.name}.pcapng"
    txt_path = folder / f"{result.scenario.name}.txt"
    atomic_write(pcap_path, pcapng_for(result, plat))
    atomic_write(txt_path, transcript_for(result).encode())
    return pcap_path, txt_path
