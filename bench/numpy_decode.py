#!/usr/bin/env python3
"""Bench-only prototype: how fast would a numpy decode of the fixed-layout headers be?

Not product code. For a classic pcap (microsecond or nanosecond, little- or big-endian header,
Ethernet) it
1. walks the record headers in Python (struct.unpack_from over an mmap) -> record offsets;
2. gathers the first 16 + 74 bytes of every record into one (N, 90) uint8 array (numpy fancy
   indexing) and reads, through structured-dtype views of that array (no copies), for every
   Ethernet + IPv4 (IHL 5) and Ethernet + IPv6 (next header TCP) packet: ts sec/frac, family,
   addresses (IPv4 as u32, IPv6 as two u64), ports, seq, ack, data offset, flags, window,
   TCP payload length (from the IP lengths, as verifier.wire.decode);
3. groups by direction (src ep, dst ep) and computes relative seq/ack per direction, vectorised
   (base = first SYN's seq in that direction, else the earlier of own first seq - 1 and the
   peer's first ack - 1, as Connection.add). Caveat: no 4-tuple-reuse split (a second SYN on the
   same 4-tuple is counted and reported), no loopback-duplicate removal, TCP options not parsed.

Times side by side, interleaved rounds, median:
  (a) pure Python: decode.segments(capture.read_records(f)) consumed fully,
  (b) numpy decode (walk + gather), also the walk alone,
  (c) numpy decode + grouping + relative numbers,
  (d) `verifier show --json FILE > /dev/null` (subprocess).
and checks (b) against (a) field by field on the first file.

    .venv/bin/python bench/numpy_decode.py [--rounds 3] [--check FILE] FILE ...
"""

from __future__ import annotations

import argparse
import ipaddress
import mmap
import os
import statistics
import struct
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from verifier.wire import capture, decode  # noqa: E402

HEAD = 16 + 74  # record header + Ethernet(14) + IPv6(40) + TCP(20)


