import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { connectClient, withTx } from "../../src/db/pool.ts";
import {
  announceChatListener,
  getChatEventBounds,
  type ListChatEventsByOwnerInRangeArgs,
  listChatEventsAfterCursor,
  listChatEventsByChatInRange,
  listChatEventsByOwnerInRange,
  notifyChatEvents,
  pruneChatEvents,
  withdrawChatListener,
} from "../../src/generated/chat_events.ts";
import { editChatMessage, sendChatMessage } from "../../src/generated/chat_messages.ts";
import { deleteChatQueuedMessage } from "../../src/generated/chat_queue.ts";
import { markChatReadByID } from "../../src/generated/chats.ts";
import { patchChat } from "../../src/server/chat_patch.ts";
import { agentKinds, streamKinds, watchKinds } from "../../src/watch/kinds.ts";
import { gen } from "../fixtures/index.ts";
import { emptyDatabase, testDb } from "../setup/db.ts";
import { type Listener, listen } from "../setup/listen.ts";
import { session } from "../setup/sessions.ts";
import { sqlError } from "../setup/sql.ts";

/*
 * The change-event log where it lives: the *_900_events_* triggers (sql/triggers/*.sql), the
 * NOTIFY mode and pruning (sql/functions/chat_events.sql) and the cursor queries
 * (sql/queries/chat_events.sql), against real Postgres. NOTIFY is observed with a raw LISTEN
 * client; the (xid, id) read order with real concurrent transactions.
 */

let pool: Pool;
let url: string;
let orgId: string;

beforeAll(async () => {
  const db = await testDb();
  pool = db.pool;
  url = db.url;
  orgId = (await gen.organization(pool)).id;
});

type Kinds = ListChatEventsByOwnerInRangeArgs["kinds"];
const allKinds: Kinds = [
  "created",
  "deleted",
  "status_change",
  "title_change",
  "summary_change",
  "diff_status_change",
  "action_required",
  "context_dirty",
  "updated",
  "hard_deleted",
  "message",
  "queue_update",
  "history_reset",
];

interface Ev {
  id: number;
  xid: string;
  chat_id: string;
  owner_id: string;
  kind: string;
  chat_version: number;
  payload: Record<string, unknown> | null;
}

const text = (s: string) => ({ type: "text", text: s });
const call = (id: string, toolName: string, args: unknown) => ({
  type: "tool-call",
  tool_call_id: id,
  tool_name: toolName,
  args,
});

async function owner() {
  return (await gen.user(pool, { organizationIds: [orgId] })).id;
}

async function newChat(ownerId: string, opts: Partial<Parameters<typeof gen.chat>[1]> = {}) {
  return gen.chat(pool, { ownerId, organizationId: orgId, ...opts });
}

/**
 * The newest event id so far: events of a step are those after the mark taken before it. Sound
 * here only because this file's tests run one at a time and each step commits before it is read;
 * the stream queries themselves read in (xid, id) order below the xmin horizon.
 */
async function mark(): Promise<number> {
  const { rows } = await pool.query("SELECT COALESCE(max(id), 0) AS id FROM chat_events");
  return rows[0].id;
}

/** Events of these chats after `after`, in cursor order. */
async function eventsSince(after: number, ...chatIds: string[]): Promise<Ev[]> {
  const { rows } = await pool.query(
    `SELECT id, xid::text AS xid, chat_id, owner_id, kind::text AS kind, chat_version, payload
     FROM chat_events WHERE id > $1 AND chat_id = ANY($2::uuid[]) ORDER BY chat_events.xid, chat_events.id`,
    [after, chatIds],
  );
  return rows;
}

const kindsOf = (evs: Ev[]) => evs.map((e) => e.kind);

async function version(chatId: string): Promise<number> {
  const { rows } = await pool.query("SELECT version FROM chats WHERE id = $1", [chatId]);
  return Number(rows[0].version);
}

async function chatUpdate(
  chatId: string,
  ownerId: string,
  change: {
    title?: string;
    archived?: boolean;
    pin_order?: number;
    labels?: Record<string, string>;
  },
) {
  await patchChat(pool, ownerId, chatId, change, null);
}

/** Polls `fn` until `ok` holds, or fails after the deadline (no fixed sleeps). */
async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits until every transaction up to `xid` has ended (the xmin horizon is cluster-wide). */
async function belowHorizon(xid: string) {
  await until(
    () => getChatEventBounds(pool),
    (b) => BigInt(b!.start_xid!) > BigInt(xid),
  );
}

/**
 * Every notification received after this point up to a sentinel committed later: notifications
 * arrive in commit order, so once the sentinel is in, everything committed before it is too.
 */
async function notificationsUntilSentinel(l: Listener, from: number) {
  await withTx(pool, (c) => c.query("SELECT pg_notify('chat_events', 'sentinel')"));
  await l.next((n) => n.payload === "sentinel");
  const got = l.received.slice(from);
  expect(got.at(-1)).toEqual({ channel: "chat_events", payload: "sentinel" });
  return got.slice(0, -1);
}

/**
 * A LISTEN connection that does not announce itself (chat_listeners_exist): it shows what was
 * sent without changing whether it is. untilSentinel returns the payloads received since the
 * last call, up to a sentinel NOTIFY sent after them.
 */
async function listenUnannounced(channel: string) {
  const client = await connectClient(url, "pgchatd-test-bystander");
  const got: string[] = [];
  let sentinelSeen: (() => void) | undefined;
  client.on("notification", (m) => {
    if (m.payload === "bystander-sentinel") sentinelSeen?.();
    else got.push(m.payload ?? "");
  });
  await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
  return {
    async untilSentinel(): Promise<string[]> {
      const seen = new Promise<void>((resolve) => {
        sentinelSeen = resolve;
      });
      await pool.query("SELECT pg_notify($1, 'bystander-sentinel')", [channel]);
      await seen;
      return got.splice(0);
    },
    close: () => client.end(),
  };
}

async function txXid(c: pg.ClientBase): Promise<string> {
  const { rows } = await c.query("SELECT pg_current_xact_id()::text AS xid");
  return rows[0].xid;
}

async function cursorNow(): Promise<{ xid: string; id: number }> {
  const { rows } = await pool.query(
    "SELECT xid::text AS xid, id FROM chat_events ORDER BY chat_events.xid DESC, chat_events.id DESC LIMIT 1",
  );
  return rows[0] ?? { xid: "0", id: 0 };
}

