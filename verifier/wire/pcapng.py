"""Write pcapng bytes: a section header naming OS, hardware and application, packets with comments."""

from __future__ import annotations

import struct
from typing import Iterable

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT, OPT_COMMENT = 0, 1
SHB_HARDWARE, SHB_OS, SHB_USERAPPL = 2, 3, 4
IF_NAME, IF_TSRESOL = 2, 9


def _option(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _options(items: Iterable[tuple[int, bytes]]) -> bytes:
    body = b"".join(_option(code, value) for code, value in items if value is not None)
    return body + struct.pack("<HH", OPT_ENDOFOPT, 0) if body else b""


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def section_header(os: str = "", hardware: str = "", userappl: str = "", comments: Iterable[str] = ()) -> bytes:
    opts = [(OPT_COMMENT, c.encode()) for c in comments]
    opts += [(SHB_HARDWARE, hardware.encode() or None), (SHB_OS, os.encode() or None), (SHB_USERAPPL, userappl.encode() or None)]
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
    return _block(SHB, body)


def interface(linktype: int, snaplen: int = 262144, name: str = "lo") -> bytes:
    # timestamps in nanoseconds (if_tsresol 9)
    body = struct.pack("<HHI", linktype, 0, snaplen) + _options([(IF_NAME, name.encode()), (IF_TSRESOL, bytes([9]))])
    return _block(IDB, body)


def packet(t: float, data: bytes, orig_len: int | None = None, comment: str | None = None, ts_ns: int | None = None) -> bytes:
    ts = ts_ns if ts_ns is not None else round(t * 1e9)
    caplen = len(data)
    pad = (-caplen) % 4
    body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, caplen, orig_len if orig_len is not None else caplen)
    body += data + b"\0" * pad + _options([(OPT_COMMENT, comment.encode())] if comment else [])
    return _block(EPB, body)
