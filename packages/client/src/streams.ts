import { errorBodyOf, PgchatdError } from "./errors.ts";
import type { paths } from "./schema.ts";
import { SseDecoder } from "./sse.ts";

type StreamItem<P extends keyof paths> = paths[P] extends {
  get: { responses: { 200: { content: { "text/event-stream": infer E } } } };
}
  ? E
  : never;

/** An event of GET /chats/watch: `event` its kind, `data` its JSON, `id` its cursor. */
export type WatchEvent = StreamItem<"/api/experimental/chats/watch">;
/** An event of GET /chats/{chat}/stream (snapshot, then live; docs/api.md "Streams"). */
export type ChatStreamEvent = StreamItem<"/api/experimental/chats/{chat}/stream">;

export interface StreamOptions {
  /** Resume after this cursor: the `lastEventId` of an earlier stream. */
  lastEventId?: string;
  /** Aborting it ends the stream (the iteration returns). */
  signal?: AbortSignal;
  /** Reconnect, with Last-Event-ID, when the connection drops or the server restarts (default true). */
  reconnect?: boolean;
  /** The first wait before a reconnect, in ms (default 500); it doubles up to 30 s while they fail. */
  retryMs?: number;
}

/**
 * A stream of typed events that resumes where it left off. It connects when created (as an
 * EventSource does); iterate it with `for await`. A `resync` event means the cursor could not be
 * honoured: refetch what you show (a chat stream sends a fresh snapshot right after it).
 */
export interface EventStream<E> extends AsyncIterable<E> {
  /** The cursor of the last event or keep-alive received: pass it to resume later. */
  readonly lastEventId: string | undefined;
  /**
   * Resolves once the server accepted the stream: whatever commits from then on reaches it.
   * Rejects with the PgchatdError of a refusal (the iteration throws it too).
   */
  readonly opened: Promise<void>;
  /** Ends the stream; a pending iteration returns. */
  close(): void;
}

/** A 30 s cap keeps a client of a long outage from waiting minutes after the server is back. */
const maxRetryMs = 30_000;
/** Events read ahead of the consumer; past this the socket is not read until it catches up. */
const readAhead = 1_000;

export interface StreamTarget {
  url: string;
  headers: Record<string, string>;
  fetch: typeof fetch;
}

/** Opens a pgchatd SSE route as an EventStream of `{event, data, id}` items. */
export function openStream<E>(target: StreamTarget, options: StreamOptions = {}): EventStream<E> {
  const controller = new AbortController();
  const { signal } = options;
  if (signal?.aborted) controller.abort();
  else signal?.addEventListener("abort", () => controller.abort(), { once: true });
  let lastEventId = options.lastEventId;
  const queue: E[] = [];
  let failure: unknown;
  let ended = false;
  let wakeConsumer: (() => void) | undefined;
  let wakeReader: (() => void) | undefined;
  let markOpened!: () => void;
  let refuse!: (err: unknown) => void;
  const opened = new Promise<void>((resolve, reject) => {
    markOpened = resolve;
    refuse = reject;
  });
  // Awaiting `opened` is optional: a refusal it carries is also thrown by the iteration.
  opened.catch(() => {});

  const wake = () => {
    const w = wakeConsumer;
    wakeConsumer = undefined;
    w?.();
  };

  async function read(): Promise<void> {
    let wait = options.retryMs ?? 500;
    const pause = async () => {
      await sleep(wait, controller.signal);
      wait = Math.min(wait * 2, maxRetryMs);
    };
    while (!controller.signal.aborted) {
      let res: Response;
      try {
        const headers: Record<string, string> = { ...target.headers, accept: "text/event-stream" };
        if (lastEventId !== undefined) headers["last-event-id"] = lastEventId;
        res = await target.fetch(target.url, { headers, signal: controller.signal });
      } catch (err) {
        if (controller.signal.aborted) return;
        if (options.reconnect === false) throw err;
        await pause();
        continue;
      }
      if (!res.ok || !res.body) {
        const body = await errorBodyOf(res);
        // A refusal (bad cursor, unknown chat, token) does not change by asking again; an
        // unavailable server or proxy may.
        if (res.status < 500 || options.reconnect === false) {
          throw new PgchatdError(res.status, body, "GET", new URL(target.url).pathname);
        }
        await pause();
        continue;
      }
      markOpened();
      const decoder = new SseDecoder();
      const text = new TextDecoder();
      const reader = res.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          for (const block of decoder.feed(text.decode(value, { stream: true }))) {
            if (block.id !== undefined) lastEventId = block.id;
            if (block.data === undefined) continue;
            wait = options.retryMs ?? 500;
            queue.push({ event: block.event, data: JSON.parse(block.data), id: block.id } as E);
            wake();
          }
          while (queue.length >= readAhead && !controller.signal.aborted) {
            await new Promise<void>((resolve) => {
              wakeReader = resolve;
            });
          }
        }
      } catch (err) {
        if (controller.signal.aborted) return;
        if (options.reconnect === false) throw err;
      } finally {
        reader.cancel().catch(() => {});
      }
      if (options.reconnect === false) return;
      await pause();
    }
  }

  read().then(
    () => {
      ended = true;
      markOpened();
      wake();
    },
    (err: unknown) => {
      failure = err;
      ended = true;
      refuse(err);
      wake();
    },
  );

  const iterator: AsyncIterator<E> = {
    async next(): Promise<IteratorResult<E>> {
      for (;;) {
        if (queue.length > 0) {
          const value = queue.shift()!;
          const w = wakeReader;
          wakeReader = undefined;
          w?.();
          return { value, done: false };
        }
        if (failure !== undefined) {
          const err = failure;
          failure = undefined;
          throw err;
        }
        if (ended || controller.signal.aborted) return { value: undefined, done: true };
        await new Promise<void>((resolve) => {
          wakeConsumer = resolve;
        });
      }
    },
    async return(): Promise<IteratorResult<E>> {
      close();
      return { value: undefined, done: true };
    },
  };

  function close() {
    controller.abort();
    const w = wakeReader;
    wakeReader = undefined;
    w?.();
    wake();
  }

  return {
    get lastEventId() {
      return lastEventId;
    },
    opened,
    close,
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
