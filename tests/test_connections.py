"""Tests of verifier.wire.connections: grouping, roles, relative numbers, duplicates, reuse."""

from dataclasses import replace

from tcp_script import script

from verifier.wire.connections import Doubling, doubled, track

CLOSE3 = ("C S", "S S.", "C .", "C F.", "S F.", "C .")


def rel(conn):
    return [(s.side, s.seq, s.ack, s.length) for s in conn.segments]


def test_roles_and_relative_numbers_from_the_handshake():
    (conn,) = list(track(script(*CLOSE3)))
    assert conn.client == ("127.0.0.1", 53448) and conn.server == ("127.0.0.1", 5000)
    assert rel(conn) == [("C", 0, 0, 0), ("S", 0, 1, 0), ("C", 1, 1, 0), ("C", 1, 1, 0), ("S", 1, 2, 0), ("C", 2, 2, 0)]


def test_relative_numbers_wrap_around_2_32():
    (conn,) = list(track(script("C S", "S S.", "C P. 10", "S .", isn_c=(1 << 32) - 3)))
    assert rel(conn) == [("C", 0, 0, 0), ("S", 0, 1, 0), ("C", 1, 1, 10), ("S", 1, 11, 0)]


def test_without_a_syn_the_first_seq_is_1_and_the_ack_sets_the_peer_base():
    # Wireshark: no SYN seen -> base = first seq - 1; the peer's base = that packet's ack - 1
    segs = script("C S", "S S.", "C P. 5", "S P. 7", "C .")[2:]
    (conn,) = list(track(segs))
    assert conn.client == ("127.0.0.1", 53448)  # no SYN: the sender of the first packet seen
    assert rel(conn) == [("C", 1, 1, 5), ("S", 1, 6, 7), ("C", 6, 8, 0)]


def test_syn_ack_first_makes_its_sender_the_server():
    segs = script("C S", "S S.", "C .")[1:]
    (conn,) = list(track(segs))
    assert conn.server == ("127.0.0.1", 5000)
    assert rel(conn)[0] == ("S", 0, 1, 0)


def doubled_copies(segs, loopback=True, dt=0.000005):
    """Each segment followed by its copy `dt` later, as a sniffer that keeps lo's outgoing copies writes them."""
    out = []
    for s in segs:
        out += [replace(s, loopback=loopback), replace(s, t=s.t + dt, loopback=loopback)]
    return out


def test_loopback_duplicates_are_removed_and_counted():
    (conn,) = list(track(doubled_copies(script(*CLOSE3))))
    assert len(conn.segments) == 6 and conn.duplicates == 6


def test_copies_on_a_link_that_is_not_loopback_are_kept():
    # Ethernet between two hosts (the 10.0.0.x capture): every copy is a retransmission to
    # Wireshark, however regular the pattern
    segs = script(*CLOSE3, client=("10.0.0.1", 40000), server=("10.0.0.2", 5000))
    (conn,) = list(track(doubled_copies(segs, loopback=False)))
    assert len(conn.segments) == 12 and conn.duplicates == 0


def test_one_identical_segment_on_an_undoubled_loopback_capture_is_kept():
    # tcpdump on lo: libpcap dropped the outgoing copies; a data segment sent again 0.3 ms later
    # (the only copy in the capture) is a retransmission, not lo's doubling
    segs = [replace(s, loopback=True) for s in script("C S", "S S.", "C .", "C P. 3", "S .", "C P. 4", "S .")]
    again = replace(segs[3], t=segs[3].t + 0.0003, index=99)
    (conn,) = list(track(segs[:4] + [again] + segs[4:]))
    assert len(conn.segments) == 8 and conn.duplicates == 0


def test_a_doubled_capture_that_starts_or_ends_between_two_copies_is_still_doubled():
    segs = doubled_copies(script(*CLOSE3))
    (conn,) = list(track(segs[1:-1]))  # the first packet's outgoing copy and the last one's incoming copy are missing
    assert len(conn.segments) == 6 and conn.duplicates == 4


def test_doubling_allows_one_unpaired_loopback_segment_in_eight():
    # n loopback segments so far, k copies among them: a copy is removed while n - 2k <= max(n, 8) / 8
    assert doubled(2, 1) and doubled(3, 1) and not doubled(4, 1)
    assert doubled(16, 7) and not doubled(16, 6)
    assert doubled(64, 28) and not doubled(64, 27)
    doubling = Doubling()
    copies = (False, True, False, True, False, False, False, True)
    assert [doubling.remove(copy) for copy in copies] == [False, True, False, True, False, False, False, False]
    assert (doubling.segments, doubling.copies) == (8, 3)


def test_a_retransmission_is_not_a_duplicate():
    segs = [replace(s, loopback=True) for s in doubled_copies(script("C S", "S S.", "C .", "C P. 3"))]
    retrans = replace(segs[-1], t=segs[-1].t + 0.2, index=9)
    (conn,) = list(track(segs + [retrans]))
    assert len(conn.segments) == 5 and conn.duplicates == 4


def test_a_new_syn_on_a_finished_four_tuple_starts_a_new_connection():
    first = script(*CLOSE3)
    second = script(*CLOSE3, isn_c=9000, t0=first[-1].t + 0.5)
    conns = list(track(first + second))
    assert [c.index for c in conns] == [1, 2]
    assert all(len(c.segments) == 6 for c in conns)


def test_a_retried_syn_after_rst_stays_in_the_same_connection():
    segs = script("C S", "S R.")
    again = [replace(segs[0], t=segs[0].t + 0.5, index=3), replace(segs[1], t=segs[1].t + 0.5, index=4)]
    (conn,) = list(track(segs + again))
    assert len(conn.segments) == 4


def test_connections_come_out_in_order_of_first_packet_and_stream():
    a = script(*CLOSE3, client=("127.0.0.1", 40000))
    b = script(*CLOSE3, client=("127.0.0.1", 40001), t0=a[0].t + 0.00005)
    c = script("C S", client=("127.0.0.1", 40002), t0=a[0].t + 10)  # long after: a, b are handed on
    merged = sorted(a + b + c, key=lambda s: s.t)
    seen = []
    for conn in track(merged, linger=2.0):
        seen.append((conn.index, conn.client[1]))
    assert seen == [(1, 40000), (2, 40001), (3, 40002)]


def test_ipv6_addresses():
    (conn,) = list(track(script(*CLOSE3, client=("::1", 5555), server=("::1", 5000))))
    assert conn.family == 6 and conn.client == ("::1", 5555)
