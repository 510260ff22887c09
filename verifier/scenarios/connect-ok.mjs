// connect-ok: a client reaches a server on localhost:P at the first address localhost resolves to
// seed: DESIGN "The seed's observations to reproduce", row "connect ok"
// The server listens on VERIFIER_HOST (localhost resolves to ::1 first, so it listens on ::1);
// the client connects with autoSelectFamily: connectionAttempt on ::1, then connect. The client
// then end()s and the server end()s on 'end': a clean FIN close.
import * as net from "node:net";
import { accept, connect, done, endOnEnd, env, familyOptions, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server, endOnEnd("server"));
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, ...familyOptions("client") });
client.on("close", () => done());
// then a clean close: a 4-byte request the server reads first makes the close the same every
// run (the server's ACK of the FIN rides on its own FIN; see client-end)
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "write", "ping");
await once(socket, "data");
invoke(client, "client", "end");
