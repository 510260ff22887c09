"""Tests of verifier.events: the probe's JSON-lines log read into event lines, problems reported, not raised."""

from __future__ import annotations

import json

from verifier import events as ev_mod
from verifier.events import MAX_EVENTS, parse_events
from verifier.wire.transcript import EventLine, parse_event


def line(t=1.5, side="client", name="connect", args=None, **extra) -> str:
    item = {"t": t, "side": side, "name": name, **extra}
    if args is not None:
        item["args"] = args
    return json.dumps(item)


def test_good_lines_in_log_order():
    text = "\n".join([
        line(1.25, "listener", "listening", {"address": "::1", "port": 5000, "family": "IPv6"}),
        "",
        line(1.5, "client", "end()"),
        line(1.75, "server", "end", {"readableEnded": True, "bytesRead": 3, "err": None, "ratio": 0.5}),
    ]) + "\n"
    events, problems = parse_events(text)
    assert problems == []
    assert events == [
        EventLine("listener", "listening", (("address", "::1"), ("port", 5000), ("family", "IPv6")), 1.25),
        EventLine("client", "end()", (), 1.5),
        EventLine("server", "end", (("readableEnded", True), ("bytesRead", 3), ("err", None), ("ratio", 0.5)), 1.75),
    ]
    assert events[2].text(with_time=False) == "server end readableEnded=true bytesRead=3 err=null ratio=0.5"


def test_any_actor_name_the_notation_reads_back():
    text = "\n".join(line(1.0 + n, side, "close", {"hadError": False})
                     for n, side in enumerate(["client2", "agent", "upstream-1", "db_primary"]))
    events, problems = parse_events(text)
    assert problems == []
    assert [e.side for e in events] == ["client2", "agent", "upstream-1", "db_primary"]
    for e in events:  # each prints as a line the notation parses back to the same event
        assert parse_event(e.text(with_time=False)) == EventLine(e.side, e.name, e.args)


def test_side_names_that_would_be_ambiguous_are_refused():
    bad = ["end", "never", "one", "any", "linux", "C", "S", "R", "2client", "-x", "a b", ""]
    events, problems = parse_events("\n".join(line(side=s) for s in bad))
    assert events == [] and len(problems) == len(bad)


def test_null_or_missing_args_are_empty():
    events, problems = parse_events(line(args=None) + "\n" + json.dumps({"t": 2, "side": "server", "name": "x", "args": None}))
    assert problems == [] and [e.args for e in events] == [(), ()]
    assert events[1].t == 2.0 and isinstance(events[1].t, float)


def test_malformed_lines_are_reported_with_their_line_numbers():
    bad = [
        "not json at all",                                         # 1
        line(side="Client2"),                                      # 2 not an actor's name (capital)
        json.dumps({"side": "client", "name": "x"}),              # 3 no t
        json.dumps({"t": "soon", "side": "client", "name": "x"}),  # 4 t not a number
        line(name=""),                                             # 5 empty name
        line(name="two words"),                                    # 6 a name is one word
        line(args=[1, 2]),                                         # 7 args not an object
        json.dumps([1, 2, 3]),                                     # 8 not an object
        '{"t": 1, "side": "client", "name": "cut',                 # 9 cut short (killed mid-write)
    ]
    text = "\n".join([line(0.5, "client", "first")] + bad + [line(9.0, "server", "last")])
    events, problems = parse_events(text)
    assert [e.name for e in events] == ["first", "last"]
    assert len(problems) == len(bad)
    for n, problem in enumerate(problems, start=2):
        assert problem.startswith(f"event log line {n} is not a probe event: ")
    assert "not json at all" in problems[0]


def test_a_long_malformed_line_is_quoted_short():
    events, problems = parse_events("x" * 10_000)
    assert events == [] and len(problems) == 1 and len(problems[0]) < 200


def test_non_scalar_args_become_scalars_or_lists():
    args = {
        "errors": ["ECONNREFUSED", "ECONNREFUSED"],
        "nested": {"a": 1, "b": [True, None]},
        "mixed": [1, {"x": "y"}, None],
        "code": None,
    }
    (event,), problems = parse_events(line(args=args))
    assert problems == []
    values = dict(event.args)
    assert values["errors"] == ["ECONNREFUSED", "ECONNREFUSED"]
    assert values["nested"] == '{"a":1,"b":[true,null]}'  # an object: its compact JSON text
    assert values["mixed"] == [1, '{"x":"y"}', None]
    assert values["code"] is None
    # the event prints in the notation and reads back as the same event
    assert parse_event(event.text(with_time=False)) == EventLine(event.side, event.name, event.args)


def test_keys_become_strings_in_order():
    (event,), _ = parse_events(line(args={"b": 1, "a": 2}))
    assert event.args == (("b", 1), ("a", 2))


def test_the_event_cap(monkeypatch):
    monkeypatch.setattr(ev_mod, "MAX_EVENTS", 5)
    exactly = "\n".join(line(float(i)) for i in range(5))
    events, problems = parse_events(exactly)
    assert len(events) == 5 and problems == []
    events, problems = parse_events(exactly + "\n\n" + "garbage\n" + line(99.0) + "\n" + line(100.0))
    assert len(events) == 5
    assert problems == ["event log has more than 5 events: the rest is ignored"]


def test_the_real_cap_value():
    assert MAX_EVENTS == 10_000
    text = "\n".join(line(float(i), name=f"e{i}") for i in range(MAX_EVENTS + 3))
    events, problems = parse_events(text)
    assert len(events) == MAX_EVENTS and events[-1].name == f"e{MAX_EVENTS - 1}"
    assert problems == [f"event log has more than {MAX_EVENTS} events: the rest is ignored"]


def test_empty_log():
    assert parse_events("") == ([], [])
    assert parse_events("\n  \n") == ([], [])
