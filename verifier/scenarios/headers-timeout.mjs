// headers-timeout: a client that never finishes its request headers gets 408 and a FIN within headersTimeout + connectionsCheckingInterval
// seed: none (field report)
// source: nodejs/node#41263
// floor: 250ms
// node#41263 (node 18) moved headersTimeout and requestTimeout to a periodic check every
// connectionsCheckingInterval (default 30 s), so a slow client is answered late. Here
// headersTimeout 200 ms, requestTimeout 300 ms, connectionsCheckingInterval 50 ms. The raw
// client sends the request line and one header and stops: no more data from either side until
// the check finds the request too old; the server then writes `HTTP/1.1 408 Request Timeout`
// with Connection: close and closes (FIN). The listener's clientError (observed without a
// listener, so Node's default 408 is kept) has code ERR_HTTP_REQUEST_TIMEOUT.
// timeout: 10
import * as http from "node:http";
import { connect, done, env, invoke, listen, log, once, watchHttpServer } from "./probe.mjs";

const server = watchHttpServer(
  http.createServer({ headersTimeout: 200, requestTimeout: 300, connectionsCheckingInterval: 50 }, (req, res) =>
    res.end("never")),
  "listener",
  { socketSide: "server", errors: ["ERR_HTTP_REQUEST_TIMEOUT"] },
);
await listen(server, env.port, "127.0.0.1");
log("listener", "timeouts", { headersTimeout: server.headersTimeout, requestTimeout: server.requestTimeout });

const client = connect("client", { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
await once(client, "connect");
invoke(client, "client", "write", "GET / HTTP/1.1\r\nHost: verifier\r\n");
client.on("end", () => invoke(client, "client", "end"));
await once(client, "close");
done();
