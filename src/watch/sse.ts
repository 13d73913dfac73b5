import { type Cursor, formatCursor } from "./cursor.ts";

/*
 * The SSE wire format, written here and nowhere else. Frames are built as whole strings rather
 * than with hono's writeSSE because one frame goes to every subscriber of a chat or an owner: it
 * is rendered and serialised once per process, not once per subscriber.
 */

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

/** `block` (an event or comment) with an id line in front. */
export function withSseId(cursor: Cursor, block: string): string {
  return `${idLine(cursor)}${block}`;
}
