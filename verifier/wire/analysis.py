"""Wireshark's TCP analysis labels (retransmission, dup-ack, keep-alive, ...) for each segment of a capture.

The rules are Wireshark 4.0's, `epan/dissectors/packet-tcp.c`, read at v4.0.17 (the tshark of
Debian 12): `tcp_analyze_sequence_number` and what `dissect_tcp` does around it for each frame,
in capture order (tshark's single pass):

1. the conversation: the 4-tuple's current one; a SYN (without ACK) whose seq differs from the
   base seq its sender already has starts a new conversation, labelled `reused-ports`; a SYN
   with the same seq sets that sender's next seq back to its highest ACKable seq; a SYN-ACK with
   another seq moves its sender's base, labelled `reused-ports` too;
2. base seqs: a sender's first segment (its seq, or seq - 1 without SYN); the peer's from the
   first ACK (ack - 1);
3. the analysis proper, on raw (absolute) seq/ack and the raw (unscaled) window;
4. after it: a SYN records its time and resets `is_first_ack`; the first pure ACK after a SYN
   sets the initial RTT; a pure ACK clears `is_first_ack`; the window-scale option is stored;
   a SYN/SYN-ACK without that option switches scaling off for both directions.

Labels are tshark's field names with `-` for `_` (`tcp.analysis.duplicate_ack` is `dup-ack`):
a fast or a spurious retransmission is a retransmission too, as tshark's fields say. Times are
compared in nanoseconds; captures give times as float seconds, so a delta within a fraction of a
microsecond of a threshold (20 ms for a fast retransmission, the initial RTT or 3 ms for
out-of-order) may fall on the other side of it.
"""

from __future__ import annotations

from .model import ACK, FIN, RST, SYN, Segment

MASK = 0xFFFFFFFF

# TCP_A_* bits of packet-tcp.c
RETRANSMISSION, LOST_PACKET, ACK_LOST_PACKET, KEEP_ALIVE = 0x0001, 0x0002, 0x0004, 0x0008
DUPLICATE_ACK, ZERO_WINDOW, ZERO_WINDOW_PROBE, ZERO_WINDOW_PROBE_ACK = 0x0010, 0x0020, 0x0040, 0x0080
KEEP_ALIVE_ACK, OUT_OF_ORDER, FAST_RETRANSMISSION, WINDOW_UPDATE = 0x0100, 0x0200, 0x0400, 0x0800
WINDOW_FULL, REUSED_PORTS, SPURIOUS_RETRANSMISSION = 0x1000, 0x2000, 0x4000

# The contract's vocabulary, in its order; each name with the bits that make tshark show its field
LABELS = (
    ("retransmission", RETRANSMISSION | FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION),
    ("fast-retransmission", FAST_RETRANSMISSION),
    ("spurious-retransmission", SPURIOUS_RETRANSMISSION),
    ("out-of-order", OUT_OF_ORDER),
    ("dup-ack", DUPLICATE_ACK),
    ("keep-alive", KEEP_ALIVE),
    ("keep-alive-ack", KEEP_ALIVE_ACK),
    ("zero-window", ZERO_WINDOW),
    ("zero-window-probe", ZERO_WINDOW_PROBE),
    ("zero-window-probe-ack", ZERO_WINDOW_PROBE_ACK),
    ("window-full", WINDOW_FULL),
    ("window-update", WINDOW_UPDATE),
    ("lost-segment", LOST_PACKET),
    ("ack-lost-segment", ACK_LOST_PACKET),
    ("reused-ports", REUSED_PORTS),
)
NAMES = tuple(name for name, _ in LABELS)
# tshark's field for each label
TSHARK_FIELDS = {name: "tcp.analysis." + ("duplicate_ack" if name == "dup-ack" else name.replace("-", "_")) for name in NAMES}

