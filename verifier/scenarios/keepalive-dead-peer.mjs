// keepalive-dead-peer: the peer vanishes after the handshake: keep-alive probes go unanswered, then the kernel resets and the client gets ETIMEDOUT
// seed: none (field report)
// source: nodejs/node#31663
// floor: 11.2s
// A dead peer was noticed only after hours: with setKeepAlive()'s delay ignored (called before
// 'connect', nodejs/node#31663, nodejs/node-v0.x-archive#21079) the kernel's 7200 s idle time
// applies before the first probe. Here the client turns keep-alive on in 'connect' with the
// smallest delay (1000 ms), then the lab blackholes the server's port both ways (every packet
// to or from it dropped on arrival: the capture still sees it sent). After 1 s idle the client's
// kernel probes, every TCP_KEEPINTVL, and after TCP_KEEPCNT unanswered probes it sends a RST and
// the socket errors with ETIMEDOUT. libuv sets the interval and count itself (1 s, 10 probes),
// so the sysctls below apply only to runtimes that leave them to the kernel.
// sysctl: net.ipv4.tcp_keepalive_intvl=1
// sysctl: net.ipv4.tcp_keepalive_probes=2
// timeout: 30
import * as net from "node:net";
import { accept, connect, done, env, fault, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
const accepted = accept(server);
await listen(server, env.port, "127.0.0.1");

const client = connect("client", { host: "127.0.0.1", port: env.port }, { errors: ["ETIMEDOUT"] });
await once(client, "connect");
invoke(client, "client", "setKeepAlive", true, 1000);
const peer = await accepted;
await fault("blackhole", { port: env.port });
await once(client, "close");
peer.destroy(); // the server never hears of it: its socket is dropped without a word on the wire
done();
