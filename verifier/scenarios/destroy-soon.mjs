// destroy-soon: destroySoon() after a large write sends every byte, then a FIN
// seed: DESIGN "The seed's observations to reproduce", row "destroySoon"
// The client writes 1 MiB (more than the socket buffer takes at once) and calls destroySoon():
// the data is flushed, then end() -> F.; 'finish' comes before 'close'. The server reads it all
// (bytesRead 1048576 at 'end') and ends on 'end'.
import * as net from "node:net";
import { accept, connect, done, env, fail, familyOptions, invoke, listen, once, watchServer } from "./probe.mjs";

const SIZE = 1 << 20;
// The server answers the client's FIN 100 ms after its 'end' (allowHalfOpen), so its ACK of the
// FIN always leaves before its own FIN: the close is the same every run, whatever Linux's
// delayed-ACK timer does after a 1 MiB transfer (destroySoon is about the client's side).
const server = watchServer(net.createServer({ allowHalfOpen: true }));
const accepted = accept(server, (socket) => {
  socket.on("end", () => {
    if (socket.bytesRead !== SIZE) fail(`server read ${socket.bytesRead} bytes, expected ${SIZE}`);
    setTimeout(() => invoke(socket, "server", "end"), 100);
  });
});
await listen(server, env.port, env.host);

const client = connect("client", { host: env.host, port: env.port, ...familyOptions("client") });
await Promise.all([once(client, "connect"), accepted]);
invoke(client, "client", "write", new Uint8Array(SIZE).fill(0x61));
invoke(client, "client", "destroySoon");
server.close();
await Promise.all([once(client, "close"), once(server, "close")]);
done();
