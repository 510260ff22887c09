"""Captures that exercise every TCP analysis label, written to tests/data/analysis/ (see NOTICE).

Each case is a TCP exchange written packet by packet (times in microseconds, absolute seq/ack)
on Ethernet/IPv4 or IPv6, the way a lossy or slow network shows it to a sniffer. The files are
checked in; `python tests/analysis_captures.py` writes them again. What tshark labels in them is
the oracle (tests/test_analysis.py), not these comments.
"""

from __future__ import annotations

import sys
from pathlib import Path

from builders import ether, ipv4_tcp, ipv6_tcp, pcap_file

OUT = Path(__file__).parent / "data" / "analysis"
C, S = ("10.0.0.1", 40001), ("10.0.0.2", 80)
WS = [("mss", 1460), ("wscale", 0)]  # window scaling announced (factor 1) on both SYNs: window-full can be judged


def packets(steps, client=C, server=S, v6=False):
    """steps: (t_us, side, flags, seq, ack, win, payload_len[, options]) -> pcap records."""
    out = []
    for t_us, side, flags, seq, ack, win, length, *opts in steps:
        src, dst = (client, server) if side == "C" else (server, client)
        fields = dict(sport=src[1], dport=dst[1], seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, flags=flags, win=win,
                      options=opts[0] if opts else (), payload=b"x" * length)
        ip = (ipv6_tcp(src=src[0], dst=dst[0], **fields) if v6 else ipv4_tcp(src=src[0], dst=dst[0], **fields))
        out.append((1_700_000_000 + t_us // 1_000_000, t_us % 1_000_000, ether(ip)))
    return out


def handshake(t=0, ci=1000, si=5000, win=65535, options=WS):
    return [(t, "C", "S", ci, 0, win, 0, options), (t + 100, "S", "S.", si, ci + 1, win, 0, options),
            (t + 200, "C", ".", ci + 1, si + 1, win, 0)]


CASES = {
    # C sends 100 bytes, then idles; keep-alive probes (0 and 1 byte, one below nextseq), each answered
    "keepalive": handshake() + [
        (1_000, "C", "P.", 1001, 5001, 65535, 100), (1_100, "S", ".", 5001, 1101, 65535, 0),
        (1_001_000, "C", ".", 1100, 5001, 65535, 0), (1_001_100, "S", ".", 5001, 1101, 65535, 0),
        (2_001_000, "C", ".", 1100, 5001, 65535, 1), (2_001_100, "S", ".", 5001, 1101, 65535, 0),
        (3_000_000, "C", "F.", 1101, 5001, 65535, 0), (3_000_100, "S", "F.", 5001, 1102, 65535, 0),
        (3_000_200, "C", ".", 1102, 5002, 65535, 0),
    ],
    # S's buffer fills: zero window, C probes with one byte (answered with zero window again), then S opens up
    "zero-window": handshake() + [
        (1_000, "C", "P.", 1001, 5001, 65535, 1000), (1_100, "S", ".", 5001, 2001, 0, 0),
        (200_000, "C", ".", 2001, 5001, 65535, 1), (200_100, "S", ".", 5001, 2001, 0, 0),
        (400_000, "C", ".", 2001, 5001, 65535, 1), (400_100, "S", ".", 5001, 2001, 0, 0),
        (500_000, "S", ".", 5001, 2001, 8192, 0),
        (500_100, "C", "P.", 2001, 5001, 65535, 500), (500_200, "S", ".", 5001, 2501, 8192, 0),
        (600_000, "S", ".", 5001, 2501, 16384, 0),
    ],
    # the second of three segments is lost before the sniffer: the third is past a hole, S repeats its
    # ACK three times (dup-ack), C resends the lost bytes within 20 ms of the last (fast retransmission)
    "fast-retransmission": handshake() + [
        (1_000, "C", ".", 1001, 5001, 65535, 1000),
        (1_200, "S", ".", 5001, 2001, 65535, 0),
        (1_300, "C", ".", 3001, 5001, 65535, 1000),
        (1_400, "S", ".", 5001, 2001, 65535, 0), (1_500, "S", ".", 5001, 2001, 65535, 0),
        (1_600, "S", ".", 5001, 2001, 65535, 0),
        (5_000, "C", ".", 2001, 5001, 65535, 1000),
        (5_200, "S", ".", 5001, 4001, 65535, 0),
    ],
    # an RTO retransmission of unacknowledged data; then data resent after it was ACKed (spurious)
    "retransmission": handshake() + [
        (1_000, "C", "P.", 1001, 5001, 65535, 100),
        (301_000, "C", "P.", 1001, 5001, 65535, 100), (301_100, "S", ".", 5001, 1101, 65535, 0),
        (601_000, "C", "P.", 1001, 5001, 65535, 100), (601_100, "S", ".", 5001, 1101, 65535, 0),
    ],
    # segments overtaking each other on the way: a late segment within 3 ms is out of order
    "out-of-order": handshake() + [
        (1_000, "C", ".", 1001, 5001, 65535, 100), (1_100, "C", ".", 1201, 5001, 65535, 100),
        (1_200, "C", ".", 1101, 5001, 65535, 100), (1_300, "S", ".", 5001, 1301, 65535, 0),
    ],
    # the capture starts mid-connection: S acknowledges bytes the sniffer never saw
    "ack-lost-segment": [
        (0, "C", "P.", 1001, 5001, 65535, 100), (100, "S", ".", 5001, 1101, 65535, 0),
        (200, "C", "P.", 1201, 5001, 65535, 100), (300, "S", ".", 5001, 1401, 65535, 0),
    ],
    # S's receive window is 300 bytes after its first pure ACK: C fills it exactly (window-full)
    "window-full": handshake() + [
        (1_000, "C", "P.", 1001, 5001, 65535, 100), (1_100, "S", ".", 5001, 1101, 300, 0),
        (1_200, "C", "P.", 1101, 5001, 65535, 300), (50_000, "S", ".", 5001, 1401, 65535, 0),
    ],
    # a SYN resent (same ISN), a closed connection, then the same ports with a new ISN (reused-ports)
    "reused-ports": [
        (0, "C", "S", 1000, 0, 65535, 0, WS), (1_000_000, "C", "S", 1000, 0, 65535, 0, WS),
        (1_000_100, "S", "S.", 5000, 1001, 65535, 0, WS), (1_000_200, "C", ".", 1001, 5001, 65535, 0),
        (1_001_000, "C", "R.", 1001, 5001, 0, 0),
        (2_000_000, "C", "S", 90000, 0, 65535, 0, WS), (2_000_100, "S", "S.", 70000, 90001, 65535, 0, WS),
        (2_000_200, "C", ".", 90001, 70001, 65535, 0), (2_000_300, "C", "F.", 90001, 70001, 65535, 0),
        (2_000_400, "S", "F.", 70001, 90002, 65535, 0), (2_000_500, "C", ".", 90002, 70002, 65535, 0),
    ],
    # IPv6, no window scaling, sequence numbers wrapping through 2^32 while data is retransmitted
    "wrap-ipv6": [
        (0, "C", "S", 0xFFFFFF00, 0, 65535, 0, [("mss", 1440)]), (100, "S", "S.", 7, 0xFFFFFF01, 65535, 0, [("mss", 1440)]),
        (200, "C", ".", 0xFFFFFF01, 8, 65535, 0),
        (1_000, "C", "P.", 0xFFFFFF01, 8, 65535, 1000), (1_100, "S", ".", 8, 0x2E9, 65535, 0),
        (2_000, "C", "P.", 0x2E9, 8, 65535, 500), (302_000, "C", "P.", 0x2E9, 8, 65535, 500),
        (302_100, "S", ".", 8, 0x4DD, 65535, 0), (302_200, "S", ".", 8, 0x4DD, 65535, 0),
        (303_000, "C", "F.", 0x4DD, 8, 65535, 0), (303_100, "S", "F.", 8, 0x4DE, 65535, 0),
    ],
}


def write(folder: Path = OUT) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, steps in CASES.items():
        path = folder / f"{name}.pcap"
        v6 = name.endswith("ipv6")
        records = packets(steps, *(((("2001:db8::1", 40001), ("2001:db8::2", 80)) if v6 else ())), v6=v6)
        path.write_bytes(pcap_file(records))
        written.append(path)
    return written


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    for p in write():
        print(p)
