"""`verifier show`: text and JSON on real captures, one clean line and exit 2 for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
FOREIGN = DATA / "foreign"
MALFORMED = sorted((DATA / "malformed").iterdir())


def verifier(*args):
    return subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True, text=True, timeout=60)


def test_macos_four_packet_close_is_separate():
    out = verifier("show", "--json", str(FOREIGN / "macos-lo0-ipv6-fin.pcap"))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (f,) = doc["files"]
    assert f["packets"] == 12 and f["warnings"] == []
    (c,) = f["connections"]
    assert (c["client"], c["server"]) == ("[::1]:51122", "[::1]:6379")
    assert (c["outcome"], c["fin_ack"], c["zeek_state"]) == ("fin-client-first", "separate", "SF")
    tail = [(s["from"], s["flags"], s["seq"], s["ack"], s["len"]) for s in c["segments"][-4:]]
    assert tail == [("client", "F.", 19, 22, 0), ("server", ".", 22, 20, 0), ("server", "F.", 22, 20, 0), ("client", ".", 20, 23, 0)]
    assert set(c["segments"][0]) >= {"t", "from", "flags", "seq", "ack", "len"}
    assert c["segments"][0]["t"] == pytest.approx(1.0e9, rel=1) and isinstance(c["segments"][0]["t"], float)


def test_linux_three_packet_close_is_piggybacked():
    doc = json.loads(verifier("show", "--json", str(FOREIGN / "linux-sll-lo-fin.pcap")).stdout)
    (c,) = doc["files"][0]["connections"]
    assert (c["outcome"], c["fin_ack"], c["zeek_state"]) == ("fin-client-first", "piggybacked", "SF")
    assert [s["flags"] for s in c["segments"][-3:]] == ["F.", "F.", "."]


def test_macos_refused_then_ipv4_reset():
    doc = json.loads(verifier("show", "--json", str(FOREIGN / "macos-lo0-v6-refused-then-v4-rst.pcap")).stdout)
    a, b = doc["files"][0]["connections"]
    assert (a["server"], a["outcome"], a["zeek_state"]) == ("[::1]:6379", "refused", "REJ")
    assert (b["server"], b["outcome"], b["zeek_state"]) == ("127.0.0.1:6379", "rst-server", "RSTR")


def test_text_output_has_a_header_and_transcript_per_connection():
    out = verifier("show", str(FOREIGN / "macos-lo0-ipv6-fin.pcap"))
    lines = out.stdout.splitlines()
    assert lines[1] == "connection 1: [::1]:51122 > [::1]:6379  outcome fin-client-first  fin_ack separate  zeek SF"
    assert lines[2] == "+0.000000 C > S  S 0:0(0)"
    assert "+0.995900 C > S  F. 19:19(0) ack 22" in lines


def test_several_files_in_one_document():
    out = verifier("show", "--json", str(FOREIGN / "macos-lo0-ipv6-fin.pcap"), str(FOREIGN / "linux-sll-lo-fin.pcap"))
    assert [f["file"].rsplit("/", 1)[1] for f in json.loads(out.stdout)["files"]] == ["macos-lo0-ipv6-fin.pcap", "linux-sll-lo-fin.pcap"]


@pytest.mark.parametrize("path", MALFORMED, ids=[p.name for p in MALFORMED])
def test_malformed_files_end_cleanly(path):
    out = verifier("show", "--json", str(path))
    assert "Traceback" not in out.stderr
    if out.returncode == 0:
        json.loads(out.stdout)
    else:
        assert out.returncode == 2
        (line,) = out.stderr.splitlines()
        assert line.startswith(f"verifier: {path}: ")
        if out.stdout:  # an error after valid records: what was read, as a complete document
            (f,) = json.loads(out.stdout)["files"]
            assert any(w.startswith("stopped reading") for w in f["warnings"])


def test_truncated_file_shows_what_was_valid_with_a_warning():
    out = verifier("show", "--json", str(DATA / "malformed" / "truncated-mid-record.pcap"))
    f = json.loads(out.stdout)["files"][0]
    assert out.returncode == 0 and f["packets"] == 9
    assert any("truncated" in w and "963" in w for w in f["warnings"])
    text = verifier("show", str(DATA / "malformed" / "truncated-mid-record.pcap"))
    assert "warning:" in text.stdout


@pytest.mark.parametrize("name,expected", [
    ("empty-file.pcap", "empty file"),
    ("text-file.pcap", "not a pcap or pcapng file"),
    ("the-tcpdump-group_libpcap_tests_pcap-invalid-version-1.pcap", "unsupported pcap version"),
])
def test_bad_files_name_the_file_and_the_problem(name, expected):
    out = verifier("show", str(DATA / "malformed" / name))
    assert out.returncode == 2 and expected in out.stderr and len(out.stderr.splitlines()) == 1


def test_missing_file_and_directory(tmp_path):
    out = verifier("show", str(tmp_path / "nope.pcap"))
    assert (out.returncode, out.stderr.strip()) == (2, f"verifier: {tmp_path / 'nope.pcap'}: no such file")
    out = verifier("show", str(tmp_path))
    assert out.returncode == 2 and "is a directory" in out.stderr


def test_bad_usage_is_exit_2_in_one_line():
    out = verifier("show")
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
    out = verifier("frobnicate")
    assert out.returncode == 2


def test_error_in_a_later_file_header_prints_nothing(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"")
    out = verifier("show", "--json", str(FOREIGN / "linux-sll-lo-fin.pcap"), str(bad))
    assert out.returncode == 2 and out.stdout == ""