def walk(mm) -> tuple[np.ndarray, str, int]:
    """Record-header offsets and captured lengths (Python loop), byte order, ts scale."""
    magic = struct.unpack_from("<I", mm, 0)[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    else:
        e = ">"
        magic = struct.unpack_from(">I", mm, 0)[0]
    if magic not in (0xA1B2C3D4, 0xA1B23C4D) or struct.unpack_from(e + "I", mm, 20)[0] & 0xFFFF != 1:
        raise SystemExit("classic pcap, Ethernet only")
    scale = 1_000_000_000 if magic == 0xA1B23C4D else 1_000_000
    u32 = struct.Struct(e + "I").unpack_from
    n = len(mm)
    pos = 24
    offs = []
    append = offs.append
    while pos + 16 <= n:
        incl = u32(mm, pos + 8)[0]
        if pos + 16 + incl > n:
            break  # truncated last record
        append(pos)
        pos += 16 + incl
    o = np.array(offs, dtype=np.int64)
    return o, e, scale


def _dt(e: str, fields: list[tuple[str, str, int]]) -> np.dtype:
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[1].replace("E", e) for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": HEAD})


def gather(mm, o: np.ndarray, e: str, scale: int) -> dict:
    """All fields of the Ethernet IPv4/IPv6 TCP packets, as arrays (one entry a record)."""
    # every byte offset of the file as the start of a 90-byte structured record (a strided view, no
    # copy; fields may overlap): h = view[o] copies 90 bytes a record in one fancy-index operation
    dt = _dt(e, [("sec", "Eu4", 0), ("frac", "Eu4", 4), ("incl", "Eu4", 8), ("et", ">u2", 28), ("b14", "u1", 30),
                 ("total", ">u2", 32), ("frag", ">u2", 36), ("proto", "u1", 39), ("src", ">u4", 42), ("dst", ">u4", 46),
                 ("sport", ">u2", 50), ("dport", ">u2", 52), ("seq", ">u4", 54), ("ack", ">u4", 58),
                 ("doff", "u1", 62), ("flags", "u1", 63), ("win", ">u2", 64),
                 ("plen", ">u2", 34), ("nh", "u1", 36), ("shi", ">u8", 38), ("slo", ">u8", 46), ("dhi", ">u8", 54),
                 ("dlo", ">u8", 62), ("sport6", ">u2", 70), ("dport6", ">u2", 72), ("seq6", ">u4", 74),
                 ("ack6", ">u4", 78), ("doff6", "u1", 82), ("flags6", "u1", 83), ("win6", ">u2", 84)])
    n = len(mm)
    every = np.ndarray(shape=(n - HEAD + 1,), dtype="V%d" % HEAD, buffer=mm, strides=(1,))
    h = every[np.minimum(o, n - HEAD)].view(dt)  # gathered as opaque V90 (a memcpy each), then typed
    del every
    for i in np.flatnonzero(o > n - HEAD):  # records within HEAD bytes of the end: zero-padded copy
        h[i] = np.frombuffer(bytes(mm[o[i]:]).ljust(HEAD, b"\0"), dtype=dt)[0]
    rec = v4 = h
    v6 = {k: h[k + "6"] if k + "6" in dt.names else h[k] for k in
          ("plen", "nh", "shi", "slo", "dhi", "dlo", "sport", "dport", "seq", "ack", "doff", "flags", "win")}
    incl = rec["incl"].astype(np.int64)
    et = rec["et"]
    b14 = rec["b14"]
    total = v4["total"].astype(np.int64)
    thl4 = (v4["doff"] >> 4).astype(np.int64) << 2
    ok4 = ((et == 0x0800) & (b14 == 0x45) & (v4["proto"] == 6) & ((v4["frag"] & 0x1FFF) == 0) & (incl >= 54)
           & (total >= 40) & (thl4 >= 20) & (total - 20 >= thl4) & (incl >= 34 + thl4))
    plen = v6["plen"].astype(np.int64)
    thl6 = (v6["doff"] >> 4).astype(np.int64) << 2
    ok6 = ((et == 0x86DD) & ((b14 >> 4) == 6) & (v6["nh"] == 6) & (incl >= 74) & (plen >= 20)
           & (thl6 >= 20) & (plen >= thl6) & (incl >= 54 + thl6))
    keep = np.flatnonzero(ok4 | ok6)
    sel = slice(None) if len(keep) == len(h) else keep  # all TCP: no copy
    is6 = ok6[sel]
    a4 = v4[sel]
    a6 = {k: v[sel] for k, v in v6.items()}
    w = np.where
    z = np.uint64(0)
    out = {
        "index": keep + 1,
        "sec": rec["sec"][sel].astype(np.uint32), "frac": rec["frac"][sel].astype(np.uint32), "scale": scale,
        "family": w(is6, 6, 4).astype(np.uint8),
        "shi": w(is6, a6["shi"], z), "slo": w(is6, a6["slo"], a4["src"].astype(np.uint64)),
        "dhi": w(is6, a6["dhi"], z), "dlo": w(is6, a6["dlo"], a4["dst"].astype(np.uint64)),
        "sport": w(is6, a6["sport"], a4["sport"]).astype(np.uint16),
        "dport": w(is6, a6["dport"], a4["dport"]).astype(np.uint16),
        "seq": w(is6, a6["seq"], a4["seq"]).astype(np.uint32),
        "ack": w(is6, a6["ack"], a4["ack"]).astype(np.uint32),
        "doff": w(is6, a6["doff"], a4["doff"]) >> 4,
        "flags": w(is6, a6["flags"], a4["flags"]).astype(np.uint8),
        "win": w(is6, a6["win"], a4["win"]).astype(np.uint16),
        "payload_len": w(is6, plen[sel] - thl6[sel], total[sel] - 20 - thl4[sel]),
    }
    return out


def relative(f: dict) -> dict:
    """Per-direction grouping and relative seq/ack (vectorised)."""
    m = len(f["seq"])
    # endpoint ids: addresses are few; (family, hi, lo) -> small id, then (id, port) in one int64
    addr = np.empty(2 * m, dtype=[("fam", "u1"), ("hi", "u8"), ("lo", "u8")])
    addr["fam"] = np.concatenate((f["family"], f["family"]))
    addr["hi"] = np.concatenate((f["shi"], f["dhi"]))
    addr["lo"] = np.concatenate((f["slo"], f["dlo"]))
    # address id by unique of a 64-bit mix of (family, hi, lo): a prototype shortcut (a collision is possible)
    lo_u, lo_inv = np.unique(addr["lo"] ^ (addr["hi"] * np.uint64(0x9E3779B97F4A7C15)) ^ addr["fam"].astype(np.uint64),
                             return_inverse=True)
    aid = lo_inv.astype(np.int64)
    ep = (aid << 16) | np.concatenate((f["sport"], f["dport"])).astype(np.int64)
    src_ep, dst_ep = ep[:m], ep[m:]
    nep = int(ep.max()) + 1
    dkey = src_ep * nep + dst_ep
    keys, first, g = np.unique(dkey, return_index=True, return_inverse=True)
    ng = len(keys)
    # reverse direction of each group (-1 if never seen)
    rkey = (keys % nep) * nep + keys // nep
    pos = np.searchsorted(keys, rkey)
    pos[pos >= ng] = 0
    rev = np.where(keys[pos] == rkey, pos, -1)
    seq, ack, flags = f["seq"], f["ack"], f["flags"]
    syn = (flags & 0x02) != 0
    has_ack = (flags & 0x10) != 0
    # base from the first SYN of each direction (reverse order assignment: the first write wins last)
    si = np.flatnonzero(syn)[::-1]
    base = np.zeros(ng, dtype=np.uint32)
    from_syn = np.zeros(ng, dtype=bool)
    base[g[si]] = seq[si]
    from_syn[g[si]] = True
    syn_count = np.bincount(g[si], minlength=ng)
    # else: own first seq - 1, unless the peer's first ACK came earlier (ack - 1)
    own_first = first
    own_base = seq[first] - np.uint32(1)
    ai = np.flatnonzero(has_ack)
    ack_first = np.full(ng, m, dtype=np.int64)  # first ACK packet sent by direction
    ack_first[g[ai[::-1]]] = ai[::-1]
    peer_ack_first = np.where(rev >= 0, ack_first[np.maximum(rev, 0)], m)
    use_peer = (peer_ack_first < own_first) & ~from_syn
    peer_base = ack[np.minimum(peer_ack_first, m - 1)] - np.uint32(1)
    base = np.where(from_syn, base, np.where(use_peer, peer_base, own_base))
    rel_seq = seq - base[g]
    rb = np.where(rev >= 0, base[np.maximum(rev, 0)], np.uint32(0))[g]
    rel_ack = np.where(has_ack, ack - rb, np.uint32(0))
    return {"group": g, "rel_seq": rel_seq, "rel_ack": rel_ack, "directions": ng,
            "dirs_with_2plus_syn": int((syn_count > 1).sum())}


def numpy_decode(path: str, rel: bool = False):
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        o, e, scale = walk(mm)
        f = gather(mm, o, e, scale)
    if rel:
        f.update(relative(f))
    return len(o), f


def walk_only(path: str) -> int:
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return len(walk(mm)[0])


def pure_python(path: str) -> int:
    n = 0
    with open(path, "rb") as fh:
        for _ in decode.segments(capture.read_records(fh)):
            n += 1
    return n


def show_style(path: str) -> int:
    """The decode part of show --json's fused loop alone: read_records + one struct call a packet,
    the same checks, no Segment object, no tracking (a lower bound of what numpy would replace)."""
    v4 = decode._ETH_IPV4_TCP.unpack_from
    v6 = decode._ETH_IPV6_TCP.unpack_from
    n = 0
    with open(path, "rb") as fh:
        for index, t, lt, buf, start, end, orig, comment, iface, section in capture.read_records(fh):
            if lt == 1 and end - start >= 54:
                b = buf[start + 12]
                if b == 0x08:
                    et, vihl, total, ip_id, frag, proto, src, dst, sport, dport, seq, ack, doff, flags, win = v4(buf, start)
                    if et == 0x0800 and vihl == 0x45 and proto == 6 and not frag & 0x1FFF and total >= 40:
                        thl = (doff >> 4) << 2
                        if thl == 20 or thl == 32:
                            n += 1
                elif b == 0x86 and end - start >= 74:
                    et, vtc, plen, nh, src, dst, sport, dport, seq, ack, doff, flags, win = v6(buf, start)
                    if et == 0x86DD and vtc >> 4 == 6 and nh == 6 and plen >= 20:
                        thl = (doff >> 4) << 2
                        if thl == 20 or thl == 32:
                            n += 1
    return n


def show_json(path: str) -> None:
    with open(os.devnull, "wb") as null:
        subprocess.run([os.path.join(ROOT, ".venv/bin/verifier"), "show", "--json", path], stdout=null, check=True)


def _text(fam, hi, lo) -> str:
    if fam == 4:
        return "%d.%d.%d.%d" % tuple(int(lo).to_bytes(4, "big"))
    return str(ipaddress.IPv6Address((int(hi) << 64) | int(lo)))


def check(path: str) -> None:
    _, f = numpy_decode(path)
    by_index = {int(i): k for k, i in enumerate(f["index"])}
    mism = {}
    py_count = only_py = 0
    fields = ("family", "sport", "dport", "seq", "ack", "flags", "win", "payload_len")
    with open(path, "rb") as fh:
        for seg in decode.segments(capture.read_records(fh)):
            if seg is None:
                continue
            py_count += 1
            k = by_index.pop(seg.index, None)
            if k is None:
                only_py += 1
                continue
            t = (int(f["sec"][k]) * f["scale"] + int(f["frac"][k])) / f["scale"]
            got = {n: int(f[n][k]) for n in fields}
            got["t"] = t
            got["src"] = _text(got["family"], f["shi"][k], f["slo"][k])
            got["dst"] = _text(got["family"], f["dhi"][k], f["dlo"][k])
            for name, v in got.items():
                if getattr(seg, name) != v:
                    mism[name] = mism.get(name, 0) + 1
    print(f"check {os.path.basename(path)}: python segments {py_count}, numpy {len(f['index'])}, "
          f"only in python {only_py}, only in numpy {len(by_index)}, field mismatches {mism or 0}")
    # relative numbers against Connection.add (track) on this file, packet by packet
    from verifier.wire.connections import track
    r = relative(f)
    rel_by_index = {int(i): (int(s), int(a)) for i, s, a in zip(f["index"], r["rel_seq"], r["rel_ack"])}
    bad = n = 0
    with open(path, "rb") as fh:
        for conn in track(s for s in decode.segments(capture.read_records(fh)) if s is not None):
            for rs in conn.segments:
                n += 1
                if rel_by_index.get(rs[3].index) != (rs[1], rs[2]):
                    bad += 1
    print(f"relative seq/ack vs track(): {n} segments compared, {bad} differ; "
          f"directions {r['directions']}, with >1 SYN (4-tuple reuse, not split here) {r['dirs_with_2plus_syn']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--check", default=None, help="file to check field by field (default: the first)")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    if not a.no_check:
        check(a.check or a.files[0])
    for path in a.files:
        npk = walk_only(path)
        runs = {
            "a pure-Python read_records+segments": lambda: pure_python(path),
            "a2 show-style decode (read_records + unpack)": lambda: show_style(path),
            "  numpy: record walk only (Python loop)": lambda: walk_only(path),
            "b numpy decode (walk + gather)": lambda: numpy_decode(path),
            "c numpy decode + grouping + relative": lambda: numpy_decode(path, rel=True),
            "d verifier show --json (subprocess)": lambda: show_json(path),
        }
        times = {k: [] for k in runs}
        for _ in range(a.rounds):
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        print(f"\n{os.path.basename(path)}: {npk} packets, median of {a.rounds} interleaved rounds")
        for k, ts in times.items():
            med = statistics.median(ts)
            print(f"  {k:44s} {med:7.3f} s  {med / npk * 1e6:6.2f} us/packet   (rounds: {', '.join('%.2f' % t for t in ts)})")


if __name__ == "__main__":
    main()