describe("chats: one event per visible change, with owner and the version after the change", () => {
  it("emits created then message for a new chat, at version 1, and nothing for a model-only system prompt", async () => {
    const ownerId = await owner();
    const m = await mark();
    const chat = await newChat(ownerId, { system_prompt: "be brief" });
    const evs = await eventsSince(m, chat.id);
    const { rows } = await pool.query(
      "SELECT id FROM chat_messages WHERE chat_id = $1 AND role = 'user'",
      [chat.id],
    );
    expect(evs).toMatchObject([
      { kind: "created", chat_id: chat.id, owner_id: ownerId, chat_version: 1, payload: null },
      {
        kind: "message",
        chat_id: chat.id,
        owner_id: ownerId,
        chat_version: 1,
        payload: { message_id: rows[0].id },
      },
    ]);
    expect(evs).toHaveLength(2);
    expect(evs[0]!.xid).toBe(evs[1]!.xid);
  });

  it("emits title_change alone for a title change (no updated)", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    const m = await mark();
    await chatUpdate(chat.id, ownerId, { title: "renamed" });
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "title_change",
        owner_id: ownerId,
        chat_version: await version(chat.id),
        payload: null,
      }),
    ]);
    expect(await version(chat.id)).toBe(chat.version + 1);
  });

  it("emits status_change with {status, previous_status} for a status change, and no updated", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    const m = await mark();
    await pool.query("UPDATE chats SET status = 'running' WHERE id = $1", [chat.id]);
    const v1 = await version(chat.id);
    await pool.query("UPDATE chats SET status = 'completed' WHERE id = $1", [chat.id]);
    const v2 = await version(chat.id);
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "status_change",
        owner_id: ownerId,
        chat_version: v1,
        payload: { status: "running", previous_status: "pending" },
      }),
      expect.objectContaining({
        kind: "status_change",
        owner_id: ownerId,
        chat_version: v2,
        payload: { status: "completed", previous_status: "running" },
      }),
    ]);
  });

  it("carries last_error as payload.error when the status becomes error", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    const error = { message: "model unavailable", kind: "provider" };
    // last_error written first, on its own: the status change alone then carries it.
    await pool.query("UPDATE chats SET last_error = $2 WHERE id = $1", [chat.id, error]);
    const m = await mark();
    await pool.query("UPDATE chats SET status = 'error' WHERE id = $1", [chat.id]);
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "status_change",
        chat_version: await version(chat.id),
        payload: { status: "error", previous_status: "pending", error },
      }),
    ]);
  });

  // The usual way to fail a turn: the status_change carries the error, so no `updated` follows.
  it("emits only status_change when status and last_error are set in one statement", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    const error = { message: "boom" };
    const m = await mark();
    await pool.query("UPDATE chats SET status = 'error', last_error = $2 WHERE id = $1", [
      chat.id,
      error,
    ]);
    const evs = await eventsSince(m, chat.id);
    expect(kindsOf(evs)).toEqual(["status_change"]);
    expect(evs[0]!.payload).toEqual({ status: "error", previous_status: "pending", error });
  });

  it("emits status_change then action_required with the pending tool calls on entering requires_action", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    await pool.query("UPDATE chats SET status = 'running' WHERE id = $1", [chat.id]);
    const m = await mark();
    const msg = await gen.chatMessage(pool, chat.id, {
      role: "assistant",
      content: [
        text("let me look"),
        call("call_1", "read_file", { path: "a.txt" }),
        call("call_2", "list_dir", { dir: "/", depth: 2 }),
      ],
    });
    const afterMessage = await version(chat.id);
    await pool.query("UPDATE chats SET status = 'requires_action' WHERE id = $1", [chat.id]);
    const v = await version(chat.id);
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "message",
        chat_version: afterMessage,
        payload: { message_id: msg.id },
      }),
      expect.objectContaining({
        kind: "status_change",
        owner_id: ownerId,
        chat_version: v,
        payload: { status: "requires_action", previous_status: "running" },
      }),
      expect.objectContaining({
        kind: "action_required",
        owner_id: ownerId,
        chat_version: v,
        payload: {
          tool_calls: [
            { tool_call_id: "call_1", tool_name: "read_file", args: { path: "a.txt" } },
            { tool_call_id: "call_2", tool_name: "list_dir", args: { dir: "/", depth: 2 } },
          ],
        },
      }),
    ]);
  });

  it("emits summary_change for last_turn_summary and context_dirty when context becomes dirty", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    let m = await mark();
    await pool.query("UPDATE chats SET last_turn_summary = 'read two files' WHERE id = $1", [
      chat.id,
    ]);
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "summary_change",
        owner_id: ownerId,
        chat_version: await version(chat.id),
      }),
    ]);
    m = await mark();
    // Marking dirty records the changed sources too: still one context_dirty, no `updated`.
    await pool.query(
      `UPDATE chats SET context_dirty_since = now(), context_dirty_resources = '["AGENTS.md"]'
       WHERE id = $1`,
      [chat.id],
    );
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "context_dirty",
        owner_id: ownerId,
        chat_version: await version(chat.id),
      }),
    ]);
    // Already dirty: a later dirty time is not a new context_dirty.
    m = await mark();
    await pool.query(
      "UPDATE chats SET context_dirty_since = context_dirty_since + interval '1 second' WHERE id = $1",
      [chat.id],
    );
    expect(await eventsSince(m, chat.id)).toEqual([]);
  });

  it("emits updated for labels (SetChatLabelsByID), pins (chat_pin) and a moved read cursor (chat_mark_read)", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    let m = await mark();
    await chatUpdate(chat.id, ownerId, { labels: { team: "infra" } });
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "updated",
        owner_id: ownerId,
        chat_version: await version(chat.id),
      }),
    ]);

    m = await mark();
    await pool.query("SELECT chat_pin($1, 1)", [chat.id]);
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({ kind: "updated", chat_version: await version(chat.id) }),
    ]);

    await gen.chatMessage(pool, chat.id, { role: "assistant", text: "done" });
    m = await mark();
    await pool.query("SELECT chat_mark_read($1)", [chat.id]);
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({ kind: "updated", chat_version: await version(chat.id) }),
    ]);
    // Nothing newer to read: the cursor stays, so no event.
    m = await mark();
    expect((await markChatReadByID(pool, { id: chat.id }))?.last_read_message_id).toBeNull();
    expect(await eventsSince(m, chat.id)).toEqual([]);
  });

  it("emits updated for each chat whose pin position moved when a pin is removed", async () => {
    const ownerId = await owner();
    const [a, b, c] = [await newChat(ownerId), await newChat(ownerId), await newChat(ownerId)];
    for (const chat of [a, b, c]) await pool.query("SELECT chat_pin($1, 1)", [chat.id]);
    const m = await mark();
    await pool.query("SELECT chat_pin($1, 0)", [a.id]);
    const evs = await eventsSince(m, a.id, b.id, c.id);
    expect(evs.map((e) => [e.chat_id, e.kind]).sort()).toEqual(
      [
        [a.id, "updated"],
        [b.id, "updated"],
        [c.id, "updated"],
      ].sort(),
    );
  });

  it("emits nothing for runner bookkeeping (heartbeat_at, worker_id, started_at)", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    await pool.query("UPDATE chats SET status = 'running' WHERE id = $1", [chat.id]);
    const m = await mark();
    await pool.query(
      "UPDATE chats SET worker_id = gen_random_uuid(), started_at = now(), heartbeat_at = now() WHERE id = $1",
      [chat.id],
    );
    await pool.query("UPDATE chats SET heartbeat_at = now() + interval '5 seconds' WHERE id = $1", [
      chat.id,
    ]);
    expect(await eventsSince(m, chat.id)).toEqual([]);
  });

  it("emits nothing for an update that changes nothing", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    await chatUpdate(chat.id, ownerId, { title: "same" });
    const m = await mark();
    await pool.query("UPDATE chats SET title = title, labels = labels WHERE id = $1", [chat.id]);
    await chatUpdate(chat.id, ownerId, { title: "same" });
    expect(await eventsSince(m, chat.id)).toEqual([]);
  });
});