MAX_UNACKED = 10_000  # TCP_MAX_UNACKED_SEGMENTS: past it a SYN or FIN no longer counts one in nextseq
FAST_RETRANSMISSION_NS = 20_000_000  # a retransmission within 20 ms of the peer's 2nd+ duplicate ACK
OUT_OF_ORDER_NS = 3_000_000  # without an initial RTT: a late segment within 3 ms is out of order
# State of conversations idle this long (capture time) is forgotten, closed ones (a RST, or a FIN
# each way) after CLOSED_FORGET_AFTER (as connections.track hands connections on), except each
# 4-tuple's base seqs (so a later SYN reusing its ports is still recognised), up to BASES_MAX
# 4-tuples (then those are forgotten too, all at once): memory stays bounded on an endless stream.
# A packet of a forgotten conversation starts afresh: Wireshark's labels may then differ (a FIN
# retransmitted more than 2 s after the close is not called a retransmission).
FORGET_AFTER = 30.0
CLOSED_FORGET_AFTER = 2.0
BASES_MAX = 1 << 15


NS_LIMIT = float(1 << 62)


def _ns(t: float) -> int:
    """A capture time in whole nanoseconds (round(t * 1e9)); 0 for a time that does not fit (inf, nan)."""
    x = t * 1e9
    return round(x) if -NS_LIMIT < x < NS_LIMIT else 0


def names(bits: int) -> tuple[str, ...]:
    """The labels of a TCP_A_* bit set, in the vocabulary's order."""
    return tuple(name for name, mask in LABELS if bits & mask) if bits else ()


def _gt(x: int, y: int) -> bool:  # GT_SEQ(x, y): (gint32)(y - x) < 0
    return ((y - x) & MASK) >= 0x80000000


def _lt(x: int, y: int) -> bool:  # LT_SEQ(x, y): (gint32)(x - y) < 0
    return ((x - y) & MASK) >= 0x80000000


def _le(x: int, y: int) -> bool:  # LE_SEQ(x, y): (gint32)(x - y) <= 0
    d = (x - y) & MASK
    return d == 0 or d >= 0x80000000


class Flow:
    """One direction of a conversation (packet-tcp.c's tcp_flow_t and its seq-analysis info)."""

    __slots__ = ("base_set", "base_seq", "win_scale", "window", "is_first_ack", "last_flags", "nextseq",
                 "nextseq_ns", "maxseqtobeacked", "lastack", "lastack_ns", "dupacknum", "unacked", "fin")

    def __init__(self) -> None:
        self.base_set = False
        self.base_seq = 0
        self.win_scale = -1  # -1 unknown, -2 no scaling, else the shift
        self.window = MASK  # G_MAXUINT32 until a segment says
        self.is_first_ack = False
        self.last_flags = 0  # the analysis bits of this direction's last segment
        self.nextseq = 0  # 0: nothing seen yet
        self.nextseq_ns = 0
        self.maxseqtobeacked = 0
        self.lastack = 0
        self.lastack_ns = 0
        self.dupacknum = 0
        self.unacked: list[int] = []  # next seqs of segments not yet ACKed (at most MAX_UNACKED)
        self.fin = False  # this direction has sent a FIN


class Conversation:
    """A Wireshark TCP conversation: its two flows (by sender) and the handshake times."""

    __slots__ = ("flows", "mru_syn_ns", "first_rtt_ns", "last_t", "key", "closed")

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.flows: dict[tuple, Flow] = {}
        self.mru_syn_ns = 0
        self.first_rtt_ns = 0
        self.last_t = 0.0
        self.closed = False  # a RST, or a FIN each way, was seen

    def flow(self, sender: tuple) -> Flow:
        f = self.flows.get(sender)
        if f is None:
            f = self.flows[sender] = Flow()
        return f


