"""Oracle: for every capture in tests/data, our segments equal what tshark dissects.

tshark runs directly (`-T fields`): pyshark took 1.2 s per file here (it parses PDML), 10x slower."""

import contextlib
import functools
import io
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from verifier.cli import main
from verifier.wire.transcript import flags_text as _flags_text

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(p for p in DATA.rglob("*") if p.suffix in (".pcap", ".pcapng"))


def show_json(path: Path) -> tuple[int, dict | None, str]:
    """`verifier show --json` in this process: (exit code, document, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["show", "--json", str(path)])
    return code, (json.loads(out.getvalue()) if code == 0 else None), err.getvalue()


def ours(path: Path) -> dict:
    code, doc, err = show_json(path)
    if code != 0:
        return {"error": err.strip()}
    by_frame = {}
    for conn in doc["files"][0]["connections"]:
        ends = {"client": conn["client"], "server": conn["server"]}
        for s in conn["segments"]:
            by_frame[s["frame"]] = (ends[s["from"]], s["flags"], s["seq"], s["ack"], s["len"])
    return by_frame


def endpoint(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def flags_text(value: int) -> str:
    return _flags_text(value & 0xFF)


FIELDS = ["frame.number", "ip.src", "ipv6.src", "tcp.srcport", "tcp.flags", "tcp.seq", "tcp.ack", "tcp.len"]


@functools.cache
def _all_tshark() -> dict:
    # tshark takes ~0.5 s to start: dissect every file once, several at a time
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(CAPTURES, pool.map(_tshark, CAPTURES)))


def theirs(path: Path) -> dict:
    return _all_tshark()[path]


def _tshark(path: Path) -> dict:
    """tshark's dissection of the TCP frames it can read (it stops at what it cannot)."""
    argv = ["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "occurrence=f"]
    for f in FIELDS:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    by_frame = {}
    for row in out.splitlines():
        number, ip4, ip6, port, flags, seq, ack, length = row.split("\t")
        flags = int(flags, 16)
        by_frame[int(number)] = (endpoint(ip6 or ip4, port), flags_text(flags), int(seq), int(ack) if flags & 0x10 else 0, int(length))
    return by_frame


@pytest.mark.parametrize("path", CAPTURES, ids=[str(p.relative_to(DATA)) for p in CAPTURES])
def test_segments_equal_tsharks(path):
    mine = ours(path)
    if "error" in mine:
        # we refuse the file: tshark must have found no TCP in it either (or refused it too)
        assert theirs(path) == {}, mine["error"]
        return
    reference = theirs(path)
    common = sorted(set(reference) & set(mine))
    assert [mine[f] for f in common] == [reference[f] for f in common]
    # every TCP frame tshark dissects we report too (a file we stop reading early is the exception: it warns)
    missing = sorted(set(reference) - set(mine))
    assert not missing or _warned(path), f"frames tshark sees as TCP but we do not: {missing[:10]}"


def _warned(path: Path) -> bool:
    return bool(show_json(path)[1]["files"][0]["warnings"])


def test_oracle_covers_the_three_key_captures():
    names = {p.name for p in CAPTURES}
    assert {"macos-lo0-ipv6-fin.pcap", "linux-sll-lo-fin.pcap", "macos-lo0-v6-refused-then-v4-rst.pcap"} <= names


ENCAPSULATED = ["encapsulations/qinq.pcap", "encapsulations/mpls.pcap", "encapsulations/pppoe.pcap",
                "encapsulations/pbb.pcap", "encapsulations/vntag.pcap", "encapsulations/vlan-1000-tags.pcap",
                "zeek/traces/mixed-vlan-mpls.pcap", "zeek/traces/mpls-in-vlan.pcap", "zeek/traces/pbb.pcap",
                "zeek/traces/vntag_vlan_sandwich_clean.pcap"]
LOOPBACK = ["loopback/linux-lo-scapy-sniff-doubled.pcap", "loopback/linux-lo-tcpdump.pcap",
            "loopback/linux-any-tcpdump-sll2.pcap", "loopback/ethernet-copy-retransmission.pcap",
            "loopback/linux-lo-packet-socket-sll-doubled.pcap"]


@pytest.mark.parametrize("name", ENCAPSULATED + LOOPBACK)
def test_oracle_covers_the_encapsulated_and_loopback_captures(name):
    # in the oracle's set, with TCP frames tshark sees, every one of them ours too (but the
    # copies a doubled lo capture repeats: removed, with the warning that says why)
    path = DATA / name
    assert path in CAPTURES and theirs(path)
    missing = set(theirs(path)) - set(ours(path))
    assert len(missing) == (30 if "doubled" in name else 0)


def _tshark_tos(path: Path) -> dict:
    """frame -> the TOS byte / traffic class of the first IP header of its TCP frames, as tshark reads it."""
    argv = ["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "occurrence=f", "-e", "frame.number",
            "-e", "ip.dsfield", "-e", "ipv6.tclass"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    return {int(n): int(v4 or v6, 16) for n, v4, v6 in (row.split("\t") for row in out.splitlines()) if v4 or v6}


def _decoded_tos(path: Path) -> dict:
    from verifier.errors import CaptureError
    from verifier.wire.capture import read_frames
    from verifier.wire.decode import decode

    out = {}
    with open(path, "rb") as f:
        with contextlib.suppress(CaptureError):
            for frame in read_frames(f):
                seg = decode(frame)
                if seg is not None:
                    out[frame.index] = seg.tos
    return out


def test_tos_equals_tsharks_on_every_capture():
    # the IPv4 TOS byte / IPv6 traffic class (show -v's `tos 0x..`, what setTypeOfService sets)
    compared = nonzero = 0
    for path in CAPTURES:
        mine, reference = _decoded_tos(path), _tshark_tos(path)
        common = sorted(set(mine) & set(reference))
        assert [mine[f] for f in common] == [reference[f] for f in common], path
        compared += len(common)
        nonzero += sum(1 for f in common if mine[f])
    assert compared > 1000 and nonzero > 0
