import type { ServerResponse } from "node:http";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import type { Context } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import type { SseSink } from "../watch/sse.ts";
import type { AppEnv } from "./deps.ts";
import { unavailable } from "./errors.ts";

/* What the SSE routes share (chat_events.ts, chat_tool_calls.ts); the streams are in src/watch. */

/** Last-Event-ID (set by a reconnecting EventSource) wins over ?after= from the original URL. */
export function lastEventId(header: string | undefined, after: string | undefined) {
  return header?.slice(0, 64) ?? after;
}

export function watchOf(c: { get(key: "deps"): AppEnv["Variables"]["deps"] }) {
  const watch = c.get("deps").watch;
  if (!watch) throw unavailable("Change streams are not running on this server.");
  return watch;
}

const written = Promise.resolve();

/**
 * An SSE response written straight to the Node socket: each frame's bytes, encoded once for all
 * its subscribers (src/watch/subscriber.ts), go to `res.write` as they are. A web stream per
 * response (hono's streamSSE) would encode every chunk again and pass it through a
 * TransformStream and a reader per subscriber: measured by `npm run bench -- watch`, that was
 * most of the server's CPU per delivery and memory per open stream.
 */
class SocketSink implements SseSink {
  aborted = false;
  private readonly listeners: (() => void)[] = [];
  private drained: (() => void) | undefined;

  constructor(private readonly res: ServerResponse) {
    res.on("close", () => {
      this.aborted = true;
      this.resumeWriter();
      for (const fn of this.listeners.splice(0)) fn();
    });
    res.on("drain", () => this.resumeWriter());
  }

  write(chunk: string | readonly Uint8Array[]): Promise<void> {
    if (this.aborted) return written;
    let ok: boolean;
    if (typeof chunk === "string") ok = this.res.write(chunk);
    else if (chunk.length === 1) ok = this.res.write(chunk[0]!);
    else {
      // One writev for the whole batch.
      this.res.cork();
      ok = true;
      for (const c of chunk) ok = this.res.write(c);
      this.res.uncork();
    }
    if (ok) return written;
    return new Promise((resolve) => {
      this.drained = resolve;
    });
  }

  onAbort(listener: () => void): void {
    if (this.aborted) listener();
    else this.listeners.push(listener);
  }

  /** A client that stopped reading holds a write that only the socket's end releases. */
  close(): void {
    this.res.destroy();
  }

  private resumeWriter(): void {
    const resume = this.drained;
    this.drained = undefined;
    resume?.();
  }
}

/** hono's streaming API as a sink (app.request in tests, runtimes other than Node). */
function webSink(api: SSEStreamingApi): SseSink {
  return {
    get aborted() {
      return api.aborted;
    },
    onAbort: (listener) => api.onAbort(listener),
    close: () => api.abort(),
    async write(chunk) {
      if (typeof chunk === "string") await api.write(chunk);
      else for (const c of chunk) await api.write(c);
    },
  };
}

/**
 * Serves a text/event-stream response that `run` writes. Under @hono/node-server the bytes go
 * straight to the socket (SocketSink) and the adapter is told the response is already sent;
 * elsewhere through hono's streamSSE. `onError` gets what `run` throws; the response then ends.
 * Neither closure may capture `c`: a stream lives for hours, and the request's context (hono's
 * Context with its closures, the request, the actor) would stay in memory with it. With the body
 * limit's fetch Request (src/server/app.ts), that was ~9 KiB of heap per open stream (`npm run
 * bench -- watch` with BENCH_SERVER_HEAPSNAPSHOT).
 */
export function sseResponse(
  c: Context<AppEnv>,
  run: (sink: SseSink) => Promise<void>,
  onError: (err: unknown) => void,
): Response {
  const res = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
  if (!res) {
    // Caught here: hono's own error path would write an `error` event with the exception's
    // message, which clients would take for a chat's ChatError (docs/api.md "Chat stream events").
    return streamSSE(c, (api) => run(webSink(api)).catch(onError));
  }
  // Only these headers: c.res must stay untouched until the handler returns, or hono copies
  // RESPONSE_ALREADY_SENT into a response the adapter writes again (ERR_HTTP_HEADERS_SENT).
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
  });
  // The client learns the stream is open now, not with its first event.
  res.flushHeaders();
  const sink = new SocketSink(res);
  run(sink)
    .catch(onError)
    .finally(() => {
      if (!res.writableEnded) res.end();
    });
  return RESPONSE_ALREADY_SENT;
}
