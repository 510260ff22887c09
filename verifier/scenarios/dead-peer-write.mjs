// dead-peer-write: a write to a peer that vanished is retransmitted with backoff until tcp_retries2, then the socket errors with ETIMEDOUT
// seed: none (field report)
// source: libuv/libuv#4334
// floor: 1.6s
// A write to a dead peer hangs for many minutes: unacknowledged data is governed by
// retransmission (net.ipv4.tcp_retries2, 15 by default: ~15 minutes), not by keep-alive, whose
// probes only start on an idle connection (libuv/libuv#4334: with writes every 2 s, keep-alive
// never reports ETIMEDOUT; libuv/libuv#2907 asks for TCP_USER_TIMEOUT for this reason). Here the
// lab blackholes the server's port both ways after the handshake, the client writes 5 bytes,
// and the namespace's tcp_retries2 is 1. Measured (Linux 6.18): a tail loss probe at +0.206 s
// (one segment in flight: 200 ms TCP_DELACK_MAX plus the RTT), the RTO retransmission 0.208 s
// later, then 0.424 s later (doubled), and ETIMEDOUT at +1.67 s when the next RTO fires: the
// give-up time modelled from tcp_retries2=1, (2^2 - 1) x 200 ms = 0.6 s, counts from the first
// RTO retransmission, not from the write (with tcp_retries2=2: two more doublings, +3.33 s).
// No RST: the kernel gives up silently (the peer is presumed unreachable).
// sysctl: net.ipv4.tcp_retries2=1
// timeout: 10
import * as net from "node:net";
import { accept, connect, done, env, fault, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
const accepted = accept(server);
await listen(server, env.port, "127.0.0.1");

const client = connect("client", { host: "127.0.0.1", port: env.port }, { errors: ["ETIMEDOUT"] });
await once(client, "connect");
const peer = await accepted;
await fault("blackhole", { port: env.port });
invoke(client, "client", "write", "hello");
await once(client, "close");
peer.destroy(); // the server never hears of it: its FIN is dropped on arrival too
done();
