import http from "node:http";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { streamEventChecker } from "./openapi.ts";

export interface SseEvent {
  /** The SSE `id:` of this event ("" when it carried none). */
  id: string;
  event: string;
  data: string;
}

export interface SseClient {
  /** Every event received so far (comments excluded), in arrival order. */
  events: SseEvent[];
  /** The last `id:` seen, on events or on id-only blocks (what an EventSource would resend). */
  lastEventId(): string;
  /** The id of every complete block received, in order, id-only blocks (keep-alives) included. */
  ids: string[];
  status: number;
  /** Resolves with the first event (received or future) matching `match`, not yet consumed. */
  next(match?: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  /** Resolves once `count` events matching `match` have arrived (all of them, in order). */
  waitFor(count: number, match?: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent[]>;
  /** Resolves when the server ends the response (or the socket closes). */
  ended: Promise<void>;
  /** Stops reading the socket: the server's writes back up (a slow subscriber). */
  pause(): void;
  /**
   * Reads the socket again. A paused socket does not notice that the server closed it (nothing
   * reads the EOF), so `ended` of a paused client can only resolve after this.
   */
  resume(): void;
  close(): void;
}

/**
 * A real SSE client over a real socket (node:http), parsed with eventsource-parser. `headers` may
 * carry Authorization and Last-Event-ID. Resolves once the response headers arrived. Every event
 * is checked against the stream's OpenAPI event schema: one that does not match fails the next
 * `next` or `waitFor`.
 */
export async function openSse(
  url: string,
  headers: Record<string, string> = {},
): Promise<SseClient> {
  const checkEvent = await streamEventChecker(url);
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { accept: "text/event-stream", ...headers } }, (res) => {
      const events: SseEvent[] = [];
      const ids: string[] = [];
      const consumed = new Set<SseEvent>();
      const waiters: (() => void)[] = [];
      let mismatch: string | undefined;
      let lastId = headers["last-event-id"] ?? "";
      const parser = createParser({
        onEvent(msg: EventSourceMessage) {
          const ev = { id: msg.id ?? "", event: msg.event ?? "message", data: msg.data };
          mismatch ??= checkEvent?.(ev);
          events.push(ev);
          for (const w of waiters.splice(0)) w();
        },
        onComment() {},
      });
      // eventsource-parser reports ids only with events; an id-only block (a heartbeat) still
      // sets an EventSource's Last-Event-ID, so the id is tracked from the raw text.
      res.setEncoding("utf8");
      // Line by line (a chunk may end in the middle of a line), and an id counts only once its
      // block is complete, as in an EventSource: a connection cut in the middle of an event
      // must not move Last-Event-ID past it.
      let partialLine = "";
      let blockId: string | undefined;
      res.on("data", (chunk: string) => {
        const lines = (partialLine + chunk).split("\n");
        partialLine = lines.pop()!;
        for (const line of lines) {
          const m = /^id: ?(.*)$/.exec(line);
          if (m) blockId = m[1]!;
          if (line === "" && blockId !== undefined) {
            lastId = blockId;
            ids.push(blockId);
            blockId = undefined;
          }
        }
        parser.feed(chunk);
      });
      const ended = new Promise<void>((done) => {
        res.on("end", done);
        res.on("close", done);
        res.on("error", () => done());
      });
      ended.then(() => {
        for (const w of waiters.splice(0)) w();
      });
      let isEnded = false;
      ended.then(() => {
        isEnded = true;
      });
      function waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: string) {
        return new Promise<T>((ok, fail) => {
          const timer = setTimeout(
            () => fail(new Error(`timed out waiting for ${what}`)),
            timeoutMs,
          );
          const poll = () => {
            if (mismatch) {
              clearTimeout(timer);
              fail(new Error(mismatch));
              return;
            }
            const v = check();
            if (v !== undefined) {
              clearTimeout(timer);
              ok(v);
            } else if (isEnded) {
              clearTimeout(timer);
              fail(new Error(`stream ended while waiting for ${what}`));
            } else {
              waiters.push(poll);
            }
          };
          poll();
        });
      }
      resolve({
        events,
        ids,
        status: res.statusCode ?? 0,
        lastEventId: () => lastId,
        next(match = () => true, timeoutMs = 10_000) {
          return waitUntil(
            () => {
              const e = events.find((x) => !consumed.has(x) && match(x));
              if (e) consumed.add(e);
              return e;
            },
            timeoutMs,
            "an event",
          );
        },
        waitFor(count, match = () => true, timeoutMs = 10_000) {
          return waitUntil(
            () => {
              const hits = events.filter(match);
              return hits.length >= count ? hits : undefined;
            },
            timeoutMs,
            `${count} events`,
          );
        },
        ended,
        pause() {
          res.pause();
        },
        resume() {
          res.resume();
        },
        close() {
          req.destroy();
        },
      });
    });
    req.on("error", reject);
  });
}

/**
 * Reads a stream's body (app.request, no socket) until `pattern` matches the text so far;
 * returns the match.
 */
export async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, pattern: RegExp) {
  const decoder = new TextDecoder();
  let got = "";
  for (;;) {
    const match = pattern.exec(got);
    if (match) return match[0];
    const { value, done } = await reader.read();
    if (done) throw new Error(`the stream ended before ${pattern}:\n${got}`);
    got += decoder.decode(value, { stream: true });
  }
}
