"""Compare two behaviours (captures or transcripts) point by point, and name the differences.

A behaviour is a list of connections (segments in the notation) plus socket events. Unless
`strict`, what is noise is left out: ports, ISNs (numbers are relative), windows, options,
timestamps, ECE/CWR on SYNs, PSH, and how a data exchange was cut into segments (a run of data
segments and the ACKs between them compares as one "data" step).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from .wire.classify import summary
from .wire.connections import Connection, track
from .wire.model import ACK, CWR, ECE, FIN, PSH, RST, SYN, Segment
from .wire.show import endpoint_text, segment_line
from .wire.transcript import EventLine, NotationError, SegmentLine, flags_text, parse_line


@dataclass
class Behaviour:
    """What one side of a diff shows: connections (as notation lines) and events."""

    name: str
    connections: list[list[SegmentLine]] = field(default_factory=list)
    events: list[EventLine] = field(default_factory=list)
    has_events: bool = False  # a capture file has none to compare; a transcript does
    labels: list[str] = field(default_factory=list)  # per connection, e.g. "[::1]:5000"


@dataclass(frozen=True)
class Step:
    """One comparable step of a connection: `key` is compared, `text` is shown."""

    key: tuple
    text: str


@dataclass
class ConnectionDiff:
    index: int
    label_a: str
    label_b: str
    rows: list[tuple[str, str, str]]  # (marker, A text, B text): " " same, "|" changed, "<" only A, ">" only B
    named: list[str]
    facts_a: dict
    facts_b: dict


@dataclass
class Difference:
    """The result of comparing two behaviours."""

    a: str
    b: str
    connections: list[ConnectionDiff] = field(default_factory=list)
    named: list[str] = field(default_factory=list)  # differences in words, overall
    event_rows: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.named and all(not c.named for c in self.connections)


# --- from notation lines back to connections (to classify transcripts too) -----------------------

def as_connection(index: int, lines: list[SegmentLine]) -> Connection:
    """A Connection rebuilt from relative segment lines (each side's ISN taken as 0)."""
    client, server = ("client", 1), ("server", 2)
    segs = []
    for n, line in enumerate(lines, start=1):
        src, dst = (client, server) if line.side == "C" else (server, client)
        segs.append(Segment(
            index=n, t=line.t or 0.0, family=4, src=src[0], sport=src[1], dst=dst[0], dport=dst[1],
            seq=(line.seq or 0), ack=(line.ack or 0), flags=line.flags or 0, win=line.win or 0,
            payload_len=line.length or 0,
        ))
    conns = list(track(segs, linger=float("inf")))
    conn = conns[0] if conns else Connection(index, client, server)
    for extra in conns[1:]:  # a reused tuple would split; a transcript's connection is one
        conn.segments.extend(extra.segments)
    conn.index = index
    return conn


# --- normalising ----------------------------------------------------------------------------------

def _flags(line: SegmentLine, strict: bool) -> int:
    flags = line.flags or 0
    if strict:
        return flags
    if flags & SYN:
        flags &= ~(ECE | CWR)  # macOS sets ECE on SYNs: not close behaviour
    return flags & ~PSH


def steps(lines: list[SegmentLine], strict: bool = False) -> list[Step]:
    """The comparable steps of a connection."""
    if strict:
        return [Step((l.side, l.flags, l.seq, l.length, l.ack, l.win, l.options), l.text(with_time=False)) for l in lines]
    out: list[Step] = []
    fin_end = {}  # side -> relative seq just after its FIN
    run: list[SegmentLine] = []

    def flush():
        if not run:
            return
        c = sum(l.length or 0 for l in run if l.side == "C")
        s = sum(l.length or 0 for l in run if l.side == "S")
        parts = ([f"C > S {c} bytes"] if c else []) + ([f"S > C {s} bytes"] if s else [])
        out.append(Step(("data",), f"data: {', '.join(parts)} ({len(run)} segments)"))
        run.clear()

    for l in lines:
        flags = _flags(l, strict)
        peer = "S" if l.side == "C" else "C"
        is_data = (l.length or 0) > 0 and not flags & (SYN | FIN | RST)
        pure_ack = flags == ACK and not (l.length or 0)
        acks_fin = peer in fin_end and flags & ACK and l.ack is not None and l.ack >= fin_end[peer]
        if is_data or (run and pure_ack and not acks_fin):
            run.append(l)
            continue
        if pure_ack and not acks_fin and (l.ack or 0) > 1:
            # an ACK of data outside a run of data (after a FIN that carried the last bytes, say):
            # whether it comes before the ACK of the FIN is delayed-ACK timing, like segmentation
            continue
        flush()
        if flags & FIN:
            fin_end[l.side] = (l.seq or 0) + (l.length or 0) + 1
        what = flags_text(flags)
        if flags & ACK and acks_fin:
            what += " (acks FIN)"
        if (l.length or 0) and flags & (FIN | RST):
            what += " +data"
        out.append(Step((l.side, flags, bool(acks_fin), bool(l.length)), f"{l.side} > {peer}  {what}"))
    flush()
    return out


def _event_key(ev: EventLine) -> tuple:
    keep = ("code", "errors", "name", "family", "hadError")
    return (ev.side, ev.name) + tuple((k, str(v)) for k, v in ev.args if k in keep)


def _event_text(ev: EventLine) -> str:
    keep = ("code", "errors", "name", "family", "hadError")
    return EventLine(ev.side, ev.name, tuple((k, v) for k, v in ev.args if k in keep)).text(with_time=False)


# --- aligning -------------------------------------------------------------------------------------

def align(a: list[Step], b: list[Step]) -> list[tuple[str, str, str]]:
    rows = []
    matcher = difflib.SequenceMatcher(a=[s.key for s in a], b=[s.key for s in b], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            rows += [(" ", a[i].text, b[j].text) for i, j in zip(range(i1, i2), range(j1, j2))]
        elif op == "replace":
            n = max(i2 - i1, j2 - j1)
            for k in range(n):
                ta = a[i1 + k].text if i1 + k < i2 else ""
                tb = b[j1 + k].text if j1 + k < j2 else ""
                rows.append(("|" if ta and tb else ("<" if ta else ">"), ta, tb))
        elif op == "delete":
            rows += [("<", a[i].text, "") for i in range(i1, i2)]
        else:
            rows += [(">", "", b[j].text) for j in range(j1, j2)]
    return rows


# --- naming differences ---------------------------------------------------------------------------

def _has(lines: list[SegmentLine], pred) -> bool:
    return any(pred(l) for l in lines)


def _syn_after_rst(lines: list[SegmentLine]) -> bool:
    seen_rst = False
    for l in lines:
        if l.side == "S" and (l.flags or 0) & RST:
            seen_rst = True
        elif seen_rst and l.side == "C" and (l.flags or 0) & SYN:
            return True
    return False


def _handshake_done(lines: list[SegmentLine]) -> bool:
    return _has(lines, lambda l: l.side == "S" and (l.flags or 0) & SYN and (l.flags or 0) & ACK)


def _extra_ack_after_handshake(st: list[Step]) -> str | None:
    # S, S., . then another pure ACK before anything else
    if len(st) >= 4 and [s.key[:2] for s in st[:3]] == [("C", SYN), ("S", SYN | ACK), ("C", ACK)]:
        nxt = st[3]
        if nxt.key[:2] in (("S", ACK), ("C", ACK)) and not nxt.key[2]:
            return "server" if nxt.key[0] == "S" else "client"
    return None


def _closer(lines: list[SegmentLine], bit: int) -> str | None:
    for l in lines:
        if (l.flags or 0) & bit:
            return "client" if l.side == "C" else "server"
    return None


def name_differences(la: list[SegmentLine], lb: list[SegmentLine], sa: list[Step], sb: list[Step],
                     fa: dict, fb: dict) -> list[str]:
    out = []
    if fa["fin_ack"] and fb["fin_ack"] and fa["fin_ack"] != fb["fin_ack"]:
        words = {"separate": "separate", "piggybacked": "piggybacked on the peer's FIN"}
        out.append(f"ACK of the first FIN: {words[fa['fin_ack']]} (A) vs {words[fb['fin_ack']]} (B)")
    ra, rb = _syn_after_rst(la), _syn_after_rst(lb)
    if ra != rb:
        out.append(f"SYN retried after RST ({'A' if ra else 'B'}; Windows does this)")
    rst_a, rst_b = _closer(la, RST), _closer(lb, RST)
    fin_a, fin_b = _closer(la, FIN), _closer(lb, FIN)
    if rst_a and not rst_b and fin_b:
        out.append(f"RST instead of FIN: A's {rst_a} resets where B's {fin_b} closes with a FIN")
    elif rst_b and not rst_a and fin_a:
        out.append(f"RST instead of FIN: B's {rst_b} resets where A's {fin_a} closes with a FIN")
    ha, hb = _handshake_done(la), _handshake_done(lb)
    if rst_a and rst_b and ha != hb:
        out.append(f"no handshake before RST ({'B' if ha else 'A'})")
    ea, eb = _extra_ack_after_handshake(sa), _extra_ack_after_handshake(sb)
    if bool(ea) != bool(eb):
        out.append(f"extra pure ACK after the handshake ({'A' if ea else 'B'}: from the {ea or eb})")
    if fa["outcome"] != fb["outcome"]:
        out.append(f"outcome: {fa['outcome']} (A) vs {fb['outcome']} (B)")
    if not out and [s.key for s in sa] != [s.key for s in sb]:
        rows = align(sa, sb)
        removed = sum(1 for op, ta, _ in rows if op != " " and ta)
        added = sum(1 for op, _, tb in rows if op != " " and tb)
        out.append(f"segments differ ({removed} only in A, {added} only in B; see the rows)")
    return out


# TCP analysis labels in words, for the differences `diff` names. Keep-alive probes and their ACKs
# (the endpoints' timers) and SYNs reusing ports are behaviour; the rest follows timing and load
# (retransmissions, duplicate ACKs and reordering on a loaded loopback, windows as the reader's
# application reads, lost or ACKed-unseen segments where a capture starts) and is named only with
# --strict: a scenario about them says so in its expectation ([retransmission], never [dup-ack]).
LABEL_WORDS = {
    "retransmission": "retransmissions", "fast-retransmission": "fast retransmissions",
    "spurious-retransmission": "spurious retransmissions", "out-of-order": "out-of-order segments",
    "dup-ack": "duplicate ACKs", "keep-alive": "keep-alive probes", "keep-alive-ack": "keep-alive ACKs",
    "zero-window": "zero-window segments", "zero-window-probe": "zero-window probes",
    "zero-window-probe-ack": "zero-window probe ACKs", "reused-ports": "SYNs reusing ports",
    "window-update": "window updates", "window-full": "full-window segments",
    "lost-segment": "segments after an unseen one", "ack-lost-segment": "ACKs of unseen segments",
}
BEHAVIOUR_LABELS = ("keep-alive", "keep-alive-ack", "reused-ports")


def label_differences(la: list[SegmentLine], lb: list[SegmentLine], strict: bool = False) -> list[str]:
    """How many segments carry each TCP analysis label, where A and B differ ("keep-alive probes: 3 (A) vs none (B)")."""
    def counts(lines):
        out: dict[str, int] = {}
        for line in lines:
            for label in line.analysis or ():
                out[label] = out.get(label, 0) + 1
        return out

    ca, cb = counts(la), counts(lb)
    named = []
    for label, words in LABEL_WORDS.items():
        if label not in BEHAVIOUR_LABELS and not strict:
            continue
        na, nb = ca.get(label, 0), cb.get(label, 0)
        if na != nb:
            named.append(f"{words}: {na or 'none'} (A) vs {nb or 'none'} (B)")
    return named


def _host(label: str) -> str:
    """The address of an endpoint label, without its port: "[::1]:5000" -> "::1"."""
    host = label.rsplit(":", 1)[0] if label.count(":") == 1 or label.startswith("[") else label
    return host.strip("[]")


def event_steps(events: list[EventLine], strict: bool) -> list[Step]:
    """Events as comparable steps; unless strict, a run of the same event (how many `data`
    events a transfer took) compares as one."""
    out: list[Step] = []
    for e in events:
        step = Step(_event_key(e), _event_text(e))
        if not strict and out and out[-1].key == step.key:
            continue
        out.append(step)
    return out


def compare(a: Behaviour, b: Behaviour, strict: bool = False) -> Difference:
    diff = Difference(a.name, b.name)
    n = max(len(a.connections), len(b.connections))
    if not a.connections and b.connections:  # a fixture of a run that put nothing on the wire
        diff.named.append("no packet at all (A)")
    elif a.connections and not b.connections:
        diff.named.append("no packet at all (B)")
    elif len(a.connections) != len(b.connections):
        diff.named.append(f"connections: {len(a.connections)} (A) vs {len(b.connections)} (B)")
    for i in range(n):
        la = a.connections[i] if i < len(a.connections) else []
        lb = b.connections[i] if i < len(b.connections) else []
        fa = summary(as_connection(i + 1, la)) if la else {"outcome": "-", "fin_ack": None, "zeek_state": "-"}
        fb = summary(as_connection(i + 1, lb)) if lb else {"outcome": "-", "fin_ack": None, "zeek_state": "-"}
        sa, sb = steps(la, strict), steps(lb, strict)
        named = name_differences(la, lb, sa, sb, fa, fb) if la and lb else []
        named += label_differences(la, lb, strict)
        ha = _host(a.labels[i]) if i < len(a.labels) and a.labels[i] else ""
        hb = _host(b.labels[i]) if i < len(b.labels) and b.labels[i] else ""
        if ha and hb and ha != hb:
            named.insert(0, f"server address: {ha} (A) vs {hb} (B)")
        diff.connections.append(ConnectionDiff(
            i + 1, a.labels[i] if i < len(a.labels) else "", b.labels[i] if i < len(b.labels) else "",
            align(sa, sb), named, fa, fb,
        ))
    if a.has_events and b.has_events:
        # each side's events in its own order: how the client's and the server's callbacks
        # interleave in one process is scheduling, not behaviour
        for side in dict.fromkeys([e.side for e in a.events] + [e.side for e in b.events]):
            ea = event_steps([e for e in a.events if e.side == side], strict)
            eb = event_steps([e for e in b.events if e.side == side], strict)
            rows = align(ea, eb)
            diff.event_rows += rows
            only_a = [r[1] for r in rows if r[0] in "<|" and r[1]]
            only_b = [r[2] for r in rows if r[0] in ">|" and r[2]]
            for text in dict.fromkeys(only_a):
                if text in only_b:
                    diff.named.append(f"event order differs: {text}")
                else:
                    diff.named.append(f"event only in A: {text}")
            for text in dict.fromkeys(only_b):
                if text not in only_a:
                    diff.named.append(f"event only in B: {text}")
    return diff


# --- output ---------------------------------------------------------------------------------------

def differences(d: Difference) -> list[str]:
    """Every difference in words: the overall ones, then each connection's ("connection N: ...")."""
    return d.named + [f"connection {c.index}: {n}" for c in d.connections for n in c.named]


def render(d: Difference, title: str = "") -> str:
    width = 44
    out = []
    if title:
        out.append(f"=== {title}")
    out.append(f"A: {d.a}\nB: {d.b}")
    for c in d.connections:
        head = f"connection {c.index}"
        if c.label_a or c.label_b:
            head += f": {c.label_a or '-'} | {c.label_b or '-'}"
        out.append(f"\n{head}   A: {c.facts_a['outcome']}/{c.facts_a['fin_ack'] or '-'}   B: {c.facts_b['outcome']}/{c.facts_b['fin_ack'] or '-'}")
        for marker, ta, tb in c.rows:
            out.append(f"  {ta:<{width}} {marker} {tb}".rstrip())
        for n in c.named:
            out.append(f"  * {n}")
    if d.event_rows and any(r[0] != " " for r in d.event_rows):
        out.append("\nevents")
        for marker, ta, tb in d.event_rows:
            out.append(f"  {ta:<{width}} {marker} {tb}".rstrip())
    out.append("")
    named = differences(d)
    if named:
        out.append("differences:")
        out += [f"  - {n}" for n in named]
    else:
        out.append("no difference in behaviour")
    return "\n".join(out) + "\n"


def record(d: Difference) -> dict:
    return {
        "a": d.a, "b": d.b, "equal": d.equal, "differences": d.named,
        "connections": [
            {"index": c.index, "a": c.facts_a, "b": c.facts_b, "differences": c.named,
             "rows": [{"op": m, "a": ta, "b": tb} for m, ta, tb in c.rows]}
            for c in d.connections
        ],
        "events": [{"op": m, "a": ta, "b": tb} for m, ta, tb in d.event_rows],
    }


# --- inputs ---------------------------------------------------------------------------------------

_SKIP_PREFIXES = ("#", "==", "warning:")


def from_connections(name: str, connections: list[Connection]) -> Behaviour:
    return Behaviour(
        name,
        [[segment_line(s, 0.0, connection=c.index) for s in c.segments] for c in connections],
        labels=[endpoint_text(*c.server) for c in connections],
    )


def parse_transcript(text: str, name: str) -> Behaviour:
    """A fixture transcript (.txt) or `verifier show` text output, as a Behaviour.

    Raises NotationError (with the line number in its message) on a line that is neither."""
    header = re.compile(r"^connection (\d+): (\S+) > (\S+)")
    summary_line = re.compile(r"^\d+ packets \(")
    conns: dict[int, list[SegmentLine]] = {}
    labels: dict[int, str] = {}
    events: list[EventLine] = []
    current = 1
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(_SKIP_PREFIXES) or summary_line.match(line):
            continue
        m = header.match(line)
        if m:
            current = int(m.group(1))
            labels[current] = m.group(3)
            conns.setdefault(current, [])
            continue
        try:
            item = parse_line(line)
        except NotationError as e:
            raise NotationError(f"line {n}: {e}") from None
        if isinstance(item, SegmentLine):
            conns.setdefault(item.connection or current, []).append(item)
        else:
            events.append(item)
    order = sorted(conns)
    return Behaviour(name, [conns[k] for k in order], events, has_events=True,
                     labels=[labels.get(k, "") for k in order])
