// two-clients: two named clients, one after the other; each end()s and the server closes too
// `client` and `client2` are two actors: each has its own lane in the ladder and the diagram,
// and the expectation names them as written.
import * as net from "node:net";
import { accept, connect, done, env, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
accept(server); // every accepted socket is watched as "server"
await listen(server, env.port, "127.0.0.1");

for (const side of ["client", "client2"]) {
  const socket = connect(side, { host: "127.0.0.1", port: env.port });
  await once(socket, "connect");
  invoke(socket, side, "end");
  await once(socket, "close");
}
done();
