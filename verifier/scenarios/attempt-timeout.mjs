// attempt-timeout: a blackholed first address is abandoned after 10 ms; the last one is not
// seed: DESIGN "The seed's observations to reproduce", row "attempt timeout"
// floor: 300ms
// nft: table inet verifier { chain input { type filter hook input priority 0; policy accept; tcp dport $VERIFIER_PORT drop; }; }
// sysctl: net.ipv4.tcp_syn_retries=1
// syn-rto: 100ms
// SYNs to VERIFIER_PORT are dropped on input (so the capture still sees them), on ::1 and
// 127.0.0.1. The client connects to localhost with autoSelectFamilyAttemptTimeout: 10: the ::1
// attempt times out after ~10 ms (connectionAttemptTimeout), 127.0.0.1 is tried next and, as the
// last address, gets no timer: its SYN is retransmitted until the kernel gives up with ETIMEDOUT.
// With a 100 ms initial SYN RTO (instead of 1 s; a cgroup sock_ops program, Linux only) the
// kernel's give-up time, modelled from it for tcp_syn_retries=1, is 3 RTOs. Measured: the SYN is
// retransmitted at +0.100-0.108 s and +0.204-0.215 s (linear: Linux 6.17+ tcp_syn_linear_timeouts)
// and ETIMEDOUT comes at +0.309-0.324 s; the program runs 0.40-0.65 s (3.17-3.20 s with 1 s).
// The ::1 SYN is not retransmitted: node closes that attempt at 10 ms, long before 100 ms.
import { connect, done, env, familyOptions } from "./probe.mjs";

const client = connect(
  "client",
  { host: env.host, port: env.port, ...familyOptions("client", { autoSelectFamilyAttemptTimeout: 10 }) },
  { errors: ["ETIMEDOUT"] },
);
client.on("close", () => done());
