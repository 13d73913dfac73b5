/**
 * A position in the change-event log: the (xid, id) of an event, written "<xid>.<id>" as the SSE
 * `id:`. Events are read in this order (see ListChatEventsAfterCursor).
 */
export interface Cursor {
  xid: bigint;
  id: number;
}

const cursorPattern = /^(\d{1,20})\.(\d{1,15})$/;

export function formatCursor(c: Cursor): string {
  return `${c.xid}.${c.id}`;
}

/** Parses a client's Last-Event-ID; anything malformed is `null` (the stream answers resync). */
export function parseCursor(text: string): Cursor | null {
  const m = cursorPattern.exec(text.trim());
  if (!m) return null;
  const xid = BigInt(m[1]!);
  const id = Number(m[2]);
  if (xid >= 2n ** 64n || !Number.isSafeInteger(id)) return null;
  return { xid, id };
}

export function compareCursors(a: Cursor, b: Cursor): number {
  if (a.xid !== b.xid) return a.xid < b.xid ? -1 : 1;
  return a.id - b.id;
}

/** The cursor of an event row as the generated queries return it (xid as text). */
export function rowCursor(row: { xid: string; id: number }): Cursor {
  return { xid: BigInt(row.xid), id: row.id };
}

/** Arguments for the generated range queries. */
export function cursorArgs(c: Cursor): { xid: string; id: number } {
  return { xid: c.xid.toString(), id: c.id };
}
