// client-end: the client end()s first, the server end()s on 'end' (a 3-packet close on Linux)
// seed: DESIGN "The seed's observations to reproduce", row "client end"; the seed's end() table
// Both sides allowHalfOpen: true. Once both ends are connected the client calls end() -> client
// F.; the server's 'end' (readableEnded true, writable still true) -> server end() -> server F.,
// which on Linux carries the ACK of the client's FIN: the client first sends a 5-byte request
// the server reads, and a Linux receiver that has had data delays the ACK of a FIN by ~40 ms
// (with no data received it leaves within a timer tick, 0.3-4 ms: a race with end()). The
// client's 'end' then shows readableEnded and writableEnded true.
import * as net from "node:net";
import { accept, connect, done, endOnEnd, env, familyOptions, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server, endOnEnd("server"));
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, allowHalfOpen: true, ...familyOptions("client") });
client.on("close", () => done());
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "write", "hello");
await once(socket, "data");
invoke(client, "client", "end");
