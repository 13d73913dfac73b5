/*
 * Whether a failed statement failed because the database could not be reached (down, restarting,
 * the connection cut), rather than because of what it asked: the HTTP layer answers such a
 * request 503 (src/server/errors.ts), and the runner gives back the leases of turns it lost so.
 */

/** An error the server sent (it has a severity), as opposed to one of the client library. */
function isServerError(err: object): boolean {
  return "severity" in err;
}

/**
 * SQLSTATEs of a database that is going away, coming up or full (class 08, connection
 * exceptions, is matched as a class): admin_shutdown (a fast shutdown, pg_terminate_backend),
 * crash_shutdown, cannot_connect_now (starting up or shutting down), too_many_connections.
 */
const unavailableStates = new Set(["57P01", "57P02", "57P03", "53300"]);

/** Socket errors of a connection to the database that failed or was cut. */
const socketErrors = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * node-postgres reports a connection it lost, or could not make in time, with these errors of its
 * own, which carry no code: the only failures matched by text here, and it is the library's fixed
 * text (pg/lib/client.js, pg-pool/index.js), never the server's.
 */
const lostConnectionMessages = new Set([
  "Connection terminated unexpectedly",
  "Connection terminated",
  "Client has encountered a connection error and is not queryable",
  "timeout exceeded when trying to connect",
  "Connection terminated due to connection timeout",
]);

/**
 * Whether `err` means the database could not be reached. Only the error itself is looked at, not
 * its cause: a failed call elsewhere (the forge's fetch) wraps socket errors too.
 */
export function isDatabaseUnreachable(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (isServerError(err)) {
    return typeof code === "string" && (code.startsWith("08") || unavailableStates.has(code));
  }
  if (typeof code === "string" && socketErrors.has(code)) return true;
  return typeof message === "string" && lostConnectionMessages.has(message);
}
