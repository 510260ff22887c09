"""Make many short loopback TCP connections (run inside a network namespace): FIN closes from either side, RSTs, refused connects.

Run by gen_capture.py through `ip netns exec`; standalone it would load the host's own lo.
Bounded: exactly --connections attempts, --concurrency at a time, every step under a timeout,
and the whole run under --time-limit seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import sys
import time

PORTS = (7000, 7001, 7002, 7003)  # listening ports: more 4-tuples than one port's ephemeral range
CLOSED_PORT = 7999  # nothing listens: SYN -> RST.
HOSTS_V4 = ("127.0.0.1", "127.0.0.2")
HOST_V6 = "::1"
STEP_TIMEOUT = 5.0
LINGER_ZERO = struct.pack("ii", 1, 0)

# kind letters the client sends first; the server acts on them
#   c: client closes first (FIN)   s: server closes first (FIN)
#   r: client resets (SO_LINGER 0) R: server resets
#   x: refused (no listener)
MIX = "ccccccsssssrrrRRRxxx"  # 30% c, 25% s, 15% r, 15% R, 15% x (by connection number, deterministic)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        kind = await asyncio.wait_for(reader.readexactly(1), STEP_TIMEOUT)
        await asyncio.wait_for(reader.readexactly(7), STEP_TIMEOUT)  # the rest of the request
        writer.write(b"reply:" + kind)
        await writer.drain()
        if kind == b"c":  # wait for the client's FIN, then close
            await asyncio.wait_for(reader.read(), STEP_TIMEOUT)
        elif kind == b"R":
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
        elif kind == b"r":  # the client resets: wait for it
            await asyncio.wait_for(reader.read(), STEP_TIMEOUT)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def client(n: int, stats: dict) -> None:
    kind = MIX[n % len(MIX)]
    v6 = n % 7 == 0
    host = HOST_V6 if v6 else HOSTS_V4[(n // 7) % len(HOSTS_V4)]
    port = CLOSED_PORT if kind == "x" else PORTS[n % len(PORTS)]
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT)
    except ConnectionRefusedError:
        stats["refused"] += 1
        return
    except (OSError, asyncio.TimeoutError) as e:
        stats["errors"] += 1
        stats["last_error"] = repr(e)
        return
    try:
        writer.write(kind.encode() + b"request")
        await writer.drain()
        await asyncio.wait_for(reader.readexactly(7), STEP_TIMEOUT)
        if kind == "c":
            writer.write_eof()
            await asyncio.wait_for(reader.read(), STEP_TIMEOUT)  # the server's FIN
        elif kind == "s":
            await asyncio.wait_for(reader.read(), STEP_TIMEOUT)  # the server's FIN, then ours
        elif kind == "r":
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
        elif kind == "R":
            try:
                await asyncio.wait_for(reader.read(), STEP_TIMEOUT)
            except ConnectionResetError:
                pass
        stats[kind] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
        stats["errors"] += 1
        stats["last_error"] = repr(e)
    finally:
        writer.close()


async def main(total: int, concurrency: int, time_limit: float) -> dict:
    servers = []
    for port in PORTS:
        servers.append(await asyncio.start_server(serve, "0.0.0.0", port, backlog=4096, reuse_address=True))
        servers.append(await asyncio.start_server(serve, HOST_V6, port, backlog=4096, reuse_address=True))
    stats = dict.fromkeys("csrRx", 0) | {"refused": 0, "errors": 0, "last_error": ""}
    deadline = time.monotonic() + time_limit
    next_n = 0

    async def worker() -> None:
        nonlocal next_n
        while next_n < total and time.monotonic() < deadline:
            n = next_n
            next_n += 1
            await client(n, stats)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await asyncio.sleep(0.3)  # let the last closes and final ACKs go out
    for s in servers:
        s.close()
    stats["attempted"] = next_n
    return stats


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--time-limit", type=float, default=600.0)
    a = ap.parse_args()
    t0 = time.monotonic()
    result = asyncio.run(main(a.connections, a.concurrency, a.time_limit))
    result["seconds"] = round(time.monotonic() - t0, 2)
    print(result, file=sys.stderr)
