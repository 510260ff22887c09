// close-unread: my guess: destroy() closes with a FIN even when data was left unread
// The server sends 6 bytes the client never reads (it is paused), then the client destroy()s.
import * as net from "node:net";
import { accept, connect, done, env, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
const accepted = accept(server, undefined, { errors: ["ECONNRESET"] });
await listen(server, env.port, "127.0.0.1");

const client = connect("client", { host: "127.0.0.1", port: env.port }, { pause: true });
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
await new Promise((resolve) => invoke(socket, "server", "write", "unread", resolve));
await new Promise((resolve) => setTimeout(resolve, 20)); // the bytes are in the client's queue
invoke(client, "client", "destroy");
server.close();
await once(server, "close");
done();