describe("chats: archive and hard delete", () => {
  it("emits exactly one deleted per family member on archive and one created per member on unarchive", async () => {
    const ownerId = await owner();
    const root = await newChat(ownerId);
    const c1 = await newChat(ownerId, { parent_chat_id: root.id });
    const c2 = await newChat(ownerId, { parent_chat_id: root.id });
    const family = [root.id, c1.id, c2.id];
    let m = await mark();
    await pool.query("SELECT chat_archive($1, true)", [root.id]);
    let evs = await eventsSince(m, ...family);
    expect(evs.map((e) => [e.chat_id, e.kind, e.owner_id]).sort()).toEqual(
      family.map((id) => [id, "deleted", ownerId]).sort(),
    );
    for (const e of evs) expect(e.chat_version).toBe(await version(e.chat_id));

    m = await mark();
    await pool.query("SELECT chat_archive($1, false)", [root.id]);
    evs = await eventsSince(m, ...family);
    expect(evs.map((e) => [e.chat_id, e.kind]).sort()).toEqual(
      family.map((id) => [id, "created"]).sort(),
    );
    for (const e of evs) expect(e.chat_version).toBe(await version(e.chat_id));
  });

  it("archiving a pinned root emits deleted for it and updated for the pins that moved up", async () => {
    const ownerId = await owner();
    const a = await newChat(ownerId);
    const b = await newChat(ownerId);
    await pool.query("SELECT chat_pin($1, 1)", [a.id]);
    await pool.query("SELECT chat_pin($1, 1)", [b.id]);
    const m = await mark();
    await pool.query("SELECT chat_archive($1, true)", [a.id]);
    const evs = await eventsSince(m, a.id, b.id);
    expect(evs.map((e) => [e.chat_id, e.kind]).sort()).toEqual(
      [
        [a.id, "deleted"],
        [b.id, "updated"],
      ].sort(),
    );
  });

  it("emits hard_deleted with the identity fields for every chat a DELETE removes, and nothing for its queue or diff status", async () => {
    const ownerId = await owner();
    const root = await newChat(ownerId, { text: "root task" });
    const child = await newChat(ownerId, { parent_chat_id: root.id, text: "child task" });
    const grandchild = await newChat(ownerId, { parent_chat_id: child.id, text: "gc task" });
    await pool.query("UPDATE chats SET status = 'running' WHERE id = $1", [child.id]);
    await sendChatMessage(pool, {
      chat_id: child.id,
      owner_id: ownerId,
      content: [text("queued")],
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id: null,
    });
    await gen.diffStatus(pool, root.id, { pull_request_state: "open" });
    const rows = new Map<string, { title: string; version: number }>();
    for (const c of [root, child, grandchild]) {
      const { rows: r } = await pool.query("SELECT title, version FROM chats WHERE id = $1", [
        c.id,
      ]);
      rows.set(c.id, { title: r[0].title, version: Number(r[0].version) });
    }
    const m = await mark();
    await pool.query("DELETE FROM chats WHERE id = $1", [root.id]);
    const evs = await eventsSince(m, root.id, child.id, grandchild.id);
    const byChat = new Map(evs.map((e) => [e.chat_id, e]));
    expect(kindsOf(evs)).toEqual(["hard_deleted", "hard_deleted", "hard_deleted"]);
    expect(byChat.size).toBe(3);
    expect(byChat.get(root.id)).toMatchObject({
      owner_id: ownerId,
      chat_version: rows.get(root.id)!.version + 1,
      payload: {
        organization_id: orgId,
        parent_chat_id: null,
        root_chat_id: null,
        title: rows.get(root.id)!.title,
      },
    });
    expect(byChat.get(child.id)).toMatchObject({
      owner_id: ownerId,
      chat_version: rows.get(child.id)!.version + 1,
      payload: {
        organization_id: orgId,
        parent_chat_id: root.id,
        root_chat_id: root.id,
        title: rows.get(child.id)!.title,
      },
    });
    expect(byChat.get(grandchild.id)).toMatchObject({
      owner_id: ownerId,
      payload: {
        organization_id: orgId,
        parent_chat_id: child.id,
        root_chat_id: root.id,
        title: rows.get(grandchild.id)!.title,
      },
    });
    expect(rows.get(root.id)!.title).not.toBe("");
  });
  it("emits hard_deleted for each of a user's chats when the user is deleted", async () => {
    const ownerId = await owner();
    const a = await newChat(ownerId);
    const b = await newChat(ownerId, { parent_chat_id: a.id });
    const m = await mark();
    await pool.query("DELETE FROM users WHERE id = $1", [ownerId]);
    const evs = await eventsSince(m, a.id, b.id);
    expect(evs.map((e) => [e.chat_id, e.kind, e.owner_id]).sort()).toEqual(
      [
        [a.id, "hard_deleted", ownerId],
        [b.id, "hard_deleted", ownerId],
      ].sort(),
    );
  });
});

