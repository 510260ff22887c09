// end-then-echo: after write() then end(), the echo of a pipe() server still arrives: F. from the client, then the echoed data and F., no RST
// seed: none (field report)
// source: oven-sh/bun#31383
// The echo server of the report: socket.pipe(socket) (allowHalfOpen false). The client
// (allowHalfOpen: true) writes "hello" and end()s in the write's callback. end() is a half-close
// (shutdown(SHUT_WR)), not close(): the client still reads the 5 echoed bytes, then the server's
// FIN (pipe() ends the server's side on 'end').
// timeout: 10
import * as net from "node:net";
import { accept, connect, done, env, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer((socket) => socket.pipe(socket)));
const accepted = accept(server, undefined, { data: false });
await listen(server, env.port, "127.0.0.1");

const client = connect("client", { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "write", "hello", () => invoke(client, "client", "end"));
await once(client, "close");
done();
