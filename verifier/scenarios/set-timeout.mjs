// set-timeout: socket.setTimeout() only emits 'timeout': nothing goes on the wire until the program closes the socket itself
// seed: none (field report)
// source: FurqanSoftware/node-whois#33
// floor: 50ms
// node-whois#33: on a lookup timeout the socket stayed open and CLI scripts never exited (fixed
// by calling destroy() in 'timeout'). Node documents that a timeout closes nothing.
// After a ping/pong exchange (so each side has had data and the close below is the same every run) the
// client calls setTimeout(50): 50 ms of silence later it emits 'timeout' and the wire shows
// nothing at all (no FIN, no RST, no keep-alive probe); only then does the program call end().
// timeout: 10
import * as net from "node:net";
import { accept, connect, done, env, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
const accepted = accept(server, (socket) => socket.on("data", () => invoke(socket, "server", "write", "pong")));
await listen(server, env.port, "127.0.0.1");

const client = connect("client", { host: "127.0.0.1", port: env.port });
await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "write", "ping");
await once(client, "data");
invoke(client, "client", "setTimeout", 50);
await once(client, "timeout");
invoke(client, "client", "end");
await once(client, "close");
done();
