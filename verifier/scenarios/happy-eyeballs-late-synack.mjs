// happy-eyeballs-late-synack: a slow first address is abandoned at the attempt timeout; its late SYN-ACK is answered with a RST
// seed: none (field report)
// source: nodejs/node#47822
// floor: 250ms
// nodejs/node#47822 (ERR_SOCKET_CONNECTION_TIMEOUT on node 20) shows it in the reporter's own
// capture: a SYN-ACK arriving after node had abandoned that attempt, answered at once with RST;
// nodejs/node#54359: connections that would have succeeded fail with ETIMEDOUT when every
// handshake takes longer than autoSelectFamilyAttemptTimeout (250 ms by default). Here the lab
// delays every packet from [::1]:VERIFIER_PORT by 100 ms (the userspace relay; 127.0.0.1 is not
// delayed); the client connects to localhost (::1, then 127.0.0.1) with
// autoSelectFamilyAttemptTimeout 10: the ::1 attempt is abandoned at 10 ms (its socket closed
// while SYN_SENT: nothing on the wire), 127.0.0.1 connects, and when the ::1 SYN-ACK arrives
// 100 ms after its SYN there is no socket for it: the client's kernel answers R. The client
// sends 4 bytes the server reads (so the close is the same every run: Linux's delayed ACK of the
// FIN then rides on the server's FIN), stays connected 150 ms more (past the late SYN-ACK),
// then end()s.
import * as net from "node:net";
import { accept, connect, done, env, familyOptions, fault, invoke, listen, once, watchServer } from "./probe.mjs";

await fault("delay", { address: "::1", port: env.port, direction: "from", ms: 100 });
const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server, (socket) => socket.on("end", () => invoke(socket, "server", "end")));
await listen(server, env.port, "::"); // both families (IPv4 as ::ffff:127.0.0.1)

const client = connect("client", {
  host: env.host, port: env.port, allowHalfOpen: true,
  ...familyOptions("client", { autoSelectFamilyAttemptTimeout: 10 }),
});
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "write", "ping");
await once(socket, "data");
await new Promise((resolve) => setTimeout(resolve, 150));
invoke(client, "client", "end");
await once(client, "close");
done();
