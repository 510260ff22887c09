"""Tests of verifier.wire.classify: outcome, fin_ack and Zeek's conn_state for each way to end."""

import pytest
from tcp_script import script

from verifier.wire.classify import summary
from verifier.wire.connections import track

HS = ("C S", "S S.", "C .")

CASES = [
    # (script, outcome, fin_ack, zeek_state)
    (HS + ("C F.", "S F.", "C ."), "fin-client-first", "piggybacked", "SF"),
    (HS + ("C F.", "S .", "S F.", "C ."), "fin-client-first", "separate", "SF"),
    (HS + ("S F.", "C F.", "S ."), "fin-server-first", "piggybacked", "SF"),
    (HS + ("S F.", "C .", "C F.", "S ."), "fin-server-first", "separate", "SF"),
    (("C S",), "unanswered", None, "S0"),
    (("C S", "C S"), "unanswered", None, "S0"),
    (("C S", "S R."), "refused", None, "REJ"),
    (HS + ("C R.",), "rst-client", None, "RSTO"),
    (HS + ("S P. 3", "C R."), "rst-client", None, "RSTO"),
    (HS + ("S R.",), "rst-server", None, "RSTR"),
    (HS + ("C F.", "S R."), "rst-server", None, "RSTR"),
    (HS + ("C F.", "S ."), "half-closed", None, "S2"),
    (HS + ("S F.", "C ."), "half-closed", None, "S3"),
    (HS, "open", None, "S1"),
    (HS + ("C P. 5", "S ."), "open", None, "S1"),
    (("C S", "C R"), "rst-client", None, "RSTOS0"),
    (("C S", "C F"), "unanswered", None, "SH"),
]


@pytest.mark.parametrize("steps,outcome,fin_ack,zeek", CASES, ids=[" ".join(c[0][3:]) or " ".join(c[0]) for c in CASES])
def test_summary(steps, outcome, fin_ack, zeek):
    (conn,) = list(track(script(*steps)))
    facts = summary(conn)
    assert {k: facts[k] for k in ("outcome", "fin_ack", "zeek_state")} == {"outcome": outcome, "fin_ack": fin_ack, "zeek_state": zeek}
    assert facts["zeek"][0]["conn_state"] == zeek  # zeek_state is the first Zeek record's state


def test_simultaneous_close():
    # each side sends its FIN before it has seen the other's: the second FIN does not ACK the first
    steps = HS + ("C F.", "S F.", "C .", "S .")
    (conn,) = list(track(script(*steps, ack_override={4: 1})))
    assert summary(conn)["outcome"] == "fin-simultaneous"
    assert summary(conn)["fin_ack"] is None


def test_midstream_traffic_is_partial_and_oth():
    segs = script("C S", "S S.", "C P. 5", "S .")[2:]
    (conn,) = list(track(segs))
    facts = summary(conn)
    assert (facts["outcome"], facts["fin_ack"], facts["zeek_state"]) == ("partial", None, "OTH")


def test_midstream_then_fin_close_is_still_classified():
    segs = script("C S", "S S.", "C P. 5", "C F.", "S F.", "C .")[2:]
    (conn,) = list(track(segs))
    assert summary(conn)["outcome"] == "fin-client-first"


def test_synack_then_rst_without_syn():
    # Zeek flips a connection first seen from a likely server port (80): the SYN-ACK's sender is
    # the responder, and it resets a connection whose originator sent nothing: RSTRH. From an
    # unremarkable port the SYN-ACK's sender stays the originator, and resets: OTH
    web = script("C S", "S S.", "S R.", client=("10.0.0.1", 40000), server=("10.0.0.2", 80))[1:]
    (conn,) = list(track(web))
    assert summary(conn)["zeek_state"] == "RSTRH"
    (conn,) = list(track(script("C S", "S S.", "S R.")[1:]))
    assert summary(conn)["zeek_state"] == "OTH"


def test_summary_carries_zeeks_records_of_the_connection():
    # `zeek`: Zeek's records of the connection's packets, roles and segment positions (splits:
    # tests/test_zeek.py); zeek_state is the first one's state
    (conn,) = list(track(script(*HS, "C F.", "S F.", "C .")))
    assert summary(conn)["zeek"] == [
        {"orig": "client", "resp": "server", "conn_state": "SF", "history": "ShAFf", "first": 0, "last": 5}]
