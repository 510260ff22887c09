// reuse-after-fin: a server that FINs after every response: the second fetch() must open a new connection, never send on the FIN'd one
// seed: none (field report)
// source: nodejs/undici#1415
// undici#1415 (node 18's fetch): with a server that calls res.socket.end() after each response,
// the second of two sequential fetch() calls always failed ("other side closed"). The server
// here does the same; the client awaits the first body, then fetches again. On the wire the
// first connection must end (server FIN, client FIN) with no request after the server's FIN, and
// the second fetch must come on a new connection (@2), answered 200.
// timeout: 10
import * as http from "node:http";
import { done, env, listen, log, watchHttpServer } from "./probe.mjs";

const server = watchHttpServer(
  http.createServer((req, res) => {
    req.resume();
    res.end("Response body");
    res.socket.end();
  }),
  "listener",
  { socketSide: "server" },
);
await listen(server, env.port, "127.0.0.1");

const url = `http://127.0.0.1:${env.port}/`;
for (const side of ["client", "client2"]) {
  log(side, "fetch()");
  try {
    const res = await fetch(url);
    log(side, "response", { status: res.status, connection: res.headers.get("connection") });
    const body = await res.text();
    log(side, "body", { len: body.length });
  } catch (err) {
    log(side, "error", { name: err?.name, cause: err?.cause?.code ?? err?.cause?.name ?? null });
  }
}
server.closeAllConnections?.();
done();
