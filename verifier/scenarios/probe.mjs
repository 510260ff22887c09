// probe: logs socket events and the program's own calls as JSON lines for the verifier
//
// Runs unchanged under node, bun and deno: it imports only node:net, node:fs and
// node:process and reads the clock from globalThis.performance.
//
// One JSON object per line, appended synchronously to the file named by the environment
// variable VERIFIER_EVENTS (stdout when unset):
//   {"t": <epoch seconds, float>, "side": "<actor>", "name": "...", "args": {...}}
// `t` is (performance.timeOrigin + performance.now()) / 1000, the clock capture timestamps use.
// A side is an actor's name: client, server, listener or any other the scenario chooses
// (client2, agent, upstream): [a-z][A-Za-z0-9_-]*, not a word of the expectation language.
// Socket events keep Node's names (`connect`, `end`, ...); the program's own method calls are
// logged BEFORE they run, named with parens (`end()`, `destroy()`, `resetAndDestroy()`, ...).
// Argument values are JSON scalars or lists of scalars; keys are camelCase as Node names them.
//
// API (docs/scenarios.md has each with an example):
//   watch(socket, side, {data = true, errors = []})  attach listeners right after creating a socket
//   connect(side, options, {pause, data, errors}) -> socket   new Socket, watch, then connect
//   watchServer(server, side = "listener")            log a net.Server's listening/connection/close/error
//   accept(server, setup, {side = "server", ...watchOptions}) -> Promise
//                                                      the first accepted socket; every accepted
//                                                      socket is watched as `side`
//   endOnEnd(side)                                     a setup: end() on 'end' (the seed's half-close answer)
//   listen(server, port, host) -> Promise              server.listen(), resolves on 'listening'
//   call(side, name, fn, args)                         log `name` then run fn()
//   invoke(socket, side, method, ...margs)             log `method()` then socket[method](...margs);
//                                                      logs `unsupported` if the runtime lacks it
//   log(side, name, args)                              any other event
//   supports(what) -> bool                             feature check (autoSelectFamily, ...)
//   familyOptions(side, extra) -> options              {autoSelectFamily: true, ...extra}, `unsupported` logged
//   once(emitter, name) -> Promise                     resolves with the event's first argument
//   fail(message)                                      unexpected behaviour: stderr + exit code 1
//   done({grace})                                      close listeners, let the process exit
//   env, events                                        ports and host from the harness; what was logged
//   fault(kind, options) -> Promise                    a network fault from the lab, in place when it resolves (fault.mjs)
//
// HTTP (the objects come from the scenario's own node:http; the probe imports nothing more):
//   watchHttpServer(server, side = "listener", {socketSide, errors})
//       watchServer() plus `request` (method, url, httpVersion, connection, keepAlive: the
//       request's headers that decide reuse, remotePort), `timeout` (remotePort) and
//       `clientError` (code, remotePort). `timeout` and `clientError` are observed by wrapping
//       server.emit, not by listening: a listener would change Node's default (no 408/400
//       answer, no destroy of the timed-out socket). socketSide: watch() every accepted socket
//       under that actor, with data: false (the http parser reads them) and `errors`
//   watchRequest(req, side = "client", {socketSide, errors}) -> req
//       an http.ClientRequest: `socket` (reused: req.reusedSocket), `response` (statusCode,
//       connection, keepAlive headers), `responseEnd`, `close`, `error` (code; a code not in
//       `errors` fails the program). socketSide: watch() the request's socket under that actor
//       (each socket once, however many requests reuse it), data: false
//   watchAgent(agent, side = "agent") -> agent        an http.Agent's `free` (localPort)
//   blockLoop(ms)                                      block this process's event loop for ms
//                                                      (Atomics.wait): timers and I/O wait behind it
import * as fs from "node:fs";
import * as net from "node:net";
import process from "node:process";

const perf = globalThis.performance;
const target = process.env.VERIFIER_EVENTS;
const fd = target ? fs.openSync(target, "a") : 1;

export const events = []; // what was logged, for the program's own checks

function now() {
  return (perf.timeOrigin + perf.now()) / 1000;
}

