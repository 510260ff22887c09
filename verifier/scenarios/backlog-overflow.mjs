// backlog-overflow: with the accept queue full, a new SYN is dropped (no SYN-ACK, no RST) and retransmitted until the listener accepts: connect latency while the process looks idle
// seed: none (field report)
// source: asterinas/asterinas#1733
// floor: 200ms
// sysctl: net.core.somaxconn=1
// sysctl: net.ipv4.tcp_abort_on_overflow=1
// syn-rto: 100ms
// somaxconn=1 caps every listen() backlog at 1: the accept queue holds 2 connections (Linux
// counts it full only above the backlog). Three clients connect at once while the listener's
// event loop is blocked for 150 ms (so nothing accepts): client and client2 complete their
// handshakes in the kernel; client3's SYN finds the queue full and is dropped (the listener's
// LISTENOVERFLOWS), and so is its retransmission at +100 ms. tcp_abort_on_overflow=1 does not
// turn this into a RST: it acts only when the queue fills between a SYN and its handshake's
// last ACK (asterinas#1734 proposed a RST here; Linux, as its review measured, drops). Once
// the loop runs, the listener accepts, and client3's next retransmission gets S..
// timeout: 10
import * as net from "node:net";
import { blockLoop, connect, done, env, invoke, listen, log, once, watch, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
const accepted = [];
server.on("connection", (socket) => {
  watch(socket, "server");
  accepted.push(socket);
});
await listen(server, env.port, "127.0.0.1");

const sides = ["client", "client2", "client3"];
const clients = await new Promise((resolve) =>
  setImmediate(() => {
    const list = sides.map((side) => connect(side, { host: "127.0.0.1", port: env.port }));
    // after the three connect() calls (their syscalls run in process.nextTick), before any accept
    process.nextTick(() => {
      log("listener", "block", { ms: 150 });
      blockLoop(150);
      log("listener", "unblock");
      resolve(list);
    });
  }));
await Promise.all(clients.map((c) => once(c, "connect")));

// each closes in turn, the 3-packet close of the built-ins (the server has read a byte first)
for (const [i, client] of clients.entries()) {
  const peer = accepted.find((s) => s.remotePort === client.localPort);
  invoke(client, sides[i], "write", "x");
  await once(peer, "data");
  invoke(client, sides[i], "end");
  await Promise.all([once(client, "close"), once(peer, "close")]);
}
done();
