import type { AppEnv } from "./deps.ts";
import { unavailable } from "./errors.ts";

/* What the SSE routes share (chat_events.ts, chat_tool_calls.ts); the streams are in src/watch. */

/** Last-Event-ID (set by a reconnecting EventSource) wins over ?after= from the original URL. */
export function lastEventId(header: string | undefined, after: string | undefined) {
  return header?.slice(0, 64) ?? after;
}

/**
 * Closes the client's socket at once: a stream whose client stopped reading is blocked in a write
 * that only the socket's end can release. Under @hono/node-server the response is `env.outgoing`;
 * elsewhere (app.request in tests) there is no socket to close.
 */
export function disconnectOf(c: { env: unknown }) {
  return () => (c.env as { outgoing?: { destroy(): void } } | undefined)?.outgoing?.destroy();
}

export function watchOf(c: { get(key: "deps"): AppEnv["Variables"]["deps"] }) {
  const watch = c.get("deps").watch;
  if (!watch) throw unavailable("Change streams are not running on this server.");
  return watch;
}
