// http2-goaway: the http2 server's session.close() sends GOAWAY (a 17-byte frame) before its FIN; the client sees 'goaway', then the close
// seed: none (field report)
// source: oven-sh/bun#38158
// bun#38158: a runtime whose destroy() never got its GOAWAY out (sessions on a socket with no
// native handle). Here, h2c on a plain listening server: the client sends one GET; the server
// answers it and calls session.close() in the stream's 'close': a GOAWAY frame (9-byte header +
// 8 bytes, NO_ERROR) goes out, then, with no stream left, the session ends its socket: F.. A
// runtime without node:http2 logs `unsupported` and makes no connection.
// timeout: 10
import { done, env, log, once } from "./probe.mjs";

let http2;
try {
  http2 = await import("node:http2");
} catch (err) {
  log("client", "unsupported", { what: "node:http2" });
}
if (http2) {
  const server = http2.createServer();
  server.on("session", (session) => {
    log("server", "session");
    session.on("close", () => log("server", "close"));
  });
  server.on("stream", (stream, headers) => {
    const session = stream.session; // gone from the stream once it has closed
    log("server", "stream", { path: headers[":path"] });
    stream.respond({ ":status": 200 }, { sendDate: false }); // a date header's HPACK length varies
    stream.end("ok");
    stream.on("close", () => {
      log("server", "close()");
      session.close();
    });
  });
  server.on("close", () => log("listener", "close"));
  await new Promise((resolve) => server.listen(env.port, "127.0.0.1", resolve));
  log("listener", "listening", { port: env.port });

  const client = http2.connect(`http://127.0.0.1:${env.port}`);
  client.on("connect", () => log("client", "connect"));
  client.on("goaway", (code, lastStreamID) => log("client", "goaway", { code, lastStreamID }));
  client.on("error", (err) => log("client", "error", { code: err.code }));
  const closed = once(client, "close");
  const req = client.request({ ":path": "/" });
  req.on("response", (headers) => log("client", "response", { status: headers[":status"] }));
  req.resume();
  await once(req, "end");
  log("client", "end");
  await closed;
  log("client", "close");
  server.close();
}
done();
