// server-end: the server end()s first, the client end()s on 'end' (mirror of client-end)
// seed: DESIGN "The seed's observations to reproduce", row "server end"; the seed's end() table
// Both sides allowHalfOpen: true. Once both ends are connected the server calls end() -> server
// F.; the client's 'end' -> client end() -> client F. (carrying the ACK of the server's FIN on
// Linux when within the delayed-ACK window) -> server ACK.
import * as net from "node:net";
import { accept, connect, done, env, familyOptions, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server);
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, allowHalfOpen: true, ...familyOptions("client") });
client.on("end", () => invoke(client, "client", "end"));
client.on("close", () => done());
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
// the client reads a 5-byte greeting first: then Linux delays its ACK of the server's FIN ~40 ms
// and the client's end() wins, so the ACK rides on the client's FIN (see client-end)
invoke(socket, "server", "write", "hello");
await once(client, "data");
invoke(socket, "server", "end");
