"""Test builder: turn a short TCP script ("C S", "S S.", "C P. 3") into Segments with real raw numbers."""

from __future__ import annotations

from verifier.wire.model import ACK, Segment
from verifier.wire.transcript import parse_flags

CLIENT = ("127.0.0.1", 53448)
SERVER = ("127.0.0.1", 5000)


def script(*steps: str, client=CLIENT, server=SERVER, isn_c=1000, isn_s=5000, t0=1_700_000_000.0,
           dt=0.0001, ack_override: dict | None = None) -> list[Segment]:
    """Each step: "SIDE FLAGS [LEN]" — the builder keeps each side's next seq and what it has
    received, so seq/ack are what a real TCP would send (SYN and FIN count one).
    `ack_override` maps a step index to an explicit relative ack (for stale ACKs)."""
    nxt = {"C": isn_c, "S": isn_s}
    isn = {"C": isn_c, "S": isn_s}
    rcvd = {"C": None, "S": None}  # next seq expected from the peer, once its SYN was seen
    out = []
    for i, step in enumerate(steps):
        parts = step.split()
        side, flags = parts[0], parse_flags(parts[1])
        length = int(parts[2]) if len(parts) > 2 else 0
        peer = "S" if side == "C" else "C"
        src, dst = (client, server) if side == "C" else (server, client)
        seq = nxt[side]
        if flags & 0x02:  # SYN
            seq = isn[side]
        ack = 0
        if flags & ACK:
            ack = rcvd[side] if rcvd[side] is not None else isn[peer] + 1
            if ack_override and i in ack_override:
                ack = isn[peer] + ack_override[i]
        out.append(Segment(
            index=i + 1, t=t0 + i * dt, family=6 if ":" in src[0] else 4,
            src=src[0], sport=src[1], dst=dst[0], dport=dst[1],
            seq=seq % (1 << 32), ack=ack % (1 << 32), flags=flags, win=65483, payload_len=length,
            ip_id=i,
        ))
        end = seq + length + (1 if flags & 0x02 else 0) + (1 if flags & 0x01 else 0)
        if not flags & 0x04:  # a RST does not advance the sequence space
            nxt[side] = max(nxt[side], end)
            rcvd[peer] = max(rcvd[peer] or 0, end)
    return out
