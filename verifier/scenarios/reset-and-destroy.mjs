// reset-and-destroy: resetAndDestroy() on a connected socket sends R., never a FIN
// seed: DESIGN "The seed's observations to reproduce", row "resetAndDestroy"
// Once both ends are connected the client calls resetAndDestroy() (SO_LINGER {1, 0} + close)
// -> client R.; the server gets 'error' ECONNRESET. A runtime without resetAndDestroy logs
// `unsupported` and destroy()s instead, so the program still ends.
import * as net from "node:net";
import { accept, connect, done, env, familyOptions, invoke, listen, log, once, supports, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
const accepted = accept(server, undefined, { errors: ["ECONNRESET"] });
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, ...familyOptions("client") });
await Promise.all([once(client, "connect"), accepted]);
if (supports("resetAndDestroy")) invoke(client, "client", "resetAndDestroy");
else {
  log("client", "unsupported", { what: "resetAndDestroy" });
  invoke(client, "client", "destroy"); // so that the program still ends
}
server.close();
await once(server, "close");
done();
