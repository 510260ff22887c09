// server-close: http server.close() stops listening (a new SYN gets R.), FINs the idle keep-alive connection at once and lets the busy one finish; closeAllConnections() ends the rest
// seed: none (field report)
// source: nodejs/node#51677
// node#51677: since 18.19.0 (and in 19+ by design) close() also closes idle keep-alive
// connections (closeIdleConnections()). Raw HTTP/1.1 clients, so the wire is the server's doing:
// `client` has had its response and sits idle (keep-alive); `client2` has sent GET /slow, which
// the server holds. close(): `client` gets a FIN at once; `client3`'s SYN to the closed port gets
// R. (ECONNREFUSED); the held response is then sent (still `Connection: keep-alive`: 126 bytes,
// 124 for "ok" + 2) and the connection stays open until closeAllConnections() FINs it too.
// timeout: 10
import * as http from "node:http";
import { call, connect, done, env, invoke, listen, log, once, watchHttpServer } from "./probe.mjs";

let release, requested;
const held = new Promise((resolve) => (release = resolve));
const slowArrived = new Promise((resolve) => (requested = resolve));
const server = watchHttpServer(
  http.createServer((req, res) => {
    req.resume();
    if (req.url !== "/slow") return res.end("ok");
    requested();
    held.then(() => res.end("slow"));
  }),
  "listener",
  { socketSide: "server" },
);
const serverClosed = once(server, "close");
await listen(server, env.port, "127.0.0.1");

const get = (path) => `GET ${path} HTTP/1.1\r\nHost: verifier\r\n\r\n`;
const client = connect("client", { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
const clientClosed = once(client, "close");
await once(client, "connect");
invoke(client, "client", "write", get("/"));
await once(client, "data"); // its response: now idle, kept alive

const client2 = connect("client2", { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
const client2Closed = once(client2, "close");
await once(client2, "connect");
invoke(client2, "client2", "write", get("/slow"));
await slowArrived;

call("listener", "close()", () => server.close());
await once(client, "end"); // the idle connection's FIN
invoke(client, "client", "end");
await clientClosed;
const client3 = connect("client3", { host: "127.0.0.1", port: env.port }, { errors: ["ECONNREFUSED"] });
await once(client3, "close");

log("server", "release");
release();
await once(client2, "data"); // the held response
call("listener", "closeAllConnections()", () => server.closeAllConnections());
await once(client2, "end");
invoke(client2, "client2", "end");
await Promise.all([client2Closed, serverClosed]);
done();