function scalar(v) {
  if (v === undefined) return null;
  if (v === null || typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "number") return Number.isFinite(v) ? v : String(v);
  if (typeof v === "bigint") return Number(v);
  if (Array.isArray(v)) return v.map(scalar);
  return String(v);
}

const SIDE_NAME = /^[a-z][A-Za-z0-9_-]*$/;
const RESERVED = new Set(["never", "one", "or", "end", "repeat", "meanwhile", "linux", "darwin", "windows", "any"]);

// An actor's name must read back unambiguously in the notation: thrown at once, where it is given.
function checkSide(side) {
  if (typeof side !== "string" || !SIDE_NAME.test(side) || RESERVED.has(side))
    throw new TypeError(
      `probe: ${JSON.stringify(side)} cannot name an actor: use [a-z][A-Za-z0-9_-]* ` +
        `(client2, agent, upstream), not one of ${[...RESERVED].join(" ")}`);
  return side;
}

export function log(side, name, args = {}) {
  checkSide(side);
  const clean = {};
  for (const [k, v] of Object.entries(args)) clean[k] = scalar(v);
  const ev = { t: now(), side, name, args: clean };
  events.push(ev);
  const line = JSON.stringify(ev) + "\n";
  if (fd === 1) fs.writeSync(1, line);
  else fs.appendFileSync(fd, line);
  return ev;
}

export function fail(message) {
  process.exitCode = 1;
  try {
    fs.writeSync(2, `scenario: ${message}\n`);
  } catch {
    // stderr gone: the exit code still says it
  }
}

export function supports(what) {
  switch (what) {
    case "autoSelectFamily":
      return typeof net.getDefaultAutoSelectFamily === "function";
    case "autoSelectFamilyAttemptTimeout":
      return typeof net.getDefaultAutoSelectFamilyAttemptTimeout === "function";
    case "resetAndDestroy":
      return typeof net.Socket.prototype.resetAndDestroy === "function";
    case "destroySoon":
      return typeof net.Socket.prototype.destroySoon === "function";
    default:
      return false;
  }
}

// connection options with autoSelectFamily; logs `unsupported` where the runtime lacks it
export function familyOptions(side, extra = {}) {
  if (!supports("autoSelectFamily")) log(side, "unsupported", { what: "autoSelectFamily" });
  if ("autoSelectFamilyAttemptTimeout" in extra && !supports("autoSelectFamilyAttemptTimeout"))
    log(side, "unsupported", { what: "autoSelectFamilyAttemptTimeout" });
  return { autoSelectFamily: true, ...extra };
}

function state(s) {
  return {
    readableEnded: s.readableEnded,
    writableEnded: s.writableEnded,
    readable: s.readable,
    writable: s.writable,
    bytesRead: s.bytesRead,
    bytesWritten: s.bytesWritten,
  };
}

function describeError(err) {
  if (err == null) return { code: null };
  const out = {
    name: err.name,
    code: err.code ?? null,
    message: String(err.message ?? "").split("\n")[0],
  };
  if (err.syscall !== undefined) out.syscall = err.syscall;
  if (err.address !== undefined) out.address = err.address;
  if (err.port !== undefined) out.port = err.port;
  if (Array.isArray(err.errors)) {
    out.errors = err.errors.map((e) => e?.code ?? e?.name ?? null);
    out.addresses = err.errors.map((e) => e?.address ?? null);
    out.ports = err.errors.map((e) => e?.port ?? null);
  }
  return out;
}

const sockets = new Set();
const servers = new Set();

