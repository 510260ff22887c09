// data-fin-before-reader: a request and its FIN that arrive before the server attaches a reader are still read and answered
// seed: none (field report)
// source: oven-sh/bun#36332
// floor: 20ms
// The client (allowHalfOpen: true) writes "hello" and end()s at once: P. and F. reach the server
// before its program looks at the socket (an accepted socket with no 'data' listener, as in a
// server that awaits something first). 20 ms after the client's 'finish' (its FIN is in the
// server's receive queue by then) the server attaches its reader: it must still get the 5 bytes
// and then 'end', and its reply (written on 'data', then end()) reaches the half-closed client.
// timeout: 10
import * as net from "node:net";
import { accept, connect, done, env, invoke, listen, log, once, watch, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer({ allowHalfOpen: true }));
let accepted;
const connected = new Promise((resolve) => server.on("connection", (socket) => resolve((accepted = socket))));
server.on("connection", (socket) => watch(socket, "server", { data: false }));
await listen(server, env.port, "127.0.0.1");

const client = connect("client", { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
await Promise.all([once(client, "connect"), connected]);
invoke(client, "client", "write", "hello");
invoke(client, "client", "end");
await once(client, "finish");
await new Promise((resolve) => setTimeout(resolve, 20));
log("server", "reader", { readableLength: accepted.readableLength, destroyed: accepted.destroyed });
accepted.on("data", (chunk) => {
  log("server", "data", { len: chunk.length });
  invoke(accepted, "server", "write", "world");
  invoke(accepted, "server", "end");
});
await Promise.all([once(client, "close"), once(accepted, "close")]);
done();
