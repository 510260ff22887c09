// allow-half-open: allowHalfOpen false answers the peer's FIN with an automatic FIN; true keeps the socket writable after 'end'
// seed: none (field report)
// source: oven-sh/bun#13217
// Two servers, one connection each; the clients are allowHalfOpen: true and send a request,
// then end(). @1: the server is allowHalfOpen: false (Node's default): on the client's FIN its
// 'end' comes and the socket end()s by itself: its FIN follows without the program calling
// end() (the CLOSE_WAIT of oven-sh/bun#13184 is a runtime that does not). @2: the server is
// allowHalfOpen: true: after 'end' it still writes a reply (data after the peer's FIN, no RST,
// no EPIPE), then end()s: the half-closed client reads it.
// timeout: 10
import * as net from "node:net";
import { accept, connect, done, env, invoke, listen, once, watchServer } from "./probe.mjs";

const closing = watchServer(net.createServer({ allowHalfOpen: false }));
const halfOpen = watchServer(net.createServer({ allowHalfOpen: true }), "listener2");
await listen(closing, env.port, "127.0.0.1");
await listen(halfOpen, env.port + 2, "127.0.0.1");

const first = accept(closing);
const second = accept(halfOpen, (socket) =>
  socket.on("end", () => {
    invoke(socket, "server2", "write", "reply");
    invoke(socket, "server2", "end");
  }), { side: "server2" });

for (const [side, port, accepted] of [["client", env.port, first], ["client2", env.port + 2, second]]) {
  const client = connect(side, { host: "127.0.0.1", port, allowHalfOpen: true });
  const [, socket] = await Promise.all([once(client, "connect"), accepted]);
  invoke(client, side, "write", "request");
  await once(socket, "data");
  invoke(client, side, "end");
  await Promise.all([once(client, "close"), once(socket, "close")]);
}
done();
