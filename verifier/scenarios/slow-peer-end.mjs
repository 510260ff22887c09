// slow-peer-end: the server end()s 100 ms after 'end': Linux ACKs the FIN alone first (4 packets)
// seed: DESIGN "The seed's observations to reproduce", row "client end": its other shape
// floor: 100ms
// The same close as client-end, but the server waits 100 ms before its end(). Linux's delayed
// ACK of the client's FIN (within a timer tick when no data was received, ~40 ms after data) has
// long left by then: a separate ACK, then the server's FIN — the 4-packet close BSD/macOS always
// do. Whether Linux shows 3 or 4 packets is a race between that timer and the application.
import * as net from "node:net";
import { accept, connect, done, env, familyOptions, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server, (socket) => {
  socket.on("end", () => setTimeout(() => invoke(socket, "server", "end"), 100));
});
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, allowHalfOpen: true, ...familyOptions("client") });
client.on("close", () => done());
await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "end");
