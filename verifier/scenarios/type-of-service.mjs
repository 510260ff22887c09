// type-of-service: setTypeOfService(0x10) on a connected socket marks the IP TOS byte of what it sends next (show -v: tos 0x10); runtimes without it say unsupported
// seed: none (field report)
// source: nodejs/node#61489
// Users found no way to mark their traffic (nodejs/node#61489, a feature request; nodejs/node#61503
// added socket.setTypeOfService()/getTypeOfService() in node 24), and where the API exists it
// may not reach the wire (oven-sh/bun#42472: bun drops the typeOfService option of connect). Here
// the client calls setTypeOfService(0x10) once connected, then sends 4 bytes the server reads:
// the IP header's TOS byte of that segment and of the client's later ones is what the kernel
// really sends (an expectation line can require it: `tos 0x10`). Node 20 and 22 and Deno have no
// such method: the probe logs `unsupported` and the segment carries TOS 0.
import * as net from "node:net";
import { accept, connect, done, endOnEnd, env, invoke, listen, log, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server, endOnEnd("server"));
await listen(server, env.port, "127.0.0.1");

const client = connect("client", { host: "127.0.0.1", port: env.port, allowHalfOpen: true });
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "setTypeOfService", 0x10);
if (typeof client.getTypeOfService === "function") log("client", "typeOfService", { tos: client.getTypeOfService() });
invoke(client, "client", "write", "ping");
await once(socket, "data");
invoke(client, "client", "end");
await once(client, "close");
done();