describe("chat_messages, queue and diff status", () => {
  it("emits message with payload.message_id for a user-visible message and nothing for a model-only one", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    const m = await mark();
    const visible = await gen.chatMessage(pool, chat.id, { role: "assistant", text: "hi" });
    const userOnly = await gen.chatMessage(pool, chat.id, {
      role: "assistant",
      visibility: "user",
    });
    await gen.chatMessage(pool, chat.id, { role: "user", visibility: "model", text: "ctx" });
    await gen.chatMessage(pool, chat.id, { role: "system", visibility: "model", text: "sys" });
    const v = await version(chat.id);
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "message",
        owner_id: ownerId,
        chat_version: v,
        payload: { message_id: visible.id },
      }),
      expect.objectContaining({ kind: "message", payload: { message_id: userOnly.id } }),
    ]);
  });

  it("a new user message emits updated (updated_at moved) then message, both at the new version", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    const m = await mark();
    const msg = await gen.chatMessage(pool, chat.id, { role: "user", text: "more" });
    const v = await version(chat.id);
    expect(v).toBe(chat.version + 1);
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({ kind: "updated", chat_version: v }),
      expect.objectContaining({
        kind: "message",
        chat_version: v,
        payload: { message_id: msg.id },
      }),
    ]);
  });

  it("chat_edit_message emits one history_reset with the deleted message ids", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId, { text: "first" });
    await pool.query("UPDATE chats SET status = 'completed' WHERE id = $1", [chat.id]);
    const { rows } = await pool.query(
      "SELECT id FROM chat_messages WHERE chat_id = $1 AND role = 'user'",
      [chat.id],
    );
    const a1 = await gen.chatMessage(pool, chat.id, { role: "assistant", text: "a1" });
    const a2 = await gen.chatMessage(pool, chat.id, { role: "assistant", text: "a2" });
    const m = await mark();
    const edited = await editChatMessage(pool, {
      chat_id: chat.id,
      owner_id: ownerId,
      message_id: rows[0].id,
      content: [text("first, edited")],
      api_key_id: null,
      model_config_id: null,
    });
    expect(edited!.deleted_message_ids).toEqual([rows[0].id, a1.id, a2.id]);
    const evs = await eventsSince(m, chat.id);
    const resets = evs.filter((e) => e.kind === "history_reset");
    expect(resets).toEqual([
      expect.objectContaining({
        owner_id: ownerId,
        payload: { deleted_message_ids: [rows[0].id, a1.id, a2.id] },
      }),
    ]);
    // The reset comes first, then the new turn and its message; the status change explains the
    // moved updated_at, so no `updated` comes with the message.
    expect(kindsOf(evs)).toEqual(["history_reset", "status_change", "message"]);
    expect(evs.find((e) => e.kind === "message")!.payload).toEqual({
      message_id: edited!.message_id,
    });
    expect(evs.find((e) => e.kind === "status_change")!.payload).toEqual({
      status: "pending",
      previous_status: "completed",
    });
  });

  it("emits queue_update when a busy chat queues a message and when a queued message is deleted", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    await pool.query("UPDATE chats SET status = 'running' WHERE id = $1", [chat.id]);
    let m = await mark();
    const sent = await sendChatMessage(pool, {
      chat_id: chat.id,
      owner_id: ownerId,
      content: [text("later")],
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id: null,
    });
    expect(sent!.queued_message_id).toEqual(expect.any(Number));
    const v = await version(chat.id);
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "queue_update",
        owner_id: ownerId,
        chat_version: v,
        payload: null,
      }),
    ]);
    m = await mark();
    await deleteChatQueuedMessage(pool, {
      id: sent!.queued_message_id!,
      chat_id: chat.id,
      owner_id: ownerId,
    });
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({ kind: "queue_update", owner_id: ownerId, chat_version: v }),
    ]);
    // A delete that removes nothing (PC404) says nothing.
    m = await mark();
    const err = await sqlError(() =>
      deleteChatQueuedMessage(pool, {
        id: sent!.queued_message_id!,
        chat_id: chat.id,
        owner_id: ownerId,
      }),
    );
    expect(err.code).toBe("PC404");
    expect(await eventsSince(m, chat.id)).toEqual([]);
  });

  it("emits one diff_status_change per diff status upsert, inserted or updated", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    const v = await version(chat.id);
    let m = await mark();
    await gen.diffStatus(pool, chat.id, { pull_request_state: "open", additions: 3 });
    expect(await eventsSince(m, chat.id)).toEqual([
      expect.objectContaining({
        kind: "diff_status_change",
        owner_id: ownerId,
        chat_version: v,
        payload: null,
      }),
    ]);
    m = await mark();
    await gen.diffStatus(pool, chat.id, { pull_request_state: "merged", additions: 5 });
    expect(kindsOf(await eventsSince(m, chat.id))).toEqual(["diff_status_change"]);
  });
});

describe("the event kinds and their writer", () => {
  it("every kind of the SQL enum goes to the owner's watch, a chat's stream or an agent's stream, and the TypeScript lists name no other", async () => {
    const { rows } = await pool.query(
      "SELECT unnest(enum_range(NULL::chat_event_kind))::text AS kind",
    );
    const sqlKinds = rows.map((r) => r.kind as string).sort();
    const listed = [...new Set([...watchKinds, ...streamKinds, ...agentKinds])].sort();
    expect(listed).toEqual(sqlKinds);
  });

  it("chat_events_append is the only routine that writes chat_events", async () => {
    const { rows } = await pool.query(
      `SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE n.nspname = 'public' AND p.prosrc ~* 'insert\\s+into\\s+chat_events\\s*\\('
       ORDER BY 1`,
    );
    expect(rows.map((r) => r.proname)).toEqual(["chat_events_append"]);
  });

  it("chat_events_append writes one event, several in the order given, and any array bounds", async () => {
    const chat = await gen.chat(pool, { ownerId: await owner(), organizationId: orgId });
    const row = (kind: string, version: number) =>
      `"(${chat.id},${chat.owner_id},${kind},${version},)"`;
    const cases = [
      `{${row("title_change", 101)}}`,
      `{${row("summary_change", 102)},${row("updated", 103)}}`,
      // Not written by the triggers (their arrays start at 1), but a valid one-element array.
      `[0:0]={${row("context_dirty", 104)}}`,
      "{}",
    ];
    for (const events of cases) {
      await pool.query("SELECT chat_events_append($1::chat_event_row[])", [events]);
    }
    const { rows } = await pool.query(
      "SELECT kind, chat_version FROM chat_events WHERE chat_id = $1 AND chat_version > 100 ORDER BY id",
      [chat.id],
    );
    expect(rows).toEqual([
      { kind: "title_change", chat_version: 101 },
      { kind: "summary_change", chat_version: 102 },
      { kind: "updated", chat_version: 103 },
      { kind: "context_dirty", chat_version: 104 },
    ]);
  });
});

