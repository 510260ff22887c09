"""Reference readers for bench_show.py: read a pcap and decode every TCP header, with dpkt or scapy.

    .venv/bin/python bench/readers.py dpkt|scapy FILE

They only decode (flags, seq, ack, payload length, per packet, summed so nothing is optimised
away): no connection tracking, no output. What a Python program gets from those libraries
before doing any of the work `verifier show` does. Prints `packets tcp` on stdout.
"""

from __future__ import annotations

import sys


def with_dpkt(path: str) -> tuple[int, int]:
    import dpkt

    packets = tcp = 0
    total = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            packets += 1
            try:
                ip = dpkt.ethernet.Ethernet(buf).data
            except (dpkt.UnpackError, dpkt.NeedData):
                continue
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) and isinstance(ip.data, dpkt.tcp.TCP):
                seg = ip.data
                tcp += 1
                total += seg.flags + seg.seq + seg.ack + len(seg.data)
    return packets, tcp


def with_scapy(path: str) -> tuple[int, int]:
    from scapy.layers.inet import TCP
    from scapy.utils import PcapReader

    packets = tcp = 0
    total = 0
    with PcapReader(path) as reader:
        for pkt in reader:
            packets += 1
            if TCP in pkt:
                seg = pkt[TCP]
                tcp += 1
                total += int(seg.flags) + seg.seq + seg.ack + len(seg.payload)
    return packets, tcp


if __name__ == "__main__":
    which, path = sys.argv[1:3]
    packets, tcp = {"dpkt": with_dpkt, "scapy": with_scapy}[which](path)
    print(packets, tcp)
