// process-exit: a process that dies with a socket open: process.exit(), an uncaught exception, SIGKILL and an unref()ed socket all end in the kernel's FIN; unread data at death is a RST
// seed: none (field report)
// source: oven-sh/bun#34556
// The program spawns itself (same runtime) as a child per case; each child connects to the
// parent's server (allowHalfOpen false), writes 4 bytes the server reads, and dies with its
// socket still open: `exit` calls process.exit() on the server's answer, `throw` throws from the
// 'data' handler (an uncaught exception), `kill` is SIGKILLed by the parent once the server has
// read its bytes, `unref` unref()s its socket and lets the event loop run dry (the process exits
// by itself). The kernel closes each orphaned socket like close(): F. (the parent's server then
// FINs back and the dead process's kernel socket ACKs). `unread`: a paused child whose receive
// queue holds 6 unread bytes when the parent SIGKILLs it: R. instead of a FIN (as destroy-unread).
// bun#34556: on Windows bun sent RST where Linux (here) and node send FIN.
// timeout: 15
import { spawn } from "node:child_process";
import * as net from "node:net";
import process from "node:process";
import { connect, done, env, invoke, listen, log, once, watch, watchServer } from "./probe.mjs";

const mode = process.argv[2];
if (mode) {
  // the child: actor "child"
  const unread = mode === "unread";
  const socket = connect("child", { host: "127.0.0.1", port: env.port }, { pause: unread });
  await once(socket, "connect");
  invoke(socket, "child", "write", "ping");
  if (mode === "unref") invoke(socket, "child", "unref");
  // a paused socket does not hold the event loop: this timer keeps the unread child alive
  if (unread) setTimeout(() => {}, 10000);
  socket.on("data", () => {
    if (mode === "exit") {
      log("child", "exit()");
      process.exit(0);
    }
    if (mode === "throw") {
      log("child", "throw");
      throw new Error("uncaught, on purpose");
    }
  });
} else {
  const server = watchServer(net.createServer());
  let next;
  server.on("connection", (socket) => next(watch(socket, "server", { errors: ["ECONNRESET"] })));
  await listen(server, env.port, "127.0.0.1");
  const self = new URL(import.meta.url).pathname;
  const argv = globalThis.Deno
    ? ["run", "--allow-all", "--quiet", "--no-config", "--no-lock", self]
    : [self];
  for (const mode of ["exit", "throw", "kill", "unref", "unread"]) {
    const accepted = new Promise((resolve) => (next = resolve));
    log("parent", "spawn", { mode });
    const child = spawn(process.execPath, [...argv, mode], { stdio: ["ignore", "ignore", "ignore"] });
    const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
    const socket = await accepted;
    const closed = once(socket, "close");
    await once(socket, "data");
    if (mode === "exit" || mode === "throw") invoke(socket, "server", "write", "pong");
    if (mode === "unread")
      await new Promise((resolve) => invoke(socket, "server", "write", "unread", () => setTimeout(resolve, 20)));
    if (mode === "kill" || mode === "unread") {
      log("parent", "kill()", { signal: "SIGKILL" });
      child.kill("SIGKILL");
    }
    log("parent", "exited", await exited);
    await closed;
  }
  done();
}