describe("transactions and NOTIFY", () => {
  it("a rolled-back transaction leaves no chat_events rows and sends no NOTIFY", async () => {
    const ownerId = await owner();
    const l = await listen(url, "chat_events");
    try {
      const m = await mark();
      let chatId = "";
      await withTx(pool, async (c) => {
        chatId = (await gen.chat(c, { ownerId, organizationId: orgId })).id;
        await c.query("UPDATE chats SET title = 'x', status = 'running' WHERE id = $1", [chatId]);
        await gen.chatMessage(c, chatId, { role: "assistant" });
        const { rows } = await c.query("SELECT count(*)::int AS n FROM chat_events WHERE id > $1", [
          m,
        ]);
        expect(rows[0].n).toBeGreaterThanOrEqual(4);
        throw new Error("abort");
      }).catch((err: Error) => {
        if (err.message !== "abort") throw err;
      });
      expect(chatId).not.toBe("");
      const { rows } = await pool.query(
        "SELECT count(*)::int AS n FROM chat_events WHERE id > $1",
        [m],
      );
      expect(rows[0].n).toBe(0);
      expect(await notificationsUntilSentinel(l, 0)).toEqual([]);
    } finally {
      await l.close();
    }
  });

  it("sends one NOTIFY per transaction, carrying its xid, however many events and tables it writes", async () => {
    const ownerId = await owner();
    const root = await newChat(ownerId);
    const c1 = await newChat(ownerId, { parent_chat_id: root.id });
    const c2 = await newChat(ownerId, { parent_chat_id: root.id });
    const g1 = await newChat(ownerId, { parent_chat_id: c1.id });
    const g2 = await newChat(ownerId, { parent_chat_id: c2.id });
    const other = await newChat(ownerId);
    const family = [root.id, c1.id, c2.id, g1.id, g2.id];
    const l = await listen(url, "chat_events");
    try {
      const m = await mark();
      const xid = await withTx(pool, async (c) => {
        await c.query("SELECT chat_archive($1, true)", [root.id]);
        await c.query("UPDATE chats SET title = 'also' WHERE id = $1", [other.id]);
        await gen.chatMessage(c, other.id, { role: "assistant" });
        await gen.diffStatus(c, other.id);
        return txXid(c);
      });
      const evs = await eventsSince(m, ...family, other.id);
      expect(evs).toHaveLength(8);
      expect(new Set(evs.map((e) => e.xid))).toEqual(new Set([xid]));
      expect(evs.filter((e) => e.kind === "deleted").map((e) => e.chat_id)).toHaveLength(5);
      expect(await notificationsUntilSentinel(l, 0)).toEqual([
        { channel: "chat_events", payload: xid },
      ]);
    } finally {
      await l.close();
    }
  });

  it("keeps the NOTIFY payload a few bytes however large the chat's labels, title and messages are", async () => {
    const ownerId = await owner();
    const big = "x".repeat(200_000);
    const l = await listen(url, "chat_events");
    try {
      const chat = await newChat(ownerId, { text: big, labels: { blob: big } });
      await chatUpdate(chat.id, ownerId, { title: "t".repeat(256) });
      await gen.chatMessage(pool, chat.id, {
        role: "assistant",
        content: [text(big), call("c1", "write_file", { content: big })],
      });
      await pool.query("UPDATE chats SET status = 'requires_action' WHERE id = $1", [chat.id]);
      const { rows } = await pool.query(
        "SELECT length(payload::text) AS n FROM chat_events WHERE chat_id = $1 AND kind = 'action_required'",
        [chat.id],
      );
      expect(rows[0].n).toBeGreaterThan(200_000);
      const got = await notificationsUntilSentinel(l, 0);
      expect(got).toHaveLength(4);
      for (const n of got) {
        expect(n.channel).toBe("chat_events");
        expect(n.payload).toMatch(/^\d+$/);
        expect(Buffer.byteLength(n.payload)).toBeLessThan(100);
      }
    } finally {
      await l.close();
    }
  });

  it("in batched mode the triggers write events but send no NOTIFY; notifyChatEvents sends the wake-up", async () => {
    const ownerId = await owner();
    const l = await listen(url, "chat_events");
    const client = await connectClient(url, "pgchatd-test-batched");
    try {
      await client.query("SET pgchatd.events = 'batched'");
      expect((await client.query("SELECT chat_events_mode() AS m")).rows[0].m).toBe("batched");
      const m = await mark();
      const chat = await gen.chat(client, { ownerId, organizationId: orgId });
      await client.query("UPDATE chats SET title = 'batched' WHERE id = $1", [chat.id]);
      expect(kindsOf(await eventsSince(m, chat.id))).toEqual([
        "created",
        "message",
        "title_change",
      ]);
      expect(await notificationsUntilSentinel(l, 0)).toEqual([]);
      const from = l.received.length;
      await notifyChatEvents(client);
      expect(await l.next((n) => n.payload === "batch")).toEqual({
        channel: "chat_events",
        payload: "batch",
      });
      expect(await notificationsUntilSentinel(l, from)).toEqual([
        { channel: "chat_events", payload: "batch" },
      ]);
    } finally {
      await client.end();
      await l.close();
    }
  });

  it("sends the batched wake-up only while another session announced that it listens", async () => {
    // LISTENs without announcing itself: it hears whatever is sent, and counts for nothing.
    const bystander = await listenUnannounced("chat_events");
    const client = await connectClient(url, "pgchatd-test-batched");
    try {
      expect(await notifyChatEvents(client)).toEqual({ sent: false });
      expect(await bystander.untilSentinel()).toEqual([]);

      // The announcing session's own commits wake it in-process: it sends nothing either.
      expect(await announceChatListener(client)).toEqual({ announced: true });
      expect(await notifyChatEvents(client)).toEqual({ sent: false });
      expect(await bystander.untilSentinel()).toEqual([]);

      const l = await listen(url, "chat_events");
      try {
        expect(await notifyChatEvents(client)).toEqual({ sent: true });
        expect(await l.next((n) => n.payload === "batch")).toEqual({
          channel: "chat_events",
          payload: "batch",
        });
        expect(await bystander.untilSentinel()).toEqual(["batch"]);
      } finally {
        await l.close();
      }
      // Its session ended, and the client withdraws: nobody is left.
      await withdrawChatListener(client);
      expect(await notifyChatEvents(client)).toEqual({ sent: false });
      expect(await bystander.untilSentinel()).toEqual([]);
    } finally {
      await client.end();
      await bystander.close();
    }
  });

  it("an announcement made while a publisher that found nobody listening has not committed takes nothing; made after its commit, it makes the next publisher notify", async () => {
    const publisher = await session(pool);
    const announcer = await session(pool);
    const advisoryLocks = async () =>
      (
        await pool.query(
          `SELECT count(*)::int AS n FROM pg_locks
           WHERE pid = $1 AND locktype = 'advisory' AND granted`,
          [announcer.pid],
        )
      ).rows[0].n;
    try {
      await publisher.client.query("BEGIN");
      const first = await publisher.client.query("SELECT chat_listeners_exist() AS x");
      expect(first.rows[0].x).toBe(false);
      // Made now, it would let a listener read before the publisher's writes are visible: not
      // made, and it never waits (the listener's connection carries other channels).
      expect(await announceChatListener(announcer.client)).toEqual({ announced: false });
      expect(await advisoryLocks()).toBe(0);
      await publisher.client.query("COMMIT");
      expect(await announceChatListener(announcer.client)).toEqual({ announced: true });
      expect(await advisoryLocks()).toBe(16);
      const next = await publisher.client.query("SELECT chat_listeners_exist() AS x");
      expect(next.rows[0].x).toBe(true);
      await withdrawChatListener(announcer.client);
      expect(await advisoryLocks()).toBe(0);
    } finally {
      await publisher.client.query("ROLLBACK").catch(() => {});
      publisher.release();
      // Destroyed, not returned to the pool: its session may still hold the slots.
      announcer.client.release(true);
    }
  });

  it("in off mode the triggers write nothing and send nothing", async () => {
    const ownerId = await owner();
    const l = await listen(url, "chat_events");
    const client = await connectClient(url, "pgchatd-test-off");
    try {
      await client.query("SET pgchatd.events = 'off'");
      const m = await mark();
      const chat = await gen.chat(client, { ownerId, organizationId: orgId });
      await client.query("UPDATE chats SET title = 'off', status = 'running' WHERE id = $1", [
        chat.id,
      ]);
      await gen.diffStatus(client, chat.id);
      await client.query("DELETE FROM chats WHERE id = $1", [chat.id]);
      const { rows } = await pool.query(
        "SELECT count(*)::int AS n FROM chat_events WHERE id > $1",
        [m],
      );
      expect(rows[0].n).toBe(0);
      expect(await notificationsUntilSentinel(l, 0)).toEqual([]);
    } finally {
      await client.end();
      await l.close();
    }
  });

  it("a session that never set pgchatd.events notifies from the trigger", async () => {
    const ownerId = await owner();
    const l = await listen(url, "chat_events");
    // A plain client, as psql would connect: no pgchatd.events in its startup options.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      expect(
        (await client.query("SELECT current_setting('pgchatd.events', true) AS s")).rows[0].s,
      ).toBeNull();
      expect((await client.query("SELECT chat_events_mode() AS m")).rows[0].m).toBe("trigger");
      const chat = await gen.chat(client, { ownerId, organizationId: orgId });
      const got = await notificationsUntilSentinel(l, 0);
      expect(got).toHaveLength(1);
      expect(chat.id).toEqual(expect.any(String));
    } finally {
      await client.end();
      await l.close();
    }
  });
});

