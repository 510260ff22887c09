// read-write: the server writes "123", then "456" on the next tick; the client reads both
// seed: DESIGN "The seed's observations to reproduce", row "read/write"
// Two P. segments of 3 bytes, each ACKed; the client's 'data' fires twice with bytesRead 3 then
// 6, the server's bytesWritten is 3 then 6 (logged as `written` from each write's callback).
// Client and server share one process, so a second write issued on the tick after the first
// would reach the client's kernel buffer before the client's first read, and one read would
// return all six bytes: the server writes "123" once the client is connected, and "456" on the
// next tick after the client's first 'data'. Then the client end()s, the server end()s on 'end'.
// The exchange starts with a 2-byte request from the client ("go"): having received data, the
// server delays its ACK of the client's FIN ~40 ms, so the ACK rides on its FIN every run.
import * as net from "node:net";
import process from "node:process";
import { accept, connect, done, endOnEnd, env, fail, familyOptions, invoke, listen, log, once, watchServer } from "./probe.mjs";

const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server, endOnEnd("server"));
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, ...familyOptions("client") });
client.on("close", () => done());
const [, socket] = await Promise.all([once(client, "connect"), accepted]);
const write = (text) =>
  invoke(socket, "server", "write", text, () => log("server", "written", { bytesWritten: socket.bytesWritten }));

client.on("data", () => {
  if (client.bytesRead === 3) process.nextTick(() => write("456"));
  else if (client.bytesRead === 6) invoke(client, "client", "end");
  else fail(`client has read ${client.bytesRead} bytes: expected 3, then 6`);
});
socket.once("data", () => write("123"));
invoke(client, "client", "write", "go");
