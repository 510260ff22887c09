// keepalive-probes: setKeepAlive(true, 1000) once connected: the idle connection is probed after 1 s, and each probe is answered
// seed: none (field report)
// source: nodejs/node#31663
// floor: 1.3s
// Users saw no probes at all, or the first one only after the kernel's 7200 s: nodejs/node#31663
// (and nodejs/node-v0.x-archive#21079 before it) is setKeepAlive()'s delay ignored when called
// before 'connect'; nodejs/node#57712 is a delay under 1000 ms silently truncated to 0 (off).
// Here the client calls setKeepAlive(true, 1000) once connected (1000 ms: the smallest delay that
// turns probes on, TCP_KEEPIDLE is whole seconds) and sends 4 bytes the server reads, then
// nothing: 1 s after that data the kernel sends a probe, one byte below the next sequence number
// ([keep-alive]); the server's kernel answers with a repeated ACK ([keep-alive-ack]). The client
// then end()s. The 4 bytes matter to Wireshark's words: without them the server's answer is its
// first ACK since the SYN-ACK, whose window is the first scaled one, and Wireshark (and so
// verifier) calls it a window update, not a keep-alive ACK (measured with tshark 4.0).
import * as net from "node:net";
import { accept, connect, done, env, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server, (socket) => socket.on("end", () => invoke(socket, "server", "end")));
await listen(server, env.port, "127.0.0.1");

const client = connect("client", { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
await once(client, "connect");
invoke(client, "client", "setKeepAlive", true, 1000);
const socket = await accepted;
invoke(client, "client", "write", "ping");
await once(socket, "data");
// idle for 1 s (the first probe) and a little more: its answer comes at once on loopback
await new Promise((resolve) => setTimeout(resolve, 1300));
invoke(client, "client", "end");
await once(client, "close");
done();