/**
 * The tailer's read with this database's horizon (chat_events_horizon), checked against the
 * cheap one (the cluster-wide xmin): that one may stop earlier (other test files' transactions in
 * their databases hold it), never read anything else.
 */
async function readBothHorizons(args: { after_xid: string; after_id: number; page_limit: number }) {
  const cheap = await listChatEventsAfterCursor(pool, { ...args, past_other_databases: false });
  const own = await listChatEventsAfterCursor(pool, { ...args, past_other_databases: true });
  expect(own.slice(0, cheap.length)).toEqual(cheap);
  return own;
}

describe("reading in (xid, id) order below the xmin horizon", () => {
  it("hides a committed transaction's rows while an older transaction is open, then returns both in (xid, id) order", async () => {
    const ownerId = await owner();
    const chatA = await newChat(ownerId);
    const chatB = await newChat(ownerId);
    const start = await cursorNow();
    await belowHorizon(start.xid);
    const a = await connectClient(url, "pgchatd-test-tx-a");
    const b = await connectClient(url, "pgchatd-test-tx-b");
    // Nothing else writes to this file's database meanwhile, so the reads are not filtered.
    const read = () =>
      readBothHorizons({ after_xid: start.xid, after_id: start.id, page_limit: 100 });
    try {
      await a.query("BEGIN");
      await a.query("UPDATE chats SET title = 'from A' WHERE id = $1", [chatA.id]);
      await b.query("BEGIN");
      await b.query("UPDATE chats SET title = 'from B' WHERE id = $1", [chatB.id]);
      await b.query("COMMIT");
      // B's row is committed and visible to a plain read, but sits above the horizon A holds.
      const { rows: visible } = await pool.query(
        "SELECT id FROM chat_events WHERE chat_id = $1 AND kind = 'title_change'",
        [chatB.id],
      );
      expect(visible).toHaveLength(1);
      expect(await read()).toEqual([]);
      await a.query("COMMIT");
      const rows = await until(read, (r) => r.length >= 2);
      expect(rows.map((r) => [r.chat_id, r.kind])).toEqual([
        [chatA.id, "title_change"],
        [chatB.id, "title_change"],
      ]);
      expect(BigInt(rows[0]!.xid)).toBeLessThan(BigInt(rows[1]!.xid));
      expect(rows[0]!.id).toBeLessThan(rows[1]!.id);
    } finally {
      await a.end();
      await b.end();
    }
  });

  it("orders by xid before id: a transaction that took its xid first but drew its event id last comes first", async () => {
    const ownerId = await owner();
    const chatA = await newChat(ownerId);
    const chatB = await newChat(ownerId);
    const start = await cursorNow();
    await belowHorizon(start.xid);
    const a = await connectClient(url, "pgchatd-test-tx-a");
    const b = await connectClient(url, "pgchatd-test-tx-b");
    try {
      await a.query("BEGIN");
      const xidA = await txXid(a);
      await b.query("BEGIN");
      await b.query("UPDATE chats SET title = 'from B' WHERE id = $1", [chatB.id]);
      await b.query("COMMIT");
      await a.query("UPDATE chats SET title = 'from A' WHERE id = $1", [chatA.id]);
      const read = () =>
        readBothHorizons({ after_xid: start.xid, after_id: start.id, page_limit: 100 });
      expect(await read()).toEqual([]);
      await a.query("COMMIT");
      const rows = await until(read, (r) => r.length >= 2);
      expect(rows).toHaveLength(2);
      expect(rows.map((r) => r.chat_id)).toEqual([chatA.id, chatB.id]);
      expect(rows[0]!.xid).toBe(xidA);
      expect(rows[0]!.id).toBeGreaterThan(rows[1]!.id);
      // A cursor at A's row continues with B's; one at B's returns nothing of either.
      const afterA = await readBothHorizons({
        after_xid: rows[0]!.xid,
        after_id: rows[0]!.id,
        page_limit: 100,
      });
      expect(afterA.map((r) => r.id)).toEqual([rows[1]!.id]);
      const afterB = await readBothHorizons({
        after_xid: rows[1]!.xid,
        after_id: rows[1]!.id,
        page_limit: 100,
      });
      expect(afterB).toEqual([]);
    } finally {
      await a.end();
      await b.end();
    }
  });

  it("looks past an open write transaction of another database, never past one of this database", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    const start = await cursorNow();
    await belowHorizon(start.xid);
    const other = await connectClient((await emptyDatabase()).url, "pgchatd-test-other-db");
    const here = await connectClient(url, "pgchatd-test-tx-here");
    const read = (past: boolean) =>
      listChatEventsAfterCursor(pool, {
        after_xid: start.xid,
        after_id: start.id,
        past_other_databases: past,
        page_limit: 100,
      });
    try {
      // Another database's transaction takes an xid and stays open.
      await other.query("BEGIN");
      await other.query("SELECT pg_current_xact_id()");
      await chatUpdate(chat.id, ownerId, { title: "while another database's transaction is open" });
      // The cluster-wide xmin holds the event back; this database's horizon does not.
      expect(await read(false)).toEqual([]);
      const past = await read(true);
      expect(past.map((r) => [r.chat_id, r.kind])).toEqual([[chat.id, "title_change"]]);
      // A transaction of this database, though, holds both.
      await here.query("BEGIN");
      await here.query("SELECT pg_current_xact_id()");
      const cursor = { after_xid: past[0]!.xid, after_id: past[0]!.id };
      await chatUpdate(chat.id, ownerId, { title: "while this database's transaction is open" });
      for (const p of [false, true])
        expect(
          await listChatEventsAfterCursor(pool, {
            ...cursor,
            past_other_databases: p,
            page_limit: 100,
          }),
        ).toEqual([]);
      await here.query("COMMIT");
      const rows = await until(
        () =>
          listChatEventsAfterCursor(pool, {
            ...cursor,
            past_other_databases: true,
            page_limit: 100,
          }),
        (r) => r.length >= 1,
      );
      expect(rows.map((r) => r.kind)).toEqual(["title_change"]);
      await other.query("COMMIT");
      // Nothing was lost on the cheap path either, once the other transaction ended.
      const all = await until(
        () => read(false),
        (r) => r.length >= 2,
      );
      expect(all.map((r) => r.id)).toEqual([past[0]!.id, rows[0]!.id]);
    } finally {
      await other.end();
      await here.end();
    }
  });

  it("compares xids as numbers, not text: xid 99 comes before xid 100 in every read", async () => {
    // Synthetic rows (chat_events has no foreign keys) put two xids across a digit boundary; the
    // real cluster's xids are all far above them, so they sort first. 100 gets the lower id.
    const chatId = crypto.randomUUID();
    const ownerId = crypto.randomUUID();
    const { rows: inserted } = await pool.query(
      `INSERT INTO chat_events (xid, chat_id, owner_id, kind, chat_version)
       VALUES ('100', $1, $2, 'updated', 1), ('99', $1, $2, 'updated', 1) RETURNING id`,
      [chatId, ownerId],
    );
    const [id100, id99] = inserted.map((r) => r.id as number);
    const expected = [
      ["99", id99],
      ["100", id100],
    ];
    const after = await readBothHorizons({ after_xid: "98", after_id: 0, page_limit: 2 });
    expect(after.map((e) => [e.xid, e.id])).toEqual(expected);
    const until = (await getChatEventBounds(pool))!.next_xid!;
    const range = { after_xid: "0", after_id: 0, until_xid: until, until_id: 0, page_limit: 10 };
    const byOwner = await listChatEventsByOwnerInRange(pool, {
      owner_id: ownerId,
      kinds: allKinds,
      ...range,
    });
    expect(byOwner.map((e) => [e.xid, e.id])).toEqual(expected);
    const byChat = await listChatEventsByChatInRange(pool, {
      chat_id: chatId,
      kinds: allKinds,
      ...range,
    });
    expect(byChat.map((e) => [e.xid, e.id])).toEqual(expected);
  });

  it("pages with page_limit in cursor order", async () => {
    const ownerId = await owner();
    const start = await cursorNow();
    const chat = await newChat(ownerId);
    await chatUpdate(chat.id, ownerId, { title: "one" });
    await chatUpdate(chat.id, ownerId, { title: "two" });
    const all = await eventsSince(start.id, chat.id);
    expect(kindsOf(all)).toEqual(["created", "message", "title_change", "title_change"]);
    await belowHorizon(all.at(-1)!.xid);
    const page1 = await readBothHorizons({
      after_xid: start.xid,
      after_id: start.id,
      page_limit: 3,
    });
    const page2 = await readBothHorizons({
      after_xid: page1.at(-1)!.xid,
      after_id: page1.at(-1)!.id,
      page_limit: 3,
    });
    expect([...page1, ...page2].map((e) => e.id)).toEqual(all.map((e) => e.id));
    expect(page2[0]).toMatchObject({
      chat_id: chat.id,
      owner_id: ownerId,
      kind: "title_change",
      chat_version: all[3]!.chat_version,
      payload: null,
    });
  });
});

