// nagle: with Nagle's algorithm a small write waits for the ACK of the one before; setNoDelay(true) sends it at once
// seed: none (field report)
// source: nodejs/node#34185
// floor: 300ms
// Small writes stall for a round trip (or a delayed ACK, ~40 ms on Linux) because net sockets
// start with Nagle's algorithm on; nodejs/node#34185 asks for TCP_NODELAY by default for HTTP,
// as curl did. On loopback the ACK comes within microseconds, so the lab delays every packet
// from the server's port by 50 ms (the userspace relay): the stall becomes visible. Two clients
// in turn each write 1 byte twice: `client` (Nagle on, the default) sends the second byte only
// once the server's ACK of the first has arrived, 50 ms later; `client2` calls setNoDelay(true)
// first and sends both bytes at once. Each end()s once the server has read both bytes: an end()
// right after the writes would send the held byte at once, with the FIN (measured: the FIN
// pushes out what Nagle holds, 1 ms after the first byte, ACK or not).
import * as net from "node:net";
import { accept, connect, done, endOnEnd, env, fault, invoke, listen, once, watchServer } from "./probe.mjs";

await fault("delay", { port: env.port, direction: "from", ms: 50 });
const server = watchServer(net.createServer({ allowHalfOpen: true }));
let bothRead = null; // resolved when the server has read the 2 bytes of the current client
accept(server, (socket) => {
  endOnEnd("server")(socket);
  socket.on("data", () => socket.bytesRead >= 2 && bothRead());
});
await listen(server, env.port, "127.0.0.1");

for (const side of ["client", "client2"]) {
  const socket = connect(side, { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
  await once(socket, "connect");
  if (side === "client2") invoke(socket, side, "setNoDelay", true);
  const read = new Promise((resolve) => (bothRead = resolve));
  invoke(socket, side, "write", "a");
  invoke(socket, side, "write", "b");
  await read;
  invoke(socket, side, "end");
  await once(socket, "close");
}
done();
