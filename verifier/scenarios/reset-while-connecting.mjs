// reset-while-connecting: resetAndDestroy() before 'connect' waits for the handshake, then R.
// seed: DESIGN "The seed's observations to reproduce", row "resetAndDestroy while connecting"
// The client calls resetAndDestroy() right after connect() is called, while it is still
// connecting; Node completes the handshake, then resets (S, S., ., then R. from the client);
// the server gets 'error' ECONNRESET. A runtime without resetAndDestroy logs `unsupported` and
// destroy()s instead, so the program still ends.
import * as net from "node:net";
import { connect, done, env, familyOptions, invoke, listen, log, once, supports, watch, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
server.on("connection", (socket) => watch(socket, "server", { errors: ["ECONNRESET"] }));
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, ...familyOptions("client") });
if (supports("resetAndDestroy")) invoke(client, "client", "resetAndDestroy");
else {
  log("client", "unsupported", { what: "resetAndDestroy" });
  invoke(client, "client", "destroy"); // so that the program still ends
}
await once(client, "close");
server.close();
done();
