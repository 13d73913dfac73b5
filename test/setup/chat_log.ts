import { expect } from "vitest";
import type { Pool } from "../../src/db/pool.ts";
import { streamKinds } from "../../src/watch/index.ts";
import { eventually } from "./runner.ts";
import type { SseClient, SseEvent } from "./sse.ts";

/*
 * "Nothing lost, nothing twice" between a chat's change-event log (chat_events) and what its chat
 * stream delivered (docs/api.md "Streams"), for tests that break something mid-turn.
 */

/** Events that are not in the log: streamed parts and retry announcements. */
const ephemeral = new Set(["message_part", "retry"]);

/**
 * The chat's log after the stream's snapshot (`snapshotEnd`, the snapshot's last event: it carries
 * the cursor), as the chat stream renders it ([cursor, event]; a status_change of `error` is a
 * `status` and an `error` block under one cursor), against the durable events the stream
 * delivered after its snapshot: waits until the stream has as many, then they must be equal.
 */
export async function expectStreamMatchesLog(
  pool: Pool,
  chatId: string,
  stream: SseClient,
  snapshotEnd: SseEvent,
): Promise<void> {
  const [xid, id] = snapshotEnd.id.split(".");
  const { rows } = await pool.query<{
    cursor: string;
    kind: string;
    payload: { status?: string; error?: unknown } | null;
  }>(
    `SELECT xid::text || '.' || id AS cursor, kind, payload FROM chat_events
     WHERE chat_id = $1 AND kind = ANY($2) AND (xid, id) > ($3::text::xid8, $4::bigint)
     ORDER BY xid, id`,
    [chatId, [...streamKinds], xid, id],
  );
  const fromLog = rows.flatMap((r) => {
    if (r.kind !== "status_change") return [[r.cursor, r.kind]];
    const status = [r.cursor, "status"];
    return r.payload?.status === "error" && r.payload.error
      ? [status, [r.cursor, "error"]]
      : [status];
  });
  const durable = () =>
    stream.events
      .slice(stream.events.indexOf(snapshotEnd) + 1)
      .filter((e) => !ephemeral.has(e.event))
      .map((e) => [e.id, e.event]);
  await eventually(
    () => (durable().length >= fromLog.length ? true : undefined),
    `the stream to deliver the log's ${fromLog.length} events`,
  );
  expect(durable()).toEqual(fromLog);
}

/** The chat's stored messages (deleted ones too) against the `message` events the stream sent. */
export async function expectMessagesOnceEach(
  pool: Pool,
  chatId: string,
  stream: SseClient,
): Promise<void> {
  const { rows } = await pool.query<{ id: string }>(
    "SELECT id FROM chat_messages WHERE chat_id = $1 ORDER BY id",
    [chatId],
  );
  const streamed = stream.events
    .filter((e) => e.event === "message")
    .map((e) => (JSON.parse(e.data) as { id: number }).id);
  expect(streamed).toEqual(rows.map((r) => Number(r.id)));
}
