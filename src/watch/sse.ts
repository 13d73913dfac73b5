import { type Cursor, formatCursor } from "./cursor.ts";

/*
 * The SSE wire format, written here and nowhere else. Frames are built as whole strings rather
 * than with hono's writeSSE because one frame goes to every subscriber of a chat or an owner: it
 * is rendered and serialised once per process, not once per subscriber.
 */

/**
 * Where a stream's bytes go: the client's socket (src/server/streaming.ts). Chunks are written in
 * order; a write resolves once the socket can take more, so a slow client holds its own handler,
 * never the others (their frames wait in their Subscriber's bounded queue).
 */
export interface SseSink {
  write(chunk: string | readonly Uint8Array[]): Promise<void>;
  /** The client went away (or the response ended). */
  readonly aborted: boolean;
  onAbort(listener: () => void): void;
  /** Closes the client's connection now, even while a write to it is blocked. */
  close(): void;
}

/** An `id:` line, which moves the client's Last-Event-ID; nothing without a cursor. */
function idLine(cursor: Cursor | undefined): string {
  return cursor ? `id: ${formatCursor(cursor)}\n` : "";
}

/** One event. `data` is JSON text (JSON.stringify never writes a newline). */
export function sseEvent(event: string, data: string, cursor?: Cursor): string {
  return `${idLine(cursor)}event: ${event}\ndata: ${data}\n\n`;
}

/** A comment (ignored by clients), with an id line when it should move their Last-Event-ID. */
export function sseComment(text: string, cursor?: Cursor): string {
  return `${idLine(cursor)}: ${text}\n\n`;
}

/** The last id line encoded: the subscribers of one chat mostly share their cursor. */
let lastIdLine: { cursor: Cursor; bytes: Buffer } | undefined;

/**
 * An `id:` line as UTF-8, to put in front of a block that is encoded once for every subscriber
 * (a stream event that is not in the log carries each subscriber's own cursor).
 */
export function idLineBytes(cursor: Cursor): Buffer {
  if (lastIdLine?.cursor.xid !== cursor.xid || lastIdLine.cursor.id !== cursor.id) {
    lastIdLine = { cursor: { ...cursor }, bytes: Buffer.from(idLine(cursor)) };
  }
  return lastIdLine.bytes;
}
