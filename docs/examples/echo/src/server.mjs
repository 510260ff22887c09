// The project's code: an echo server. Node's default allowHalfOpen=false ends a socket as soon
// as its peer's FIN arrives, so the server closes when its client does.
import * as net from "node:net";

export function makeServer() {
  return net.createServer((socket) => {
    socket.on("data", (chunk) => socket.write(chunk));
  });
}
