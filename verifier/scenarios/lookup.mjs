// lookup: 'lookup' fires once per resolved address for a hostname, never for an IP literal
// seed: DESIGN "The seed's observations to reproduce", row "lookup"
// A listener on every address VERIFIER_HOST resolves to (localhost = ::1 and 127.0.0.1). The
// first connection, to host "localhost" with autoSelectFamily -> one 'lookup' per address, no
// DNS packet (/etc/hosts). Once it has closed, a second connection to the IP literal 127.0.0.1 -> no
// 'lookup'. Server-side sockets never emit 'lookup'. Each closes cleanly: client end(), the
// server (allowHalfOpen false) ends on 'end'.
import * as dns from "node:dns";
import { EventEmitter } from "node:events";
import * as net from "node:net";
import { connect, done, env, familyOptions, fail, invoke, listen, once, watch, watchServer } from "./probe.mjs";

const received = new EventEmitter();
const addresses = await new Promise((resolve, reject) =>
  dns.lookup(env.host, { all: true }, (err, list) => (err ? reject(err) : resolve(list))));
for (const { address } of addresses) {
  const server = watchServer(net.createServer());
  server.on("connection", (socket) => {
    watch(socket, "server");
    socket.once("data", () => received.emit("data"));
  });
  await listen(server, env.port, address);
}

async function roundTrip(host) {
  const client = connect("client", { host, port: env.port, ...familyOptions("client") });
  // a 4-byte request the server reads before the client end()s: the close is then the same every
  // run (the server's ACK of the FIN rides on its FIN; see client-end)
  await once(client, "connect");
  invoke(client, "client", "write", "ping");
  await once(received, "data");
  invoke(client, "client", "end");
  await once(client, "close");
}

await roundTrip(env.host);
const literal = net.isIP(env.host) ? env.host : "127.0.0.1";
if (!addresses.some((a) => a.address === literal)) fail(`${env.host} does not resolve to ${literal}`);
await roundTrip(literal);
done();