describe("range reads for resuming streams", () => {
  it("ListChatEventsByOwnerInRange returns one owner's events in (after, until], filtered by kind", async () => {
    const ownerId = await owner();
    const stranger = await owner();
    const c1 = await newChat(ownerId); // e1 created, e2 message
    await newChat(stranger);
    const c2 = await newChat(ownerId); // e3 created, e4 message
    await chatUpdate(c1.id, ownerId, { title: "t" }); // e5
    await newChat(stranger);
    await chatUpdate(c2.id, ownerId, { labels: { a: "b" } }); // e6
    const { rows } = await pool.query(
      `SELECT id, xid::text AS xid, chat_id, kind::text AS kind FROM chat_events
       WHERE owner_id = $1 ORDER BY chat_events.xid, chat_events.id`,
      [ownerId],
    );
    expect(rows.map((r) => r.kind)).toEqual([
      "created",
      "message",
      "created",
      "message",
      "title_change",
      "updated",
    ]);
    const [e1, , , , e5, e6] = rows;
    const range = (over: Partial<ListChatEventsByOwnerInRangeArgs> = {}) =>
      listChatEventsByOwnerInRange(pool, {
        owner_id: ownerId,
        kinds: allKinds,
        after_xid: e1.xid,
        after_id: e1.id,
        until_xid: e5.xid,
        until_id: e5.id,
        page_limit: 100,
        ...over,
      });
    expect((await range()).map((r) => r.id)).toEqual(rows.slice(1, 5).map((r) => r.id));
    expect(
      (await range({ after_xid: "0", after_id: 0, until_xid: e6.xid, until_id: e6.id })).map(
        (r) => r.id,
      ),
    ).toEqual(rows.map((r) => r.id));
    expect(
      (
        await range({
          after_xid: "0",
          after_id: 0,
          until_xid: e6.xid,
          until_id: e6.id,
          kinds: ["created", "title_change"],
        })
      ).map((r) => [r.chat_id, r.kind]),
    ).toEqual([
      [c1.id, "created"],
      [c2.id, "created"],
      [c1.id, "title_change"],
    ]);
    expect((await range({ page_limit: 2 })).map((r) => r.id)).toEqual(
      rows.slice(1, 3).map((r) => r.id),
    );
    expect(await range({ until_xid: e1.xid, until_id: e1.id })).toEqual([]);
    expect(await range({ kinds: [] })).toEqual([]);
    const [first] = await range({ after_xid: "0", after_id: 0 });
    expect(first).toMatchObject({
      id: e1.id,
      xid: e1.xid,
      chat_id: c1.id,
      owner_id: ownerId,
      kind: "created",
      chat_version: 1,
      payload: null,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/),
    });
  });

  it("ListChatEventsByChatInRange returns one chat's events in (after, until], filtered by kind", async () => {
    const ownerId = await owner();
    const c1 = await newChat(ownerId);
    const c2 = await newChat(ownerId);
    const m1 = await gen.chatMessage(pool, c1.id, { role: "assistant", text: "one" });
    await gen.chatMessage(pool, c2.id, { role: "assistant", text: "other chat" });
    await pool.query("UPDATE chats SET status = 'running' WHERE id = $1", [c1.id]);
    const m2 = await gen.chatMessage(pool, c1.id, { role: "assistant", text: "two" });
    const all = await eventsSince(0, c1.id);
    expect(kindsOf(all)).toEqual(["created", "message", "message", "status_change", "message"]);
    const [e1, , e3, , e5] = all;
    const range = (over: Partial<Parameters<typeof listChatEventsByChatInRange>[1]> = {}) =>
      listChatEventsByChatInRange(pool, {
        chat_id: c1.id,
        kinds: allKinds,
        after_xid: e1!.xid,
        after_id: e1!.id,
        until_xid: e5!.xid,
        until_id: e5!.id,
        page_limit: 100,
        ...over,
      });
    expect((await range()).map((r) => r.id)).toEqual(all.slice(1).map((e) => e.id));
    expect((await range({ kinds: ["message"] })).map((r) => r.payload)).toEqual([
      { message_id: all[1]!.payload!.message_id },
      { message_id: m1.id },
      { message_id: m2.id },
    ]);
    expect((await range({ until_xid: e3!.xid, until_id: e3!.id })).map((r) => r.id)).toEqual([
      all[1]!.id,
      all[2]!.id,
    ]);
    expect(
      (await range({ kinds: ["status_change", "action_required"] })).map((r) => r.kind),
    ).toEqual(["status_change"]);
    expect(await range({ after_xid: e5!.xid, after_id: e5!.id })).toEqual([]);
    expect((await range({ page_limit: 1 })).map((r) => r.id)).toEqual([all[1]!.id]);
  });
});

