// attempt-timeout: a blackholed first address is abandoned after 10 ms; the last one is not
// seed: DESIGN "The seed's observations to reproduce", row "attempt timeout"
// nft: table inet verifier { chain input { type filter hook input priority 0; policy accept; tcp dport $VERIFIER_PORT drop; }; }
// sysctl: net.ipv4.tcp_syn_retries=1
// SYNs to VERIFIER_PORT are dropped on input (so the capture still sees them), on ::1 and
// 127.0.0.1. The client connects to localhost with autoSelectFamilyAttemptTimeout: 10: the ::1
// attempt times out after ~10 ms (connectionAttemptTimeout), 127.0.0.1 is tried next and, as the
// last address, gets no timer: its SYN is retransmitted (tcp_syn_retries=1) until the kernel
// gives up with ETIMEDOUT (~3 s).
import { connect, done, env, familyOptions } from "./probe.mjs";

const client = connect(
  "client",
  { host: env.host, port: env.port, ...familyOptions("client", { autoSelectFamilyAttemptTimeout: 10 }) },
  { errors: ["ETIMEDOUT"] },
);
client.on("close", () => done());
