// fault: asks the verifier's lab for a network fault at the point the program chooses
//
// Runs unchanged under node, bun and deno (node:net, node:process and the probe beside it). The harness copies
// it beside the program as ./fault.mjs (and beside probe.mjs) and names its end of the channel,
// a unix socket, in VERIFIER_FAULT. One request a connection: a JSON line, answered with a JSON
// line once the fault is in place ({"ok": true}) or refused ({"error": "..."}).
//
//   await fault("blackhole", { port, address, direction })  drop every packet (default both ways)
//   await fault("reset", { port, address })                 packets to it answered with RST
//   await fault("drop", { port, address, direction, every }) drop every Nth packet (1: all)
//   await fault("delay", { port, address, direction, ms })   delay packets (default: from the port)
//   await fault("reorder", { port, address, direction, every, ms })
//                                                           hold every Nth packet back past the next
//   await fault("clear")                                    remove every fault
// `port` defaults to VERIFIER_PORT; `direction` is "to" (sent to port/address), "from" (sent
// from them) or "both". The request is logged as an event of side "lab" (name `fault`), so the
// expectation and the ladder show where it happened. docs/faults.md says what each does.
import * as net from "node:net";
import process from "node:process";
import { log } from "./probe.mjs";

const channel = process.env.VERIFIER_FAULT;

export async function fault(kind, options = {}) {
  const request = { kind, ...options };
  if (!channel) throw new Error("fault(): no VERIFIER_FAULT: faults need the verifier's lab (verifier run)");
  log("lab", "fault", request);
  const answer = await new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: channel });
    let data = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(JSON.stringify(request) + "\n"));
    socket.on("data", (chunk) => {
      data += chunk;
      if (data.includes("\n")) {
        socket.destroy();
        resolve(data.split("\n")[0]);
      }
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error("fault(): the lab closed the channel without an answer")));
  });
  const reply = JSON.parse(answer);
  if (reply.error) throw new Error(`fault(${JSON.stringify(kind)}): ${reply.error}`);
}