describe("pruning", () => {
  it("deletes in batches the events committed before a horizon sampled a retention ago, moves the pruning horizon, and keeps the rest", async () => {
    const ownerId = await owner();
    // Old: everything so far plus a chat of its own, committed "two days ago".
    const oldChat = await newChat(ownerId);
    await chatUpdate(oldChat.id, ownerId, { title: "old" });
    const lastOld = await cursorNow();
    await belowHorizon(lastOld.xid);
    await gen.agedEventLog(pool, 2 * 86_400);
    const { rows: old } = await pool.query(
      "SELECT xid::text AS xid, id FROM chat_events ORDER BY chat_events.xid, chat_events.id",
    );
    expect(old.length).toBeGreaterThanOrEqual(3);
    // Recent rows: one as it is, one whose created_at claims two days too. Only when a row
    // committed counts: both stay.
    const recentChat = await newChat(ownerId);
    const lateOldChat = await newChat(ownerId);
    await pool.query(
      "UPDATE chat_events SET created_at = now() - interval '2 days' WHERE chat_id = $1",
      [lateOldChat.id],
    );
    const last = await cursorNow();
    await belowHorizon(last.xid);

    const before = (await getChatEventBounds(pool))!;
    expect(BigInt(before.start_xid!)).toBeLessThanOrEqual(BigInt(before.next_xid!));
    expect(BigInt(before.next_xid!)).toBeGreaterThan(BigInt(last.xid));

    // Nothing committed a week ago.
    expect(
      await pruneChatEvents(pool, { retention_seconds: 7 * 86_400, batch_size: 1000 }),
    ).toEqual({ deleted: 0 });

    expect(await pruneChatEvents(pool, { retention_seconds: 86_400, batch_size: 2 })).toEqual({
      deleted: 2,
    });
    let bounds = (await getChatEventBounds(pool))!;
    expect([bounds.pruned_xid, bounds.pruned_id]).toEqual([old[1].xid, old[1].id]);
    const { rows: first } = await pool.query(
      "SELECT id FROM chat_events ORDER BY chat_events.xid, chat_events.id LIMIT 1",
    );
    expect(first[0].id).toBe(old[2].id);

    let total = 2;
    for (;;) {
      const { deleted } = (await pruneChatEvents(pool, {
        retention_seconds: 86_400,
        batch_size: 2,
      }))!;
      expect(deleted).toBeLessThanOrEqual(2);
      total += deleted!;
      if (deleted! < 2) break;
    }
    expect(total).toBe(old.length);
    bounds = (await getChatEventBounds(pool))!;
    expect([bounds.pruned_xid, bounds.pruned_id]).toEqual([lastOld.xid, lastOld.id]);
    expect(await pruneChatEvents(pool, { retention_seconds: 86_400, batch_size: 1000 })).toEqual({
      deleted: 0,
    });

    const { rows: left } = await pool.query(
      "SELECT chat_id, kind::text AS kind FROM chat_events ORDER BY chat_events.xid, chat_events.id",
    );
    expect(left).toEqual([
      { chat_id: recentChat.id, kind: "created" },
      { chat_id: recentChat.id, kind: "message" },
      { chat_id: lateOldChat.id, kind: "created" },
      { chat_id: lateOldChat.id, kind: "message" },
    ]);
  });

  it("never prunes an event before the retention has passed since it committed, however long before its transaction started", async () => {
    const ownerId = await owner();
    const chat = await newChat(ownerId);
    const retention = 1;
    const writer = await connectClient(url, "pgchatd-test-long-writer");
    let xid: string;
    try {
      await writer.query("BEGIN");
      await writer.query("UPDATE chats SET title = 'written by a long transaction' WHERE id = $1", [
        chat.id,
      ]);
      xid = (await writer.query("SELECT pg_current_xact_id()::text AS x")).rows[0].x;
      // The transaction stays open longer than the retention, while pruning runs as usual.
      const deadline = Date.now() + 2_000 * retention;
      while (Date.now() < deadline) {
        await pruneChatEvents(pool, { retention_seconds: retention, batch_size: 1000 });
        await new Promise((r) => setTimeout(r, 200));
      }
      await writer.query("COMMIT");
    } finally {
      await writer.end();
    }
    // Just committed, with a created_at older than the retention: still there for every tailer.
    await pruneChatEvents(pool, { retention_seconds: retention, batch_size: 1000 });
    const kept = await pool.query("SELECT kind::text AS kind FROM chat_events WHERE xid = $1", [
      xid,
    ]);
    expect(kept.rows).toEqual([{ kind: "title_change" }]);
    // A retention after its commit, it goes.
    await until(
      async () => {
        await pruneChatEvents(pool, { retention_seconds: retention, batch_size: 1000 });
        return (await pool.query("SELECT 1 FROM chat_events WHERE xid = $1", [xid])).rows;
      },
      (rows) => rows.length === 0,
    );
  });

  it("returns 0 while another session holds the prune lock", async () => {
    const holder = await connectClient(url, "pgchatd-test-prune-lock");
    try {
      const ownerId = await owner();
      const chat = await newChat(ownerId);
      await pool.query(
        "UPDATE chat_events SET created_at = now() - interval '2 days' WHERE chat_id = $1",
        [chat.id],
      );
      await belowHorizon((await cursorNow()).xid);
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock(hashtext('chat_events_prune'))");
      expect(await pruneChatEvents(pool, { retention_seconds: 0, batch_size: 1000 })).toEqual({
        deleted: 0,
      });
      await holder.query("COMMIT");
      // Once the lock is free it prunes. Each call samples the horizon anew, and a sample can
      // come out lower than belowHorizon saw: an xid of another database whose backend
      // pg_stat_activity does not show yet holds it back (chat_events_horizon), which is common
      // while the rest of the suite writes on the same server. So: the first call that sees the
      // chat's events below its sample deletes them.
      const { deleted } = (await until(
        () => pruneChatEvents(pool, { retention_seconds: 0, batch_size: 100_000 }),
        (r) => (r?.deleted ?? 0) > 0,
      ))!;
      expect(deleted).toBeGreaterThanOrEqual(2);
    } finally {
      await holder.end();
    }
  });
});
