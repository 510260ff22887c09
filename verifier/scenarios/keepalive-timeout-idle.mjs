// keepalive-timeout-idle: the http server closes an idle keep-alive connection with a FIN keepAliveTimeout + 1 s after its response
// seed: none (field report)
// source: nodejs/node#13655
// floor: 1.1s
// node#13655 (node 8.1): a client pooling sockets for 6 s saw the server close idle ones after a
// few seconds: the new 5 s server.keepAliveTimeout (node#13391 is the same timer cutting a busy,
// long request, fixed in 8.1.1; this scenario measures the idle close). Here the timeout is 100 ms
// and the response announces `Keep-Alive: timeout=0` (floor(100 / 1000)).
// @1: a keep-alive http.Agent reads that hint and does not keep the socket: its FIN follows the
// response at once (node 20: the hint's 0 s is the agent's free-socket timeout).
// @2: a raw client (net) sends the same GET by hand, reads the response and waits: nothing is
// sent until the server's socket times out, measured at keepAliveTimeout + 1000 ms (node 20.20
// too: a fixed buffer; node 22/24 and bun expose it as keepAliveTimeoutBuffer), and is destroyed
// with nothing unread: a FIN from the server, never a RST. The client, which had data first,
// answers with its own FIN carrying the ACK (Linux's delayed ACK).
// timeout: 10
import * as http from "node:http";
import { connect, done, env, invoke, listen, log, once, watchAgent, watchHttpServer, watchRequest } from "./probe.mjs";

const server = watchHttpServer(
  http.createServer({ keepAliveTimeout: 100 }, (req, res) => {
    req.resume();
    res.end("ok");
  }),
  "listener",
  { socketSide: "server" },
);
await listen(server, env.port, "127.0.0.1");
log("listener", "keepAliveTimeout", { ms: server.keepAliveTimeout, buffer: server.keepAliveTimeoutBuffer ?? null });

const agent = watchAgent(new http.Agent({ keepAlive: true }));
const req = watchRequest(http.request({ host: "127.0.0.1", port: env.port, path: "/", agent }), "agentClient", {
  socketSide: "agentSocket",
});
const agentSocket = once(req, "socket");
const serverSocket = once(server, "connection");
req.end();
(await once(req, "response")).resume();
await once(await agentSocket, "close");
await once(await serverSocket, "close"); // @1 closed both ways before @2 starts
agent.destroy();

const client = connect("client", { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
await once(client, "connect");
invoke(client, "client", "write", "GET / HTTP/1.1\r\nHost: verifier\r\n\r\n");
await once(client, "data"); // the whole response (one segment on loopback)
await once(client, "end"); // the server's FIN, keepAliveTimeout (+ buffer) later
invoke(client, "client", "end");
await once(client, "close");
done();
