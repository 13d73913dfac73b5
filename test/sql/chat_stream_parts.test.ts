import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import type { Pool, PoolClient } from "../../src/db/index.ts";
import { connectClient } from "../../src/db/pool.ts";
import { saveChatRunToolStep } from "../../src/generated/chat_runs.ts";
import {
  listChatStreamPartsByChatID,
  listChatStreamPartsMarksByChatIDs,
  pruneChatStreamParts,
} from "../../src/generated/chat_stream_parts.ts";
import { publishStreamEvent, type StreamLease, type StreamSource } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import { listen } from "../setup/listen.ts";
import { blocked, session } from "../setup/sessions.ts";

/*
 * A running turn's in-flight output (sql/functions/chat_stream_parts.sql): what a chat stream
 * opened mid-turn starts with, and what it drops from the live parts.
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

async function runningChat() {
  const ownerId = (await gen.user(pool, { organizationIds: [orgId] })).id;
  const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
  const lease = await claim(chat.id);
  return { chatId: chat.id, ownerId, modelConfigId: chat.last_model_config_id as string, lease };
}

/** A runner's claim of the chat: a new lease (and so a new run). */
async function claim(chatId: string): Promise<StreamLease> {
  const workerId = randomUUID();
  const { rows } = await pool.query<{ started_at: string }>(
    `UPDATE chats SET status = 'running', worker_id = $2, started_at = clock_timestamp(),
       heartbeat_at = now() WHERE id = $1 RETURNING started_at::text`,
    [chatId, workerId],
  );
  return { workerId, startedAt: rows[0]!.started_at };
}

const part = (text: string) => ({ part: { type: "text", text } });
const publish = (chatId: string, lease: StreamSource, text: string, event = "message_part") =>
  publishStreamEvent(pool, chatId, event as "message_part", part(text), lease);

/** The snapshot's view: the in-flight texts in order, and the highest seq. */
async function snapshot(chatId: string) {
  const rows = await listChatStreamPartsByChatID(pool, { chat_id: chatId });
  return {
    inFlight: rows
      .filter((r) => r.in_flight_body !== null)
      .map((r) => JSON.parse(r.in_flight_body!.split("\ndata: ")[1]!).part?.text ?? "retry"),
    through: rows.length > 0 ? Number(rows.at(-1)!.seq) : 0,
  };
}

/**
 * A step of the chat's run that calls `count` workspace tools, stored, and its calls started by
 * the agent (running). Returns their chat_tool_calls ids.
 */
