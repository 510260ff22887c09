// refused: my guess: connecting to a port nobody listens on times out
import { connect, done, env, once } from "./probe.mjs";

const client = connect("client", { host: "127.0.0.1", port: env.portClosed }, { errors: ["ECONNREFUSED", "ETIMEDOUT"] });
await once(client, "close");
done();
