// port-not-open: connecting to a closed port is refused on ::1, then on 127.0.0.1
// seed: DESIGN "The seed's observations to reproduce", row "port not open"
// Nothing listens on VERIFIER_PORT_CLOSED. The client connects to localhost (autoSelectFamily)
// -> SYN, RST,ACK on ::1, then on 127.0.0.1; connectionAttempt and connectionAttemptFailed
// twice, then 'error' = AggregateError ECONNREFUSED holding both errors.
import { connect, done, env, familyOptions } from "./probe.mjs";

const client = connect(
  "client",
  { host: env.host, port: env.portClosed, ...familyOptions("client") },
  { errors: ["ECONNREFUSED"] },
);
client.on("close", () => done());