// Attach the listeners at once: call right after creating the socket, before anything emits.
//   data:   false leaves the socket without a 'data' listener (so nothing reads it)
//   errors: codes an 'error' may have by design; any other error is a failure
export function watch(socket, side, { data = true, errors = [] } = {}) {
  checkSide(side);
  sockets.add(socket);
  socket.on("lookup", (err, address, family, host) =>
    log(side, "lookup", { err: err ? err.code ?? err.name : null, address, family, host }));
  socket.on("connectionAttempt", (ip, port, family) =>
    log(side, "connectionAttempt", { ip, port, family }));
  socket.on("connectionAttemptFailed", (ip, port, family, error) =>
    log(side, "connectionAttemptFailed", { ip, port, family, code: error?.code ?? null }));
  socket.on("connectionAttemptTimeout", (ip, port, family) =>
    log(side, "connectionAttemptTimeout", { ip, port, family }));
  socket.on("connect", () =>
    log(side, "connect", {
      localAddress: socket.localAddress,
      localPort: socket.localPort,
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
      remoteFamily: socket.remoteFamily,
    }));
  socket.on("ready", () => log(side, "ready"));
  if (data)
    socket.on("data", (chunk) =>
      log(side, "data", { len: chunk.length, bytesRead: socket.bytesRead, bytesWritten: socket.bytesWritten }));
  socket.on("end", () => log(side, "end", state(socket)));
  socket.on("finish", () => log(side, "finish", state(socket)));
  socket.on("close", (hadError) => {
    sockets.delete(socket);
    log(side, "close", { hadError, ...state(socket) });
  });
  socket.on("error", (err) => {
    const args = describeError(err);
    log(side, "error", args);
    if (!errors.includes(args.code)) fail(`${side}: unexpected error ${args.code}: ${args.message}`);
  });
  socket.on("timeout", () => log(side, "timeout"));
  socket.on("drain", () => log(side, "drain", { bytesWritten: socket.bytesWritten }));
  return socket;
}

// new net.Socket(options), watched BEFORE connect() runs (a synchronous custom lookup emits
// connectionAttempt inside connect()), then socket.connect(options).
//   pause: true pauses the socket before connecting and attaches no 'data' listener (whose
//          resume() would schedule a read), so it never reads from its kernel receive queue
export function connect(side, options, { pause = false, ...watchOptions } = {}) {
  checkSide(side);
  const socket = new net.Socket(options);
  watch(socket, side, pause ? { ...watchOptions, data: false } : watchOptions);
  if (pause) socket.pause();
  socket.connect(options);
  return socket;
}

export function watchServer(server, side = "listener") {
  checkSide(side);
  servers.add(server);
  server.on("listening", () => {
    const a = server.address();
    log(side, "listening", { address: a?.address, port: a?.port, family: a?.family });
  });
  server.on("connection", (socket) =>
    log(side, "connection", {
      localAddress: socket.localAddress,
      localPort: socket.localPort,
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
      // the actor accept() watches this socket as (timelines draw the connection to its lane)
      ...(acceptedAs.has(server) ? { side: acceptedAs.get(server) } : {}),
    }));
  server.on("close", () => {
    servers.delete(server);
    log(side, "close");
  });
  server.on("error", (err) => {
    log(side, "error", describeError(err));
    fail(`${side}: ${err.code}: ${err.message}`);
  });
  return server;
}

const acceptedAs = new Map(); // server -> the actor its accepted sockets are watched as

// The first socket `server` accepts (a Promise). Every accepted socket is watched as `side`
// (default "server"; with the other `watchOptions`) and handed to `setup` before anything can
// emit on it.
export function accept(server, setup = () => {}, { side = "server", ...watchOptions } = {}) {
  checkSide(side);
  acceptedAs.set(server, side);
  return new Promise((resolve) =>
    server.on("connection", (socket) => {
      watch(socket, side, watchOptions);
      setup(socket);
      resolve(socket);
    }));
}

// A `setup` for accept(): the socket end()s as soon as its peer's FIN arrives ('end').
export function endOnEnd(side) {
  return (socket) => socket.on("end", () => invoke(socket, side, "end"));
}

export function listen(server, port, host) {
  return new Promise((resolve) => server.listen({ port, host }, () => resolve(server)));
}

export function once(emitter, name) {
  return new Promise((resolve) => emitter.once(name, resolve));
}

// Log `name` (before the call, so its time precedes the packets the call causes), then run fn.
export function call(side, name, fn, args = {}) {
  log(side, name, args);
  return fn();
}

// socket[method](...margs), logged as `method()`; `unsupported` when the runtime lacks it.
export function invoke(socket, side, method, ...margs) {
  if (typeof socket[method] !== "function") {
    log(side, "unsupported", { what: method });
    return undefined;
  }
  const args = {};
  const payload = margs[0];
  if ((method === "write" || method === "end") && payload != null && typeof payload !== "function")
    args.len = typeof payload === "string" ? new TextEncoder().encode(payload).length : payload.length;
  log(side, `${method}()`, args);
  return socket[method](...margs);
}

