"""The transcript notation (tcpdump/packetdrill style): format and parse segment and event lines.

One notation for actual and expected packets:

    +0.000123 C > S  F. 1:1(0) ack 1
    +0.000150 @2 S > C  R. 0:0(0) ack 1
    +0.000200 server end readableEnded=true
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .analysis import NAMES
from .model import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG

# tcpdump's order of flag letters (print-tcp.c tcp_flag_values); "." is ACK.
FLAG_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"), (ECE, "E"), (CWR, "W"))
LETTER_FLAG = {letter: bit for bit, letter in FLAG_LETTERS}


def flags_text(flags: int) -> str:
    text = "".join(letter for bit, letter in FLAG_LETTERS if flags & bit)
    return text or "none"


def parse_flags(text: str) -> int:
    if text == "none":
        return 0
    bits = 0
    for ch in text:
        if ch not in LETTER_FLAG:
            raise ValueError(f"unknown flag letter {ch!r} in {text!r} (use F S R P . U E W)")
        bits |= LETTER_FLAG[ch]
    return bits


@dataclass(frozen=True, slots=True)
class SegmentLine:
    """A segment in the notation. None in a field means "any" (written `*`)."""

    side: str  # "C" or "S" (the sender)
    flags: int | None
    seq: int | None
    length: int | None
    ack: int | None  # None with has_ack: any ack; has_ack False: no ACK flag, no ack shown
    connection: int | None = None  # @N selector; None = the only/first connection
    t: float | None = None
    win: int | None = None
    options: str | None = None
    tos: int | None = None  # the IP TOS / traffic class byte (`-v`, where not 0)
    # Wireshark's TCP analysis labels (wire.analysis); in an expectation, None: not looked at,
    # a tuple: labels the segment must have (at least these)
    analysis: tuple[str, ...] | None = None

    def text(self, with_time: bool = True, with_connection: bool = False) -> str:
        def field(v):
            return "*" if v is None else str(v)

        parts = []
        if with_time and self.t is not None:
            parts.append(f"+{self.t:.6f}")
        if with_connection and self.connection is not None:
            parts.append(f"@{self.connection}")
        peer = "S" if self.side == "C" else "C"
        head = f"{self.side} > {peer} "
        flags = "*" if self.flags is None else flags_text(self.flags)
        end = None if self.seq is None or self.length is None else self.seq + self.length
        body = f"{flags} {field(self.seq)}:{field(end)}({field(self.length)})"
        if self.flags is None or self.flags & ACK:
            body += f" ack {field(self.ack)}"
        if self.win is not None:
            body += f" win {self.win}"
        if self.tos:
            body += f" tos 0x{self.tos:02x}"
        if self.options:
            body += f" <{self.options}>"
        if self.analysis:
            body += f" [{', '.join(self.analysis)}]"
        parts.append(head + " " + body)
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class EventLine:
    """A socket event or program call in the notation: `client error code=ECONNRESET`."""

    side: str  # an actor's name: client, server, listener, or any other (is_side_name)
    name: str  # connect, end, error, end(), destroy() ...
    args: tuple = ()  # ((key, value), ...)
    t: float | None = None

    def text(self, with_time: bool = True) -> str:
        parts = []
        if with_time and self.t is not None:
            parts.append(f"+{self.t:.6f}")
        parts.append(self.side)
        parts.append(self.name)
        parts.extend(f"{k}={format_value(v)}" for k, v in self.args)
        return " ".join(parts)


_BARE = re.compile(r"^[A-Za-z0-9_.:\-/\[\]%*]+$")


def format_value(v) -> str:
    if isinstance(v, str) and _BARE.match(v) and v not in ("true", "false", "null") and not _looks_numeric(v):
        return v
    return json.dumps(v, separators=(",", ":"))


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def options_text(options: tuple) -> str:
    """TCP options as tcpdump prints them: mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7."""
    out = []
    for name, value in options:
        if name == "TS":
            out.append(f"TS val {value[0]} ecr {value[1]}")
        elif name == "sack":
            out.append("sack " + " ".join(f"{l}:{r}" for l, r in value))
        elif value is None:
            out.append(name)
        elif isinstance(value, (bytes, bytearray)):
            out.append(f"{name} {value.hex()}")
        else:
            out.append(f"{name} {value}")
    return ",".join(out)


# --- parsing --------------------------------------------------------------------------------------

_TIME = r"(?:\+(?P<t>\d+(?:\.\d+)?|\*)\s+)?"
_CONN = r"(?:@(?P<conn>\d+)\s+)?"
_NUM = r"(\d+|\*)"
SEGMENT_RE = re.compile(
    r"^" + _TIME + _CONN
    + r"(?P<side>[CS])\s*>\s*(?P<peer>[CS])\s+"
    + r"(?P<flags>[FSRP.UEW]+|none|\*)\s+"
    + r"(?P<seq>\d+|\*):(?P<end>\d+|\*)\((?P<len>\d+|\*)\)"
    + r"(?:\s+ack\s+(?P<ack>\d+|\*))?"
    + r"(?:\s+win\s+(?P<win>\d+))?"
    + r"(?:\s+tos\s+(?P<tos>0x[0-9a-fA-F]{1,2}|\d+))?"
    + r"(?:\s+<(?P<options>[^>]*)>)?"
    + r"(?:\s+\[(?P<analysis>[^\]]*)\])?"
    + r"\s*$"
)
# Actors (the sides of events) are named by the scenario: client, server, listener, client2,
# upstream... A name starts with a lowercase letter (segment lines start with C, S, @ or +, and
# flags are capitals, so a line is never both) and is none of the expectation language's words.
SIDE_NAME = r"[a-z][A-Za-z0-9_-]*"
RESERVED_SIDE_NAMES = frozenset({"never", "one", "or", "end", "repeat", "meanwhile", "linux", "darwin", "windows", "any"})
_SIDE_RE = re.compile(SIDE_NAME)
EVENT_RE = re.compile(r"^" + _TIME + r"(?P<side>" + SIDE_NAME + r")\s+(?P<name>\S+)(?P<args>(?:\s+.*)?)$")
ARG_RE = re.compile(r'\s*([A-Za-z_][\w.-]*)=')
_BARE_VALUE = re.compile(r"\S+")
_JSON = json.JSONDecoder()


class NotationError(ValueError):
    """A line that is not in the notation; `column` is 1-based where it applies."""

    def __init__(self, message: str, column: int = 1):
        super().__init__(message)
        self.column = column


_FLAGS_AT = re.compile(r"^" + _TIME + _CONN + r"[CS]\s*>\s*[CS]\s+(?P<flags>\S+)")


def parse_segment(text: str) -> SegmentLine:
    m = SEGMENT_RE.match(text.strip())
    if not m:
        head = _FLAGS_AT.match(text.strip())
        if head and head["flags"] not in ("none", "*"):
            try:  # say which letter, where
                parse_flags(head["flags"])
            except ValueError as e:
                raise NotationError(str(e), head.start("flags") + 1) from None
        raise NotationError(f"not a segment line: {text.strip()!r} (expected e.g. 'C > S  F. 1:1(0) ack 1')")
    if m["side"] == m["peer"]:
        raise NotationError("a segment goes from one side to the other: 'C > S' or 'S > C'")

    def num(name):
        v = m[name]
        return None if v is None or v == "*" else int(v)

    flags = None if m["flags"] == "*" else parse_flags(m["flags"])
    seq, end, length = num("seq"), num("end"), num("len")
    if seq is not None and end is not None and length is not None and end - seq != length:
        raise NotationError(f"{seq}:{end}({length}): the end must be seq + length", m.start("seq") + 1)
    if length is None and seq is not None and end is not None:
        length = end - seq
    has_ack_flag = flags is None or bool(flags & ACK)
    if m["ack"] is not None and flags is not None and not has_ack_flag:
        raise NotationError("'ack N' is shown only when the ACK flag ('.') is set", m.start("ack") + 1)
    t = m["t"]
    return SegmentLine(
        side=m["side"],
        flags=flags,
        seq=seq,
        length=length,
        ack=num("ack") if has_ack_flag else 0,
        connection=int(m["conn"]) if m["conn"] else None,
        t=None if t in (None, "*") else float(t),
        win=int(m["win"]) if m["win"] else None,
        tos=None if m["tos"] is None else int(m["tos"], 0),
        options=m["options"],
        analysis=None if m["analysis"] is None else parse_analysis(m["analysis"], m.start("analysis") + 1),
    )


def parse_analysis(text: str, column: int = 1) -> tuple[str, ...]:
    """`keep-alive, dup-ack` (commas or spaces) as label names; NotationError for an unknown one."""
    labels = tuple(part for part in re.split(r"[\s,]+", text.strip()) if part)
    for label in labels:
        if label not in NAMES:
            raise NotationError(f"unknown TCP analysis label {label!r} (Wireshark's: {', '.join(NAMES)})", column)
    return labels


def is_side_name(name: str) -> bool:
    """Whether `name` can name an actor: `[a-z][A-Za-z0-9_-]*`, not a word of the language."""
    return bool(_SIDE_RE.fullmatch(name)) and name not in RESERVED_SIDE_NAMES


def parse_event(text: str) -> EventLine:
    m = EVENT_RE.match(text.strip())
    if not m:
        raise NotationError(f"not an event line: {text.strip()!r} (expected e.g. 'server end' or 'client2 close')")
    if m["side"] in RESERVED_SIDE_NAMES:
        raise NotationError(f"{m['side']!r} is a word of the expectation language, not an actor's name", m.start("side") + 1)
    args = []
    rest = m["args"] or ""
    pos = 0
    while pos < len(rest):
        if rest[pos:].strip() == "":
            break
        am = ARG_RE.match(rest, pos)
        start = pos + len(rest[pos:]) - len(rest[pos:].lstrip())
        if not am:
            raise NotationError(f"bad argument {rest[start:].strip()!r}: use key=value", m.start("args") + start + 1)
        vpos = am.end()
        if rest.startswith(('"', "["), vpos):
            try:
                value, pos = _JSON.raw_decode(rest, vpos)
            except ValueError:
                raise NotationError(f"bad value {rest[vpos:].strip()!r}: not JSON", m.start("args") + vpos + 1) from None
        else:
            vm = _BARE_VALUE.match(rest, vpos)
            if vm is None:
                raise NotationError(f"no value after {am.group(1)}=", m.start("args") + vpos + 1)
            value, pos = parse_value(vm.group()), vm.end()
        args.append((am.group(1), value))
    t = m["t"]
    return EventLine(m["side"], m["name"], tuple(args), None if t in (None, "*") else float(t))


def parse_line(text: str) -> SegmentLine | EventLine:
    stripped = text.strip()
    body = re.sub(r"^\+\S+\s+", "", stripped)
    if body[:1].islower():  # an actor's name; segments start with C, S or @
        return parse_event(stripped)
    return parse_segment(stripped)
