// echo-close: the echo server sends the bytes back, then answers the client's FIN with its own
// The project's server, from ../src/server.mjs, on the wire: a client writes "hello", reads the
// echo, then end()s; the server (allowHalfOpen false) closes too, with a FIN, never a RST.
import { makeServer } from "../src/server.mjs";
import { accept, connect, done, env, invoke, listen, once, watchServer } from "./probe.mjs";

const server = watchServer(makeServer());
const accepted = accept(server);
await listen(server, env.port, "127.0.0.1");

const client = connect("client", { host: "127.0.0.1", port: env.port });
await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "write", "hello");
await once(client, "data"); // the echo
invoke(client, "client", "end");
await once(client, "close");
done();