async function runningCalls(
  c: Awaited<ReturnType<typeof runningChat>>,
  count = 1,
): Promise<number[]> {
  const names = Array.from({ length: count }, (_, i) => `call_${i + 1}`);
  await saveChatRunToolStep(pool, {
    chat_id: c.chatId,
    worker_id: c.lease.workerId,
    started_at: c.lease.startedAt,
    model_config_id: c.modelConfigId,
    messages: [
      {
        role: "assistant",
        content: names.map((id) => ({
          type: "tool-call",
          tool_call_id: id,
          tool_name: "execute",
          args: {},
        })),
      },
    ],
    plan_file: null,
    tool_calls: [],
  });
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO chat_tool_calls (chat_id, tool_call_id, tool_name, args, deadline_at, state,
       started_at, session_id)
     SELECT $1, name, 'execute', '{}', now() + interval '1 minute', 'running', now(),
       gen_random_uuid()
     FROM unnest($2::text[]) WITH ORDINALITY AS n (name, i) ORDER BY i
     RETURNING id`,
    [c.chatId, names],
  );
  return rows.map((r) => Number(r.id));
}

describe("chat_stream_publish", () => {
  it("stores a run's parts with its turn_id and increasing seqs, and publishes nothing once its lease moved on", async () => {
    const c = await runningChat();
    const first = await publish(c.chatId, c.lease, "a");
    const second = await publish(c.chatId, c.lease, "b");
    expect(first).not.toBeNull();
    expect(second!.seq).toBeGreaterThan(first!.seq);
    expect(first!.ownerId).toBe(c.ownerId);
    const data = JSON.parse(second!.body.split("\ndata: ")[1]!);
    expect(data).toMatchObject({ seq: second!.seq, part: { type: "text", text: "b" } });
    expect(data.turn_id).toMatch(/^\d+$/);
    expect((await snapshot(c.chatId)).inFlight).toEqual(["a", "b"]);

    // Another runner claimed the chat: the old run's output is not this run's.
    const next = await claim(c.chatId);
    expect(await publish(c.chatId, c.lease, "stale")).toBeNull();
    const fresh = await publish(c.chatId, next, "new run");
    expect(JSON.parse(fresh!.body.split("\ndata: ")[1]!).turn_id).not.toBe(data.turn_id);
    const view = await snapshot(c.chatId);
    expect(view.inFlight).toEqual(["new run"]);
    // The old run's parts still count for the dedup mark.
    expect(view.through).toBe(fresh!.seq);
  });

  it("ends the in-flight output at a retry and at a stored step, keeping the marks", async () => {
    const c = await runningChat();
    await publish(c.chatId, c.lease, "half an ans");
    await publish(c.chatId, c.lease, "retrying", "retry");
    expect((await snapshot(c.chatId)).inFlight).toEqual(["retrying"]);
    const last = await publish(c.chatId, c.lease, "the answer");
    expect((await snapshot(c.chatId)).inFlight).toEqual(["retrying", "the answer"]);
    const saved = await saveChatRunToolStep(pool, {
      chat_id: c.chatId,
      worker_id: c.lease.workerId,
      started_at: c.lease.startedAt,
      model_config_id: c.modelConfigId,
      messages: [{ role: "assistant", content: [{ type: "text", text: "the answer" }] }],
      plan_file: null,
      tool_calls: [],
    });
    expect(saved.saved).toBe(true);
    expect(await snapshot(c.chatId)).toEqual({ inFlight: [], through: last!.seq });
  });

  it("refuses what is not one line of a JSON object, or has no publisher, and keeps its own fields its own", async () => {
    const c = await runningChat();
    const lease = [c.lease.workerId, c.lease.startedAt];
    for (const [event, data, code] of [
      ["status", '{"x":1}', "22023"],
      [null, '{"x":1}', "22023"],
      ["message_part", "{}", "22023"],
      ["message_part", "{ }", "22023"],
      ["message_part", "[1]", "22023"],
      ["message_part", null, "22023"],
      ["message_part", '{"x":1}\n\nevent: status\ndata: {"status":"error"}', "22023"],
      ["message_part", '\t{"x":1}', "22023"],
      ["message_part", '{"x":\n1}', "22023"],
      ["message_part", '{"a":1} trailing', "22023"],
      ["message_part", '{"a":1} {"b":2}', "22P02"],
      ["message_part", "{", "22023"],
      ["message_part", '{"a":}', "22P02"],
    ]) {
      await expect(
        pool.query("SELECT chat_stream_publish($1, $2, $3, NULL, $4, $5)", [
          c.chatId,
          ...lease,
          event,
          data,
        ]),
        JSON.stringify([event, data]),
      ).rejects.toMatchObject({ code });
    }
    // Neither a lease nor a call, or both.
    for (const args of [
      [null, null, null],
      [...lease, 1],
    ]) {
      await expect(
        pool.query("SELECT chat_stream_publish($1, $2, $3, $4, 'message_part', '{\"x\":1}')", [
          c.chatId,
          ...args,
        ]),
      ).rejects.toMatchObject({ code: "22023" });
    }
    // The data cannot forge the stream's own fields, however it spells them; nested ones are
    // the data's.
    for (const forged of [
      '{"seq":1,"turn_id":"0","x":2}',
      '{"s\\u0065q":1,"turn\\u005fid":"0"}',
      '{"part":{"type":"tool-call","args":{"seq":3}}}',
    ]) {
      const { rows } = await pool.query<{ seq: string; body: string }>(
        "SELECT seq, body FROM chat_stream_publish($1, $2, $3, NULL, 'message_part', $4)",
        [c.chatId, ...lease, forged],
      );
      const data = JSON.parse(rows[0]!.body.split("\ndata: ")[1]!);
      expect(data.seq, forged).toBe(Number(rows[0]!.seq));
      expect(data.turn_id).toMatch(/^\d{10,}$/);
    }
    // What JSON.stringify writes for a NUL in model text is kept as written.
    const nul = await publishStreamEvent(pool, c.chatId, "message_part", part("a\u0000b"), c.lease);
    expect(JSON.parse(nul!.body.split("\ndata: ")[1]!).part.text).toBe("a\u0000b");
    // A lone surrogate (text cut mid-pair) is made well-formed rather than refused.
    const cut = await publishStreamEvent(pool, c.chatId, "message_part", part("x\ud83d"), c.lease);
    expect(JSON.parse(cut!.body.split("\ndata: ")[1]!).part.text).toBe("x\ufffd");
  });

  it("stores a part but sends its NOTIFY only while some session announced that it listens for parts", async () => {
    const c = await runningChat();
    // LISTENs without announcing itself: it shows what was sent.
    const bystander = await connectClient(url, "pgchatd-test-bystander");
    const got: string[] = [];
    let sentinelSeen = () => {};
    bystander.on("notification", (m) => {
      if (m.payload === "sentinel") sentinelSeen();
      else got.push(m.payload ?? "");
    });
    await bystander.query("LISTEN chat_message_parts");
    const sentUpToSentinel = async () => {
      const seen = new Promise<void>((resolve) => {
        sentinelSeen = resolve;
      });
      await pool.query("SELECT pg_notify('chat_message_parts', 'sentinel')");
      await seen;
      return got.splice(0);
    };
    try {
      await publish(c.chatId, c.lease, "unheard");
      expect(await sentUpToSentinel()).toEqual([]);
      const l = await listen(url, "chat_message_parts");
      try {
        await publish(c.chatId, c.lease, "heard");
        const heard = await l.next();
        expect(JSON.parse(heard.payload).b).toContain('"text":"heard"');
        expect((await sentUpToSentinel()).map((p) => JSON.parse(p).b)).toEqual([
          JSON.parse(heard.payload).b,
        ]);
      } finally {
        await l.close();
      }
      // Stored either way, for the snapshot of a stream that opens later.
      expect((await snapshot(c.chatId)).inFlight).toEqual(["unheard", "heard"]);
    } finally {
      await bystander.end();
    }
  });

  it("publishes nothing for an archived chat, even under its lease", async () => {
    const c = await runningChat();
    await pool.query("UPDATE chats SET archived = true WHERE id = $1", [c.chatId]);
    expect(await publish(c.chatId, c.lease, "after the archive")).toBeNull();
    expect((await snapshot(c.chatId)).through).toBe(0);
  });

  it("orders one chat's publishers by commit: a second waits for the first, and gets the higher seq", async () => {
    const c = await runningChat();
    const first = await session(pool);
    const second = await session(pool);
    try {
      const publishOn = (client: PoolClient, text: string) =>
        client.query<{ seq: string }>(
          "SELECT seq FROM chat_stream_publish($1, $2, $3, NULL, 'message_part', $4)",
          [c.chatId, c.lease.workerId, c.lease.startedAt, JSON.stringify(part(text))],
        );
      await first.client.query("BEGIN");
      const a = await publishOn(first.client, "first");
      const b = publishOn(second.client, "second");
      await blocked(pool, second.pid);
      // A snapshot read now sees neither: the mark stays below both.
      expect((await snapshot(c.chatId)).through).toBe(0);
      await first.client.query("COMMIT");
      const bSeq = Number((await b).rows[0]!.seq);
      expect(bSeq).toBeGreaterThan(Number(a.rows[0]!.seq));
      expect((await snapshot(c.chatId)).inFlight).toEqual(["first", "second"]);
    } finally {
      first.release();
      second.release();
    }
  });
});

describe("a workspace call's output", () => {
  it("is published while the call runs, replaced by its result, and not published after it", async () => {
    const c = await runningChat();
    const callId = (await runningCalls(c))[0]!;
    expect(await publish(c.chatId, { callId }, "line 1")).not.toBeNull();
    expect((await snapshot(c.chatId)).inFlight).toEqual(["line 1"]);
    await pool.query(
      `UPDATE chat_tool_calls SET state = 'completed', closed_at = now(), result = '{"ok":true}'
       WHERE id = $1`,
      [callId],
    );
    await pool.query("SELECT chat_tool_calls_store_results($1)", [c.chatId]);
    expect((await snapshot(c.chatId)).inFlight).toEqual([]);
    expect(await publish(c.chatId, { callId }, "too late")).toBeNull();
    // A retry is the runner's, never an agent's.
    await expect(
      pool.query("SELECT chat_stream_publish($1, NULL, NULL, $2, 'retry', '{\"x\":1}')", [
        c.chatId,
        callId,
      ]),
    ).rejects.toMatchObject({ code: "22023" });
    // Another chat's call id publishes nothing here either.
    const other = await runningChat();
    expect(await publish(other.chatId, { callId }, "not this chat's call")).toBeNull();
  });
});

describe("two calls of one step", () => {
  it("keeps a running call's output in flight when another call's result is stored", async () => {
    const c = await runningChat();
    const [a, b] = await runningCalls(c, 2);
    await publish(c.chatId, { callId: a! }, "A out 1");
    await publish(c.chatId, { callId: b! }, "B out 1");
    await pool.query(
      `UPDATE chat_tool_calls SET state = 'completed', closed_at = now(), result = '{}' WHERE id = $1`,
      [b],
    );
    await pool.query("SELECT chat_stream_parts_saved($1)", [c.chatId]);
    expect((await snapshot(c.chatId)).inFlight).toEqual(["A out 1"]);
    // The stored result's mark stops below A's output: a stream never drops it.
    const marks = await listChatStreamPartsMarksByChatIDs(pool, { chat_ids: [c.chatId] });
    const aPart = (await listChatStreamPartsByChatID(pool, { chat_id: c.chatId }))[0]!;
    expect(Number(marks[0]!.saved_through)).toBeLessThan(Number(aPart.seq));
  });

  it("shows a running command's output after an interrupt until the turn ends, and not after an edit", async () => {
    const c = await runningChat();
    const callId = (await runningCalls(c))[0]!;
    await publish(c.chatId, { callId }, "building");
    await pool.query("SELECT chat_interrupt($1, $2)", [c.chatId, c.ownerId]);
    // The runner holding the chat has not ended the turn yet: the command still runs.
    const state = await pool.query("SELECT state FROM chat_tool_calls WHERE id = $1", [callId]);
    expect(state.rows[0].state).toBe("running");
    expect((await snapshot(c.chatId)).inFlight).toEqual(["building"]);
    // An edit drops the step and the call: its output is no longer in flight.
    const first = await pool.query<{ id: string }>(
      "SELECT id FROM chat_messages WHERE chat_id = $1 AND role = 'user' ORDER BY id LIMIT 1",
      [c.chatId],
    );
    await pool.query("SELECT chat_edit_message($1, $2, $3, $4, NULL, NULL)", [
      c.chatId,
      c.ownerId,
      first.rows[0]!.id,
      JSON.stringify([{ type: "text", text: "again" }]),
    ]);
    expect((await snapshot(c.chatId)).inFlight).toEqual([]);
  });
});

describe("chat_create's mcp_server_ids", () => {
  it("refuses NULL ids, duplicates, nested arrays and more than 64", async () => {
    const ownerId = (await gen.user(pool, { organizationIds: [orgId] })).id;
    const id = "0b6f1f8e-8a39-4f6e-9d5c-6f1c2b1e0a01";
    for (const ids of [
      `{${id},NULL}`,
      `{${id},${id}}`,
      `{{${id}},{${id}}}`,
      `{${Array.from({ length: 65 }, (_, i) => `0b6f1f8e-8a39-4f6e-9d5c-${String(i).padStart(12, "0")}`).join(",")}}`,
    ]) {
      await expect(
        pool.query(
          `SELECT chat_create($1, $2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
             '[{"type":"text","text":"x"}]', NULL, $3::uuid[])`,
          [ownerId, orgId, ids],
        ),
      ).rejects.toMatchObject({ code: "PC400" });
    }
  });
});

describe("pruning stream parts", () => {
  it("deletes after a minute what no stream shows, and keeps a long step's parts", async () => {
    const done = await runningChat();
    await publish(done.chatId, done.lease, "stored");
    await pool.query("UPDATE chat_stream_parts SET saved = true WHERE chat_id = $1", [done.chatId]);
    const lost = await runningChat();
    await publish(lost.chatId, lost.lease, "of a lost run");
    await claim(lost.chatId);
    const long = await runningChat();
    await publish(long.chatId, long.lease, "still streaming");
    const recent = await runningChat();
    await publish(recent.chatId, recent.lease, "recent");
    await pool.query("UPDATE chat_stream_parts SET saved = true WHERE chat_id = $1", [
      recent.chatId,
    ]);
    await pool.query(
      "UPDATE chat_stream_parts SET created_at = now() - interval '2 minutes' WHERE chat_id = ANY($1)",
      [[done.chatId, lost.chatId, long.chatId]],
    );
    const pruned = await pruneChatStreamParts(pool);
    expect(pruned?.deleted).toBeGreaterThanOrEqual(2);
    const { rows } = await pool.query<{ chat_id: string }>(
      "SELECT chat_id FROM chat_stream_parts WHERE chat_id = ANY($1) ORDER BY seq",
      [[done.chatId, lost.chatId, long.chatId, recent.chatId]],
    );
    expect(rows.map((r) => r.chat_id)).toEqual([long.chatId, recent.chatId]);
  });
});