export const env = {
  probe: process.env.VERIFIER_PROBE, // this module's path, for `await import(...)` from anywhere
  port: Number(process.env.VERIFIER_PORT || 5000),
  host: process.env.VERIFIER_HOST || "localhost",
  portClosed: Number(process.env.VERIFIER_PORT_CLOSED || 5001),
};

// Close the listeners; the process then exits once its sockets have closed. A last-resort,
// unref'd timer (it never keeps the process alive) reports and ends a program that still hangs.
export function done({ grace = 2000 } = {}) {
  for (const server of servers) server.close();
  const timer = setTimeout(() => {
    fail(`still running ${grace} ms after done(): ${sockets.size} socket(s) open`);
    for (const s of sockets) s.destroy();
    process.exit();
  }, grace);
  if (typeof timer?.unref === "function") timer.unref();
  else if (typeof globalThis.Deno?.unrefTimer === "function") globalThis.Deno.unrefTimer(timer);
}

// ---- HTTP ----------------------------------------------------------------------------------

function header(headers, name) {
  const v = headers?.[name];
  return v === undefined ? null : v;
}

// Observe `names` of an emitter without becoming a listener: emit() still returns what it would
// (false with no listener), so Node's defaults that depend on it are kept.
function observeEmit(emitter, names, onEvent) {
  const emit = emitter.emit;
  emitter.emit = function (name, ...args) {
    if (names.includes(name)) onEvent(name, ...args);
    return emit.call(this, name, ...args);
  };
}

export function watchHttpServer(server, side = "listener", { socketSide = null, errors = [] } = {}) {
  watchServer(server, side);
  if (socketSide !== null) {
    checkSide(socketSide);
    acceptedAs.set(server, socketSide);
    server.on("connection", (socket) => watch(socket, socketSide, { data: false, errors }));
  }
  server.on("request", (req) =>
    log(side, "request", {
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      connection: header(req.headers, "connection"),
      keepAlive: header(req.headers, "keep-alive"),
      remotePort: req.socket?.remotePort,
    }));
  observeEmit(server, ["timeout", "clientError"], (name, a, b) => {
    if (name === "timeout") log(side, "timeout", { remotePort: a?.remotePort });
    else log(side, "clientError", { code: a?.code ?? null, remotePort: b?.remotePort });
  });
  return server;
}

const watchedSockets = new WeakSet();

export function watchRequest(req, side = "client", { socketSide = null, errors = [] } = {}) {
  checkSide(side);
  if (socketSide !== null) checkSide(socketSide);
  req.on("socket", (socket) => {
    log(side, "socket", { reused: req.reusedSocket ?? null });
    if (socketSide !== null && !watchedSockets.has(socket)) {
      watchedSockets.add(socket);
      watch(socket, socketSide, { data: false, errors });
    }
  });
  req.on("response", (res) => {
    log(side, "response", {
      statusCode: res.statusCode,
      connection: header(res.headers, "connection"),
      keepAlive: header(res.headers, "keep-alive"),
    });
    res.on("end", () => log(side, "responseEnd"));
  });
  req.on("close", () => log(side, "close"));
  req.on("error", (err) => {
    const args = describeError(err);
    log(side, "error", args);
    if (!errors.includes(args.code)) fail(`${side}: unexpected error ${args.code}: ${args.message}`);
  });
  return req;
}

export function watchAgent(agent, side = "agent") {
  checkSide(side);
  agent.on("free", (socket) => log(side, "free", { localPort: socket?.localPort }));
  return agent;
}

export function blockLoop(ms) {
  const until = perf.now() + ms;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (perf.now() < until) {
    try {
      Atomics.wait(cell, 0, 0, Math.max(1, until - perf.now()));
    } catch {
      // no Atomics.wait on this thread: spin
    }
  }
}

// Faults at a point the program chooses (the lab's, docs/faults.md): `await fault("blackhole", ...)`.
export { fault } from "./fault.mjs";