class Analyzer:
    """Feed every TCP segment of a capture in capture order; `labels(seg)` is that segment's."""

    def __init__(self, forget_after: float | None = None, closed_forget_after: float | None = None) -> None:
        self.conversations: dict[tuple, Conversation] = {}  # both directions' 4-tuples -> current
        self.bases: dict[tuple, dict] = {}  # forgotten conversations: 4-tuple -> {sender: base seq}
        self.forget_after = FORGET_AFTER if forget_after is None else forget_after
        self.closed_after = CLOSED_FORGET_AFTER if closed_forget_after is None else closed_forget_after
        self.sweep_at = 0.0

    def labels(self, seg: Segment) -> tuple[str, ...]:
        return names(self.bits(seg))

    def bits(self, seg: Segment) -> int:
        t_ns = _ns(seg.t)
        sender, receiver = (seg.src, seg.sport), (seg.dst, seg.dport)
        key = (sender, receiver)
        conv = self.conversations.get(key)
        if conv is None:
            conv = self._new(key, self.bases.pop(key, None) or self.bases.pop((receiver, sender), None))
        flags, seq, ack = seg.flags, seg.seq & MASK, seg.ack & MASK
        bits = 0
        fwd, rev = conv.flow(sender), conv.flow(receiver)
        if flags & (SYN | ACK) == SYN and fwd.base_set:
            if seq != fwd.base_seq:  # a new conversation on the same ports
                conv = self._new(key, None)
                fwd, rev = conv.flow(sender), conv.flow(receiver)
                bits |= REUSED_PORTS
            else:  # the same SYN again: its sender's flow may have been moved on by a RST (issue 17616)
                fwd.nextseq = fwd.maxseqtobeacked
        if flags & (SYN | ACK) == SYN | ACK and fwd.base_set and seq != fwd.base_seq:
            fwd.base_seq = seq
            bits |= REUSED_PORTS
        if not fwd.base_set:
            fwd.base_seq = seq if flags & SYN else (seq - 1) & MASK
            fwd.base_set = True
        if not rev.base_set and flags & ACK:
            rev.base_seq = (ack - 1) & MASK
            rev.base_set = True
        bits |= _analyze(conv, fwd, rev, seq, ack, seg.payload_len, flags, seg.win, t_ns)
        # what dissect_tcp does after the analysis
        if flags & SYN:
            if not flags & ACK:
                conv.mru_syn_ns = t_ns
            fwd.is_first_ack = True
        if flags & (SYN | ACK) == ACK:
            if conv.mru_syn_ns and not conv.first_rtt_ns:
                conv.first_rtt_ns = t_ns - conv.mru_syn_ns
            fwd.is_first_ack = False
        for name, value in seg.options:
            if name == "wscale":
                fwd.win_scale = min(value, 14)
        if flags & SYN:
            if fwd.win_scale == -1:
                fwd.win_scale = rev.win_scale = -2
            elif flags & ACK and rev.win_scale == -2:
                fwd.win_scale = -2
        if flags & FIN:
            fwd.fin = True
        if flags & RST or (fwd.fin and rev.fin):
            conv.closed = True
        conv.last_t = seg.t
        if seg.t >= self.sweep_at:
            self._forget_idle(seg.t)
        return bits

    def _new(self, key: tuple, bases: dict | None) -> Conversation:
        conv = Conversation(key)
        if bases:  # a forgotten conversation's base seqs: a SYN on its ports is still told apart
            for sender, base in bases.items():
                f = conv.flow(sender)
                f.base_set, f.base_seq = True, base
        self.conversations[key] = self.conversations[(key[1], key[0])] = conv
        return conv

    def _forget_idle(self, now: float) -> None:
        self.sweep_at = now + min(self.forget_after, self.closed_after) / 4
        idle = [conv for key, conv in self.conversations.items()
                if key == conv.key and now - conv.last_t > (self.closed_after if conv.closed else self.forget_after)]
        # whether the bases are cleared is decided once for the whole sweep: the same whatever
        # order the idle conversations come in
        new = sum(1 for conv in idle if conv.key not in self.bases)
        if new and len(self.bases) + new > BASES_MAX:
            self.bases.clear()
        for conv in idle:
            key = conv.key
            self.conversations.pop(key, None)
            self.conversations.pop((key[1], key[0]), None)  # the same key when both ends are one
            self.bases[key] = {s: f.base_seq for s, f in conv.flows.items() if f.base_set}


