import pgListen from "pg-listen";
import { clientConfig } from "./pool.ts";

/** A reconnect attempt every 100 ms, doubling up to 5 s, forever: the database will come back. */
function retryDelayMs(attempt: number): number {
  return Math.min(100 * 2 ** attempt, 5_000);
}

/**
 * A LISTEN connection (pg-listen) that reconnects with backoff for as long as the process lives;
 * its `connected` event fires after every (re)connect, when notifications may have been missed.
 * Payloads are passed on as the strings they are.
 */
export function createListener(url: string, applicationName: string) {
  // pg-listen is CommonJS with `exports.default`; `.default` is the function under every loader.
  return pgListen.default(clientConfig(url, applicationName), {
    retryInterval: retryDelayMs,
    retryLimit: Number.POSITIVE_INFINITY,
    // pg-listen gives up after 3 s by default; a database restart takes longer than that.
    retryTimeout: Number.POSITIVE_INFINITY,
    paranoidChecking: 10_000,
    parse: (s) => s,
    serialize: (s) => String(s),
  });
}

export type Listener = ReturnType<typeof createListener>;
