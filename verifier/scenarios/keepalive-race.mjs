// keepalive-race: a request sent on a kept-alive connection as the server's idle timer expires is answered with a RST: the client gets ECONNRESET
// seed: none (field report)
// source: nodejs/node#52649
// floor: 1.2s
// The race of node#52649 and undici#3141 ("socket hang up" / ECONNRESET near keepAliveTimeout),
// made deterministic. The client is a raw net socket speaking HTTP/1.1 by hand (an http.Agent
// would not reuse the socket: the server's `Keep-Alive: timeout=0` hint, see
// keepalive-timeout-idle). After the first response the program blocks its event loop (client
// and server share it) for longer than the server's idle timeout (keepAliveTimeout 100 ms +
// the runtime's buffer: keepAliveTimeoutBuffer, 1000 ms in node 20.20 where it is not exposed).
// In the setImmediate callback that ends the block the client writes its second request: it
// reaches the server's receive queue at once (loopback). The loop's next timers phase comes
// before its next poll (read) phase: the server's expired idle timer destroys the socket with
// that request unread, so the kernel sends R., not a FIN, and the client's read fails with
// ECONNRESET. (Blocking in a setTimeout callback does not: that timers phase keeps the time it
// started with, the poll phase reads the request first and the server answers it.)
// timeout: 10
import * as http from "node:http";
import { blockLoop, connect, done, env, invoke, listen, log, once, watchHttpServer } from "./probe.mjs";

const server = watchHttpServer(
  http.createServer({ keepAliveTimeout: 100 }, (req, res) => {
    req.resume();
    res.end("ok");
  }),
  "listener",
  { socketSide: "server" },
);
await listen(server, env.port, "127.0.0.1");
const idle = server.keepAliveTimeout + (server.keepAliveTimeoutBuffer ?? 1000);

const request = "GET / HTTP/1.1\r\nHost: verifier\r\n\r\n";
const client = connect("client", { host: "127.0.0.1", port: env.port }, { errors: ["ECONNRESET"] });
await once(client, "connect");
invoke(client, "client", "write", request);
await once(client, "data"); // the first response
await new Promise((resolve) =>
  setImmediate(() => {
    log("client", "block", { ms: idle + 100 });
    blockLoop(idle + 100);
    invoke(client, "client", "write", request);
    resolve();
  }));
await once(client, "close");
done();
