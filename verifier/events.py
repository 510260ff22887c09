"""Read the probe's event log (JSON lines) into event lines of the transcript notation."""

from __future__ import annotations

import json
import re

from .wire.transcript import EventLine, is_side_name

MAX_EVENTS = 10_000
_KEY = re.compile(r"[A-Za-z_][\w.-]*")  # what the notation reads back as key=value


def parse_events(text: str) -> tuple[list[EventLine], list[str]]:
    """Events in log order, and problems (malformed lines, too many events) as messages."""
    events: list[EventLine] = []
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(events) >= MAX_EVENTS:
            problems.append(f"event log has more than {MAX_EVENTS} events: the rest is ignored")
            break
        try:
            item = json.loads(raw)
            t, side, name = float(item["t"]), str(item["side"]), str(item["name"])
            args = item.get("args") or {}
            if not is_side_name(side) or not isinstance(args, dict) or not name or " " in name or not all(_KEY.fullmatch(k) for k in args):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            problems.append(f"event log line {n} is not a probe event: {raw[:80]!r}")
            continue
        events.append(EventLine(side, name, tuple((str(k), _scalar(v)) for k, v in args.items()), t))
    return events, problems


def _scalar(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, list):
        return [_scalar(x) for x in v]
    return json.dumps(v, separators=(",", ":"))
