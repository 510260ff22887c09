// destroy: destroy() with nothing unread closes with a FIN, not a reset; the peer gets 'end'
// seed: DESIGN "The seed's observations to reproduce", row "destroy"; the seed's destroy() table
// Once both ends are connected (nothing sent either way) the client calls destroy() -> client
// F.; the server's 'end' -> the server (allowHalfOpen false) ends too -> server F., ACKed by the
// client's kernel. The client's 'close' shows readable and writable false.
import * as net from "node:net";
import { accept, connect, done, env, familyOptions, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
const accepted = accept(server);
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, ...familyOptions("client") });
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
// the client sends 3 bytes the server reads first (the client has nothing unread: the server sent
// nothing); then the server's ACK of the client's FIN rides on its own FIN every run (see client-end)
invoke(client, "client", "write", "bye");
await once(socket, "data");
invoke(client, "client", "destroy");
server.close(); // 'close' once the server-side socket has closed too
await once(server, "close");
done();