def _analyze(conv: Conversation, fwd: Flow, rev: Flow, seq: int, ack: int, seglen: int, flags: int,
             window: int, t_ns: int) -> int:
    """tcp_analyze_sequence_number: this segment's bits; updates both flows as Wireshark does."""
    bits = 0
    control = flags & (SYN | FIN | RST)
    done_fwd = False
    if seglen == 1 and seq == fwd.nextseq and rev.window == 0:
        bits |= ZERO_WINDOW_PROBE
        done_fwd = True
    if not done_fwd:
        if window == 0 and not control:
            bits |= ZERO_WINDOW
        if fwd.nextseq and _gt(seq, fwd.nextseq) and not flags & RST:
            bits |= LOST_PACKET
        if seglen in (0, 1) and seq == (fwd.nextseq - 1) & MASK and not control:
            bits |= KEEP_ALIVE
        same = seglen == 0 and seq == fwd.nextseq and ack == fwd.lastack and not control
        if same and window and window != fwd.window:
            bits |= WINDOW_UPDATE
        if seglen > 0 and rev.win_scale != -1 and not control:
            shift = 0 if rev.is_first_ack or rev.win_scale == -2 else rev.win_scale
            if (seq + seglen) & MASK == (rev.lastack + (rev.window << shift)) & MASK:
                bits |= WINDOW_FULL
        if same and window and window == fwd.window and rev.last_flags & KEEP_ALIVE:
            bits |= KEEP_ALIVE_ACK
            done_fwd = True
        elif same and window == 0 and window == fwd.window and rev.last_flags & ZERO_WINDOW_PROBE:
            bits |= ZERO_WINDOW_PROBE_ACK
            done_fwd = True
        elif same and window and window == fwd.window:
            fwd.dupacknum = 1 if fwd.dupacknum == -1 else fwd.dupacknum + 1
            bits |= DUPLICATE_ACK
    # finished_fwd:
    if ack != fwd.lastack:
        fwd.dupacknum = 0
    if rev.maxseqtobeacked and _gt(ack, rev.maxseqtobeacked) and flags & ACK:
        if _lt(rev.maxseqtobeacked, rev.nextseq):
            rev.maxseqtobeacked = rev.nextseq
            bits |= ACK_LOST_PACKET
        else:
            if rev.dupacknum == 0:
                bits |= ACK_LOST_PACKET
            rev.dupacknum = -1
    if seglen > 0 or flags & (SYN | FIN):
        bits |= _retransmission(conv, fwd, rev, seq, seglen, flags, t_ns, bits)
    # finished_checking_retransmission_type:
    nextseq = (seq + seglen) & MASK
    if (seglen or flags & (SYN | FIN)) and len(fwd.unacked) < MAX_UNACKED:
        if flags & (SYN | FIN):
            nextseq = (nextseq + 1) & MASK
        fwd.unacked.append(nextseq)
    if (_gt(nextseq, fwd.nextseq) or not fwd.nextseq) and not bits & ZERO_WINDOW_PROBE:
        fwd.nextseq = nextseq
        fwd.nextseq_ns = t_ns
    if (seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked) and not bits & ZERO_WINDOW_PROBE:
        fwd.maxseqtobeacked = fwd.nextseq
    fwd.window = window
    fwd.lastack = ack
    fwd.lastack_ns = t_ns
    fwd.last_flags = bits
    if rev.unacked:  # what this ACKs (Wireshark looks at the ack field whatever the flags)
        rev.unacked = [n for n in rev.unacked if _gt(n, ack)]
    return bits


def _retransmission(conv: Conversation, fwd: Flow, rev: Flow, seq: int, seglen: int, flags: int, t_ns: int,
                    bits: int) -> int:
    """The retransmission / fast retransmission / spurious / out-of-order part (one bit or none)."""
    if bits & KEEP_ALIVE:
        return 0
    not_advanced = bool(fwd.nextseq) and _lt(seq, fwd.nextseq)
    if seglen > 1 and (fwd.nextseq - 1) & MASK == seq:
        not_advanced = False  # new data after a (possible) zero-window probe's byte
    if seglen > 0 and rev.lastack and _le((seq + seglen) & MASK, rev.lastack):
        return SPURIOUS_RETRANSMISSION
    # packet-tcp.c takes these time differences as unsigned: a time going backwards is huge
    if (not_advanced and rev.dupacknum >= 2 and rev.lastack == seq
            and 0 <= t_ns - rev.lastack_ns < FAST_RETRANSMISSION_NS):
        return FAST_RETRANSMISSION
    threshold = conv.first_rtt_ns % (1 << 64) if conv.first_rtt_ns else OUT_OF_ORDER_NS
    if (not_advanced and 0 <= t_ns - fwd.nextseq_ns < threshold
            and fwd.nextseq != (seq + seglen + (1 if flags & (SYN | FIN) else 0)) & MASK):
        return OUT_OF_ORDER
    return RETRANSMISSION if not_advanced else 0
