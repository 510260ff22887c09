// destroy-unread: destroy() with received data left unread resets the connection (R., no FIN)
// seed: DESIGN "The seed's observations to reproduce", row "destroy with unread data" (RFC 2525 §2.17, RFC 9293 §3.6.1)
// The client is paused before it connects, so it never reads from its kernel buffer. The server
// writes 6 bytes once both ends are connected; once the write has completed (on loopback the
// bytes are then in the client's receive queue; a 20 ms margin follows) the client calls
// destroy() -> the kernel sends R. instead of a FIN; the server gets 'error' ECONNRESET.
import * as net from "node:net";
import { accept, connect, done, env, familyOptions, invoke, listen, log, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer());
const accepted = accept(server, undefined, { errors: ["ECONNRESET"] });
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, ...familyOptions("client") }, { pause: true });
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
await new Promise((resolve) =>
  invoke(socket, "server", "write", "unread", () => {
    log("server", "written", { bytesWritten: socket.bytesWritten });
    resolve();
  }));
await new Promise((resolve) => setTimeout(resolve, 20));
invoke(client, "client", "destroy");
server.close(); // 'close' once the reset server-side socket has closed
await once(server, "close");
done();
