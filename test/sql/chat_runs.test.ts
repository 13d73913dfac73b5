import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import type { Pool, PoolClient } from "../../src/db/index.ts";
import {
  editChatMessage,
  interruptChat,
  sendChatMessage,
} from "../../src/generated/chat_messages.ts";
import { promoteChatQueuedMessage } from "../../src/generated/chat_queue.ts";
import { upsertChatRunnerHeartbeat } from "../../src/generated/chat_runners.ts";
import {
  claimPendingChats,
  finishChatRun,
  listChatRunStatesByWorkerID,
  releaseChatRunsByWorkerID,
  releaseOrphanedChatRunsByWorkerID,
  saveChatRunToolStep,
} from "../../src/generated/chat_runs.ts";
import {
  beginChatTitleRegeneration,
  deleteChatTitleRegeneration,
  updateChatTitleFromModelByID,
} from "../../src/generated/chat_titles.ts";
import {
  archiveChat,
  renameChatByID,
  updateChatLastTurnSummaryByID,
} from "../../src/generated/chats.ts";
import { runRecoveryPass } from "../../src/runner/recovery.ts";
import { gen } from "../fixtures/index.ts";
import { newPool, testDb } from "../setup/db.ts";
import { listen } from "../setup/listen.ts";
import { chatState, messagesOf, registerRunner, silenceRunner, textOf } from "../setup/runner.ts";
import { blocked, outcome, session } from "../setup/sessions.ts";
import { sqlError } from "../setup/sql.ts";

/*
 * The runner's rules where they live: sql/functions/chat_runs.sql, sql/queries/chat_runs.sql
 * and the chats triggers, called directly, with real concurrent connections where the rule is
 * about concurrency. test/runner/ checks the runner that calls them.
 */

let pool: Pool;
let dbUrl: string;
let orgId: string;

beforeAll(async () => {
  const db = await testDb();
  pool = db.pool;
  dbUrl = db.url;
  orgId = (await gen.organization(pool)).id;
});

const text = (s: string) => [{ type: "text", text: s }];

async function owner() {
  return (await gen.user(pool, { organizationIds: [orgId] })).id;
}

/** Pending chats of a fresh owner, so no other test's chats are claimed. */
async function pendingChats(n: number, ownerId?: string) {
  const o = ownerId ?? (await owner());
  const chats = [];
  for (let i = 0; i < n; i++)
    chats.push(await gen.chat(pool, { ownerId: o, organizationId: orgId }));
  return chats;
}

/**
 * Claims, oldest first, until `chatId` is claimed by `worker` (a new registered runner when
 * absent); older pending chats left by other tests are set aside (waiting). Returns its lease.
 */
async function claim(chatId: string, worker?: string) {
  worker ??= await registerRunner(pool);
  for (;;) {
    const rows = await claimPendingChats(pool, {
      worker_id: worker,
      free_slots: 1000,
      batch_size: 1,
    });
    const mine = rows.find((r) => r.id === chatId);
    const others = rows.filter((r) => r.id !== chatId).map((r) => r.id);
    if (others.length > 0) {
      await pool.query(
        "UPDATE chats SET status = 'waiting', worker_id = NULL WHERE id = ANY($1::uuid[])",
        [others],
      );
    }
    if (mine) return { worker, startedAt: mine.started_at! };
    if (rows.length === 0) throw new Error(`chat ${chatId} is not claimable`);
  }
}

/**
 * Claims for `worker` on `client` (inside its open transaction) until `chatId` is among the
 * claimed: older pending chats come first.
 */
async function claimInTransaction(client: PoolClient, worker: string, chatId: string) {
  for (;;) {
    const { rows } = await client.query<{ id: string }>(
      "SELECT id FROM chat_run_claim($1, 1000, 1000)",
      [worker],
    );
    if (rows.some((r) => r.id === chatId)) return;
    if (rows.length === 0) throw new Error(`chat ${chatId} is not claimable`);
  }
}

function finish(
  chatId: string,
  lease: { worker: string; startedAt: string },
  opts: { messages?: unknown[]; outcome?: string; error?: unknown; model?: string } = {},
) {
  return pool
    .query<{ model: string }>("SELECT last_model_config_id AS model FROM chats WHERE id = $1", [
      chatId,
    ])
    .then(({ rows }) =>
      finishChatRun(pool, {
        chat_id: chatId,
        worker_id: lease.worker,
        started_at: lease.startedAt,
        model_config_id: opts.model ?? rows[0]!.model,
        messages: opts.messages ?? [{ role: "assistant", content: text("done") }],
        outcome: opts.outcome ?? "completed",
        error: opts.error ?? null,
      }),
    )
    .then((r) => r!);
}

/** A recovery pass with the runner's defaults (stale after 60 s, tool results within 5 min). */
async function recover() {
  const pass = await runRecoveryPass(pool, { staleAfterMs: 60_000, toolResultsTimeoutMs: 300_000 });
  expect(pass.failed).toEqual([]);
  return pass.recovered;
}

const toolCall = (id: string, name = "lookup") => ({
  type: "tool-call",
  tool_call_id: id,
  tool_name: name,
  args: { q: 1 },
});

describe("claiming", () => {
  it("claims pending chats oldest first, leasing them to the runner and setting them running", async () => {
    await pool.query("UPDATE chats SET status = 'waiting' WHERE status = 'pending'");
    const [a, b] = await pendingChats(2);
    const worker = await registerRunner(pool);
    const rows = await claimPendingChats(pool, {
      worker_id: worker,
      free_slots: 1000,
      batch_size: 1,
    });
    expect(rows.map((r) => r.id)).toEqual([a!.id]);
    const s = await chatState(pool, a!.id);
    expect(s.status).toBe("running");
    expect(s.worker_id).toBe(worker);
    expect((await chatState(pool, b!.id)).status).toBe("pending");
    const next = await claimPendingChats(pool, {
      worker_id: worker,
      free_slots: 1000,
      batch_size: 10,
    });
    expect(next.map((r) => r.id)).toEqual([b!.id]);
    await finish(a!.id, { worker, startedAt: rows[0]!.started_at! });
    await finish(b!.id, { worker, startedAt: next[0]!.started_at! });
  });

  it("never claims an archived chat", async () => {
    const o = await owner();
    const [chat] = await pendingChats(1, o);
    await archiveChat(pool, { id: chat!.id, owner_id: o, api_key_id: null });
    await expect(claim(chat!.id)).rejects.toThrow(/not claimable/);
    expect((await chatState(pool, chat!.id)).status).toBe("pending");
  });

  it("skips a chat another transaction holds instead of waiting for it", async () => {
    const [chat] = await pendingChats(1);
    const holder = await pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM chats WHERE id = $1 FOR NO KEY UPDATE", [chat!.id]);
      const worker = await registerRunner(pool);
      const rows = await claimPendingChats(pool, {
        worker_id: worker,
        free_slots: 1000,
        batch_size: 1000,
      });
      expect(rows.map((r) => r.id)).not.toContain(chat!.id);
      await pool.query(
        "UPDATE chats SET status = 'waiting', worker_id = NULL WHERE worker_id = $1",
        [worker],
      );
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
  });

  it("never gives one chat to two of eight runners claiming at the same moment", async () => {
    const chats = await pendingChats(120);
    const ids = new Set(chats.map((c) => c.id));
    const runners = await Promise.all(
      Array.from({ length: 8 }, async () => ({
        worker: await registerRunner(pool),
        pool: newPool(dbUrl, 1),
      })),
    );
    const claimed = await Promise.all(
      runners.map(async (r) => {
        const mine: string[] = [];
        for (;;) {
          const rows = await claimPendingChats(r.pool, {
            worker_id: r.worker,
            free_slots: 1000,
            batch_size: 5,
          });
          if (rows.length === 0) return mine;
          mine.push(...rows.map((x) => x.id!));
        }
      }),
    );
    const all = claimed.flat().filter((id) => ids.has(id));
    expect(all).toHaveLength(chats.length);
    expect(new Set(all).size).toBe(chats.length);
    // Spread over the runners, not serialised through one.
    expect(claimed.filter((c) => c.length > 0).length).toBeGreaterThan(1);
    const { rows } = await pool.query<{ worker_id: string; n: number }>(
      "SELECT worker_id, count(*)::int AS n FROM chats WHERE id = ANY($1::uuid[]) GROUP BY worker_id",
      [[...ids]],
    );
    for (const r of rows) {
      const i = runners.findIndex((x) => x.worker === r.worker_id);
      expect(claimed[i]!.filter((id) => ids.has(id))).toHaveLength(r.n);
    }
  });
});

describe("heartbeats", () => {
  it("renews every lease of a runner with its one row, never writing the chats it holds", async () => {
    const [a, b] = await pendingChats(2);
    const mine = await claim(a!.id);
    const theirs = await claim(b!.id);
    const rowVersion = (id: string) =>
      pool
        .query<{ v: string }>(
          "SELECT xmin::text || '/' || ctid::text AS v FROM chats WHERE id = $1",
          [id],
        )
        .then((r) => r.rows[0]!.v);
    const before = await rowVersion(a!.id);
    const events = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM chat_events");
    await silenceRunner(pool, mine.worker, "30 seconds");
    await registerRunner(pool, { id: mine.worker });
    const { rows } = await pool.query(
      "SELECT heartbeat_at > now() - interval '1 second' AS fresh FROM chat_runners WHERE id = $1",
      [mine.worker],
    );
    expect(rows).toEqual([{ fresh: true }]);
    expect(await rowVersion(a!.id)).toBe(before);
    const eventsAfter = await pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM chat_events",
    );
    expect(eventsAfter.rows[0]!.n).toBe(events.rows[0]!.n);
    // The look at its turns reads only its own.
    const states = await listChatRunStatesByWorkerID(pool, {
      worker_id: mine.worker,
      chat_ids: [a!.id, b!.id],
    });
    expect(states).toEqual([
      { id: a!.id, status: "running", started_at: mine.startedAt, archived: false },
    ]);
    await finish(a!.id, mine);
    await finish(b!.id, theirs);
  });

  it("tells a runner that was presumed dead and reaped that it registered anew (another started_at)", async () => {
    const worker = await registerRunner(pool);
    const first = await upsertChatRunnerHeartbeat(pool, {
      id: worker,
      hostname: "test",
      pid: 1,
      capacity: 4,
      free_slots: 4,
      heartbeat_seconds: 15,
    });
    const again = await upsertChatRunnerHeartbeat(pool, {
      id: worker,
      hostname: "test",
      pid: 1,
      capacity: 4,
      free_slots: 3,
      heartbeat_seconds: 15,
    });
    expect(again.started_at).toBe(first.started_at);
    await pool.query("DELETE FROM chat_runners WHERE id = $1", [worker]);
    await new Promise((r) => setTimeout(r, 5));
    const reborn = await upsertChatRunnerHeartbeat(pool, {
      id: worker,
      hostname: "test",
      pid: 1,
      capacity: 4,
      free_slots: 4,
      heartbeat_seconds: 15,
    });
    expect(reborn.started_at).not.toBe(first.started_at);
  });
});

describe("ending a turn", () => {
  it("stores the turn's messages with usage, context limit and the cost from the model's pricing", async () => {
    const o = await owner();
    const model = await gen.modelConfig(pool, { inputPriceMicros: 2_000_000 });
    await pool.query(
      `UPDATE chat_model_configs SET output_price_micros = 10000000, cache_read_price_micros = 500000,
         context_limit = 4096 WHERE id = $1`,
      [model.id],
    );
    const chat = await gen.chat(pool, {
      ownerId: o,
      organizationId: orgId,
      model_config_id: model.id,
    });
    const lease = await claim(chat.id);
    const row = await finish(chat.id, lease, {
      model: model.id,
      messages: [
        {
          role: "assistant",
          content: text("answer"),
          input_tokens: 1000,
          output_tokens: 100,
          total_tokens: 1100,
          reasoning_tokens: 7,
          cache_creation_tokens: 0,
          cache_read_tokens: 400,
          runtime_ms: 850,
          provider_response_id: "resp_1",
        },
      ],
    });
    expect(row).toMatchObject({
      outcome: "completed",
      status: "waiting",
      title_source: "fallback",
    });
    const [, reply] = await messagesOf(pool, chat.id);
    // 600 uncached input at 2 $/M, 400 cached at 0.5 $/M, 100 output at 10 $/M, in micros.
    expect(reply).toMatchObject({
      role: "assistant",
      input_tokens: 1000,
      output_tokens: 100,
      total_tokens: 1100,
      total_cost_micros: 600 * 2 + 400 * 0.5 + 100 * 10,
      runtime_ms: 850,
      model_config_id: model.id,
      provider_response_id: "resp_1",
      context_limit: 4096,
    });
    expect((await chatState(pool, chat.id)).worker_id).toBeNull();
  });

  it("records no cost for a model without pricing", async () => {
    const [chat] = await pendingChats(1);
    const lease = await claim(chat!.id);
    await finish(chat!.id, lease, {
      messages: [{ role: "assistant", content: text("free"), input_tokens: 10, output_tokens: 5 }],
    });
    const [, reply] = await messagesOf(pool, chat!.id);
    expect(reply!.input_tokens).toBe(10);
    expect(reply!.total_cost_micros).toBeNull();
  });

  it("ends in requires_action with an action_required event listing the client's tool calls", async () => {
    const [chat] = await pendingChats(1);
    const lease = await claim(chat!.id);
    const row = await finish(chat!.id, lease, {
      outcome: "requires_action",
      messages: [{ role: "assistant", content: [toolCall("c1")] }],
    });
    expect(row.status).toBe("requires_action");
    const { rows } = await pool.query(
      "SELECT payload FROM chat_events WHERE chat_id = $1 AND kind = 'action_required'",
      [chat!.id],
    );
    expect(rows[0].payload.tool_calls).toEqual([
      { tool_call_id: "c1", tool_name: "lookup", args: { q: 1 } },
    ]);
  });

  it("ends in error with the ChatError and clears the previous summary", async () => {
    const [chat] = await pendingChats(1);
    await pool.query("UPDATE chats SET last_turn_summary = 'old' WHERE id = $1", [chat!.id]);
    const lease = await claim(chat!.id);
    const error = {
      message: "m",
      kind: "rate_limit",
      provider: "local",
      retryable: true,
      status_code: 429,
      detail: null,
    };
    const row = await finish(chat!.id, lease, { outcome: "error", messages: [], error });
    expect(row.status).toBe("error");
    const s = await chatState(pool, chat!.id);
    expect(s.last_error).toEqual(error);
    expect(s.last_turn_summary).toBeNull();
  });

  it("admits the head of the queue when the turn ends, with the model it was sent with", async () => {
    const o = await owner();
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId });
    const other = await gen.modelConfig(pool);
    const lease = await claim(chat.id);
    const sent = await sendChatMessage(pool, {
      chat_id: chat.id,
      owner_id: o,
      content: text("next"),
      model_config_id: other.id,
      busy_behavior: "queue",
      api_key_id: null,
    });
    expect(sent!.queued_message_id).not.toBeNull();
    const row = await finish(chat.id, lease);
    expect(row).toMatchObject({ outcome: "completed", status: "pending" });
    const msgs = await messagesOf(pool, chat.id);
    expect(msgs.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", "hello"],
      ["assistant", "done"],
      ["user", "next"],
    ]);
    expect(msgs[2]!.model_config_id).toBe(other.id);
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM chat_queued_messages WHERE chat_id = $1",
      [chat.id],
    );
    expect(rows[0].n).toBe(0);
  });

  it("writes nothing when the lease was lost to recovery and a new claim", async () => {
    const [chat] = await pendingChats(1);
    const old = await claim(chat!.id);
    await silenceRunner(pool, old.worker, "1 hour");
    const recovered = await recover();
    expect(recovered).toContainEqual({ chat_id: chat!.id, action: "stale_lease" });
    expect((await chatState(pool, chat!.id)).status).toBe("pending");
    const current = await claim(chat!.id);
    const row = await finish(chat!.id, old, {
      messages: [{ role: "assistant", content: text("stale") }],
    });
    expect(row.outcome).toBe("lost");
    expect((await chatState(pool, chat!.id)).worker_id).toBe(current.worker);
    expect((await messagesOf(pool, chat!.id)).map((m) => m.role)).toEqual(["user"]);
    // The same runner claiming again (another started_at) does not revive the old lease.
    await finish(chat!.id, current);
  });

  it("keeps an interrupted turn's partial output, answers its unanswered tool calls and admits the queue after it", async () => {
    const o = await owner();
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId });
    const lease = await claim(chat.id);
    await interruptChat(pool, { chat_id: chat.id, owner_id: o });
    // The runner still holds the chat: a send now is queued behind the turn's output.
    const sent = await sendChatMessage(pool, {
      chat_id: chat.id,
      owner_id: o,
      content: text("after"),
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id: null,
    });
    expect(sent!.queued_message_id).not.toBeNull();
    const row = await finish(chat.id, lease, {
      messages: [{ role: "assistant", content: [...text("partial"), toolCall("c9")] }],
    });
    expect(row).toMatchObject({ outcome: "interrupted", status: "pending" });
    const msgs = await messagesOf(pool, chat.id);
    expect(msgs.map((m) => m.role)).toEqual(["user", "assistant", "tool", "user"]);
    expect(textOf(msgs[1]!)).toBe("partial");
    expect(msgs[2]!.content).toEqual([
      {
        type: "tool-result",
        tool_call_id: "c9",
        tool_name: "lookup",
        result: { error: "interrupted" },
        is_error: true,
      },
    ]);
    expect(textOf(msgs[3]!)).toBe("after");
  });

  it("moves a promoted message to the head while an interrupted turn is saved, not in front of its output", async () => {
    const o = await owner();
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId });
    const lease = await claim(chat.id);
    const send = (s: string) =>
      sendChatMessage(pool, {
        chat_id: chat.id,
        owner_id: o,
        content: text(s),
        model_config_id: null,
        busy_behavior: "queue",
        api_key_id: null,
      });
    await send("first");
    const second = await send("second");
    await interruptChat(pool, { chat_id: chat.id, owner_id: o });
    const promoted = await promoteChatQueuedMessage(pool, {
      chat_id: chat.id,
      owner_id: o,
      queued_id: second!.queued_message_id!,
    });
    expect(promoted!.message_id).toBeNull();
    await finish(chat.id, lease, { messages: [{ role: "assistant", content: text("partial") }] });
    const msgs = await messagesOf(pool, chat.id);
    expect(msgs.map(textOf)).toEqual(["hello", "partial", "second"]);
  });

  it("writes nothing for a turn whose message was edited meanwhile (the edit ended its lease), and the edit's turn runs next", async () => {
    const o = await owner();
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId });
    const lease = await claim(chat.id);
    const [first] = await messagesOf(pool, chat.id);
    await editChatMessage(pool, {
      chat_id: chat.id,
      owner_id: o,
      message_id: first!.id,
      content: text("edited"),
      api_key_id: null,
      model_config_id: null,
    });
    expect(await chatState(pool, chat.id)).toMatchObject({ status: "pending", worker_id: null });
    const row = await finish(chat.id, lease, {
      messages: [{ role: "assistant", content: text("obsolete") }],
    });
    expect(row.outcome).toBe("lost");
    expect((await messagesOf(pool, chat.id)).map(textOf)).toEqual(["edited"]);
    const next = await claim(chat.id);
    expect((await finish(chat.id, next)).outcome).toBe("completed");
  });

  it("never files a superseded turn's output under the edited question, even when an interrupt follows the edit", async () => {
    const o = await owner();
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId });
    const lease = await claim(chat.id);
    const [first] = await messagesOf(pool, chat.id);
    const listener = await listen(dbUrl, "chat_runner");
    try {
      await editChatMessage(pool, {
        chat_id: chat.id,
        owner_id: o,
        message_id: first!.id,
        content: text("edited"),
        api_key_id: null,
        model_config_id: null,
      });
      // The old run is told to stop at once, not at its next heartbeat.
      await listener.next((n) => n.payload === chat.id);
    } finally {
      await listener.close();
    }
    await interruptChat(pool, { chat_id: chat.id, owner_id: o });
    const row = await finish(chat.id, lease, {
      messages: [{ role: "assistant", content: text("answer to the old question") }],
    });
    expect(row.outcome).toBe("lost");
    const msgs = await messagesOf(pool, chat.id);
    expect(msgs.map(textOf)).toEqual(["edited"]);
    expect(await chatState(pool, chat.id)).toMatchObject({ status: "waiting", worker_id: null });
  });

  it("ends the turn of a chat archived meanwhile without output", async () => {
    const o = await owner();
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId });
    const lease = await claim(chat.id);
    await pool.query("SELECT chat_archive($1, true)", [chat.id]);
    const row = await finish(chat.id, lease);
    expect(row).toMatchObject({ outcome: "discarded", status: "waiting" });
    expect((await messagesOf(pool, chat.id)).map((m) => m.role)).toEqual(["user"]);
  });

  it("stores a step that did not end the turn only while the turn still runs", async () => {
    const o = await owner();
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId });
    const lease = await claim(chat.id);
    const step = (s: string) =>
      saveChatRunToolStep(pool, {
        chat_id: chat.id,
        worker_id: lease.worker,
        started_at: lease.startedAt,
        model_config_id: chat.last_model_config_id,
        messages: [{ role: "assistant", content: text(s) }],
        plan_file: null,
        tool_calls: [],
      });
    expect((await step("one"))!.saved).toBe(true);
    await interruptChat(pool, { chat_id: chat.id, owner_id: o });
    expect((await step("two"))!.saved).toBe(false);
    expect((await messagesOf(pool, chat.id)).map(textOf)).toEqual(["hello", "one"]);
  });
});

describe("stop signals", () => {
  it("notifies chat_runner when a held chat is interrupted, edited or archived, and not for the holder's own transitions", async () => {
    const listener = await listen(dbUrl, "chat_runner");
    try {
      const o = await owner();
      const [a, b, c, d] = await pendingChats(4, o);
      const la = await claim(a!.id);
      await interruptChat(pool, { chat_id: a!.id, owner_id: o });
      expect((await listener.next((n) => n.payload === a!.id)).payload).toBe(a!.id);
      await finish(a!.id, la);

      const lb = await claim(b!.id);
      const [m] = await messagesOf(pool, b!.id);
      await editChatMessage(pool, {
        chat_id: b!.id,
        owner_id: o,
        message_id: m!.id,
        content: text("e"),
        api_key_id: null,
        model_config_id: null,
      });
      await listener.next((n) => n.payload === b!.id);
      await finish(b!.id, lb);

      const lc = await claim(c!.id);
      await pool.query("SELECT chat_archive($1, true)", [c!.id]);
      await listener.next((n) => n.payload === c!.id);
      await finish(c!.id, lc);

      const ld = await claim(d!.id);
      await registerRunner(pool, { id: ld.worker });
      await finish(d!.id, ld);
      // A marker after d's own transitions: d's notification would have come before it.
      await pool.query("SELECT pg_notify('chat_runner', 'marker')");
      await listener.next((n) => n.payload === "marker");
      expect(listener.received.filter((n) => n.payload === d!.id)).toEqual([]);
    } finally {
      await listener.close();
    }
  });
});

describe("wake-ups", () => {
  it("wakes one runner with a free slot, addressed by its id, in either events mode; none when all are busy or silent", async () => {
    // Only this test's runners have free slots.
    await pool.query("UPDATE chat_runners SET free_slots = 0");
    const a = await registerRunner(pool, { freeSlots: 2 });
    const b = await registerRunner(pool, { freeSlots: 2 });
    const listener = await listen(dbUrl, "chat_pending");
    const marker = async () => {
      const m = `marker ${randomUUID()}`;
      await pool.query("SELECT pg_notify('chat_pending', $1)", [m]);
      await listener.next((n) => n.payload === m);
      const got = listener.received.splice(0).map((n) => n.payload);
      return got.slice(0, -1);
    };
    try {
      const o = await owner();
      // A transaction that makes three chats pending: each chooses one runner; identical
      // payloads collapse, so one or two notifications, each naming a runner.
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        for (let i = 0; i < 3; i++) await gen.chat(client, { ownerId: o, organizationId: orgId });
        await client.query("COMMIT");
      } finally {
        client.release();
      }
      const first = await marker();
      expect(first.length).toBeGreaterThanOrEqual(1);
      expect(first.length).toBeLessThanOrEqual(2);
      for (const p of first) expect([a, b]).toContain(p);
      // A chat that stays pending, or is not claimable (archived), wakes nobody.
      const [idle] = await pendingChats(1, o);
      await marker();
      await pool.query("UPDATE chats SET title = 'x' WHERE id = $1", [idle!.id]);
      expect(await marker()).toEqual([]);
      // A runner silent for three heartbeat intervals is not chosen; batched sessions wake too.
      await silenceRunner(pool, a, "46 seconds");
      const batched = newPool(dbUrl, 1, "batched");
      for (let i = 0; i < 4; i++) await gen.chat(batched, { ownerId: o, organizationId: orgId });
      expect(await marker()).toEqual([b, b, b, b]);
      // The session's own runner (pgchatd.runner_id) is woken by its process: no NOTIFY.
      const own = await pool.connect();
      try {
        await own.query("SELECT set_config('pgchatd.runner_id', $1, false)", [b]);
        await gen.chat(own, { ownerId: o, organizationId: orgId });
        await own.query("RESET pgchatd.runner_id");
      } finally {
        own.release();
      }
      expect(await marker()).toEqual([]);
      // Every runner busy: nobody is woken (each claims as its turns end, and polls).
      await pool.query("UPDATE chat_runners SET free_slots = 0 WHERE id = $1", [b]);
      await gen.chat(pool, { ownerId: o, organizationId: orgId });
      expect(await marker()).toEqual([]);
      // No runner registered at all (only runners of the previous release): every runner.
      const bare = await pool.connect();
      try {
        await bare.query("BEGIN");
        await bare.query(
          "CREATE TEMP TABLE kept_runners ON COMMIT DROP AS SELECT * FROM chat_runners",
        );
        await bare.query("DELETE FROM chat_runners");
        await gen.chat(bare, { ownerId: o, organizationId: orgId });
        await bare.query("INSERT INTO chat_runners SELECT * FROM kept_runners");
        await bare.query("COMMIT");
      } finally {
        bare.release();
      }
      expect(await marker()).toEqual([""]);
    } finally {
      await listener.close();
    }
  });
});

describe("claims and heartbeats on two sessions", () => {
  it("a heartbeat and the look at its turns never wait for a chat another transaction holds", async () => {
    const worker = await registerRunner(pool);
    const chats = await pendingChats(3);
    for (const c of chats) await claim(c.id, worker);
    const held = chats[1]!.id;
    const holder = await session(pool);
    try {
      await holder.client.query("BEGIN");
      await holder.client.query("SELECT 1 FROM chats WHERE id = $1 FOR NO KEY UPDATE", [held]);
      // Return at once, while the row is still held.
      await registerRunner(pool, { id: worker });
      const rows = await listChatRunStatesByWorkerID(pool, {
        worker_id: worker,
        chat_ids: chats.map((c) => c.id),
      });
      expect(rows.map((r) => [r.id, r.status]).sort()).toEqual(
        chats.map((c) => [c.id, "running"]).sort(),
      );
      await holder.client.query("COMMIT");
    } finally {
      holder.release();
    }
    await releaseChatRunsByWorkerID(pool, { worker_id: worker });
  });

  it("never reaps the row of a runner whose claim is leasing it a chat: the reaper waits and sees it alive", async () => {
    const worker = await registerRunner(pool);
    await silenceRunner(pool, worker);
    const [chat] = await pendingChats(1);
    const claimer = await session(pool);
    const reaper = await session(pool);
    try {
      await claimer.client.query("BEGIN");
      await claimInTransaction(claimer.client, worker, chat!.id);
      const reaping = outcome(
        reaper.client.query(
          `DELETE FROM chat_runners r WHERE r.heartbeat_at < now() - interval '60 seconds'
             AND NOT EXISTS (SELECT 1 FROM chats c WHERE c.worker_id = r.id) RETURNING r.id`,
        ),
      );
      await blocked(pool, reaper.pid);
      await claimer.client.query("COMMIT");
      const reaped = await reaping;
      expect(reaped.ok && reaped.value.rows.map((r) => r.id)).not.toContain(worker);
      const { rows } = await pool.query("SELECT id FROM chat_runners WHERE id = $1", [worker]);
      expect(rows).toHaveLength(1);
      expect((await chatState(pool, chat!.id)).worker_id).toBe(worker);
    } finally {
      await claimer.client.query("ROLLBACK").catch(() => {});
      claimer.release();
      reaper.release();
    }
    await releaseChatRunsByWorkerID(pool, { worker_id: worker });
  });

  it("claims nothing for a runner whose row a concurrent reaper deleted first, and the chat stays pending for another", async () => {
    const worker = await registerRunner(pool);
    await silenceRunner(pool, worker);
    const [chat] = await pendingChats(1);
    const reaper = await session(pool);
    const claimer = await session(pool);
    try {
      await reaper.client.query("BEGIN");
      const { rows: gone } = await reaper.client.query(
        "DELETE FROM chat_runners WHERE id = $1 RETURNING id",
        [worker],
      );
      expect(gone).toHaveLength(1);
      const claiming = outcome(
        claimer.client.query<{ id: string }>("SELECT id FROM chat_run_claim($1, 1000, 1000)", [
          worker,
        ]),
      );
      await blocked(pool, claimer.pid);
      await reaper.client.query("COMMIT");
      const claimed = await claiming;
      expect(claimed.ok && claimed.value.rows).toEqual([]);
      expect((await chatState(pool, chat!.id)).status).toBe("pending");
    } finally {
      reaper.release();
      claimer.release();
    }
    await claim(chat!.id);
  });
});

describe("giving back orphaned leases", () => {
  /** chat_run_release_orphans through its query, keeping `kept` (the leases of running turns). */
  const releaseOrphans = (worker: string, kept: { chatId: string; startedAt: string }[] = []) =>
    releaseOrphanedChatRunsByWorkerID(pool, {
      worker_id: worker,
      running: kept.map((l) => l.chatId),
      running_started_at: kept.map((l) => l.startedAt),
    }).then((r) => r.released);

  it("keeps the lease a running turn holds and gives back a newer lease of the same chat that no turn runs", async () => {
    const [chat] = await pendingChats(1);
    const lease = await claim(chat!.id);
    expect(
      await releaseOrphans(lease.worker, [{ chatId: chat!.id, startedAt: lease.startedAt }]),
    ).toBe(0);
    expect((await chatState(pool, chat!.id)).status).toBe("running");
    // The turn the runner still has is an older run of the chat (an edit made it pending and a
    // claim whose answer was lost leased it again): the lease is not that run's.
    const olderRun = new Date(Date.parse(lease.startedAt) - 1000).toISOString();
    expect(await releaseOrphans(lease.worker, [{ chatId: chat!.id, startedAt: olderRun }])).toBe(1);
    const state = await chatState(pool, chat!.id);
    expect(state.status).toBe("pending");
    expect(state.worker_id).toBeNull();
  });

  it("skips a chat a request holds and counts it as skipped, so the runner calls again, instead of waiting with its row locked", async () => {
    const [chat] = await pendingChats(1);
    const lease = await claim(chat!.id);
    const holder = await session(pool);
    try {
      await holder.client.query("BEGIN");
      // What a stream marking the chat read, or a send queueing behind its turn, holds.
      await holder.client.query("SELECT 1 FROM chats WHERE id = $1 FOR NO KEY UPDATE", [chat!.id]);
      const first = await releaseOrphanedChatRunsByWorkerID(pool, {
        worker_id: lease.worker,
        running: [],
        running_started_at: [],
      });
      expect(first).toEqual({ released: 0, skipped: 1 });
      // The runner's row is free again: its heartbeat is not held up by the request.
      const { rows } = await pool.query(
        "SELECT id FROM chat_runners WHERE id = $1 FOR NO KEY UPDATE NOWAIT",
        [lease.worker],
      );
      expect(rows).toHaveLength(1);
      await holder.client.query("COMMIT");
    } finally {
      await holder.client.query("ROLLBACK").catch(() => {});
      holder.release();
    }
    const second = await releaseOrphanedChatRunsByWorkerID(pool, {
      worker_id: lease.worker,
      running: [],
      running_started_at: [],
    });
    expect(second).toEqual({ released: 1, skipped: 0 });
    expect((await chatState(pool, chat!.id)).status).toBe("pending");
  });

  it("waits for a claim of the same runner in flight and gives back what it leased, which no turn runs yet", async () => {
    const worker = await registerRunner(pool);
    const [chat] = await pendingChats(1);
    const claimer = await session(pool);
    const releaser = await session(pool);
    try {
      await claimer.client.query("BEGIN");
      await claimInTransaction(claimer.client, worker, chat!.id);
      const releasing = outcome(
        releaseOrphanedChatRunsByWorkerID(releaser.client, {
          worker_id: worker,
          running: [],
          running_started_at: [],
        }),
      );
      await blocked(pool, releaser.pid);
      await claimer.client.query("COMMIT");
      const released = await releasing;
      expect(released.ok && released.value.released).toBeGreaterThanOrEqual(1);
      const state = await chatState(pool, chat!.id);
      expect(state.status).toBe("pending");
      expect(state.worker_id).toBeNull();
    } finally {
      await claimer.client.query("ROLLBACK").catch(() => {});
      claimer.release();
      releaser.release();
    }
    await pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat!.id]);
  });

  it("bounds its own lock waits without changing the caller's lock_timeout", async () => {
    const worker = await registerRunner(pool);
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("SET LOCAL lock_timeout = '1s'");
      await client.query("SELECT * FROM chat_run_release_orphans($1, '{}', '{}')", [worker]);
      const { rows } = await client.query("SHOW lock_timeout");
      expect(rows[0].lock_timeout).toBe("1s");
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  });

  it("refuses running leases given as arrays of two lengths or with a NULL, which would release nothing (22023)", async () => {
    const worker = await registerRunner(pool);
    const at = new Date().toISOString();
    for (const [running, startedAt] of [
      [[randomUUID()], []],
      [[null], [at]],
      [[randomUUID()], [null]],
      [[[randomUUID()]], [[at]]],
    ] as const) {
      const err = await sqlError(() =>
        pool.query("SELECT chat_run_release_orphans($1, $2::uuid[], $3::timestamptz[])", [
          worker,
          running,
          startedAt,
        ]),
      );
      expect(err.code).toBe("22023");
    }
  });
});

describe("recovery", () => {
  it("returns a chat whose runner stopped heartbeating to pending, then removes that runner's row", async () => {
    const [chat] = await pendingChats(1);
    const lease = await claim(chat!.id);
    await silenceRunner(pool, lease.worker);
    const pass = await runRecoveryPass(pool, {
      staleAfterMs: 60_000,
      toolResultsTimeoutMs: 300_000,
    });
    const rows = pass.recovered;
    expect(pass.reaped).toContain(lease.worker);
    expect(rows).toContainEqual({ chat_id: chat!.id, action: "stale_lease" });
    const s = await chatState(pool, chat!.id);
    expect(s.status).toBe("pending");
    expect(s.worker_id).toBeNull();
  });

  it("leaves a chat whose heartbeat is fresh alone", async () => {
    const [chat] = await pendingChats(1);
    const lease = await claim(chat!.id);
    const rows = await recover();
    expect(rows.map((r) => r.chat_id)).not.toContain(chat!.id);
    await finish(chat!.id, lease);
  });

  it("recovers the leases of a previous release's runner (no row: its chats' own heartbeat_at) only once they are stale", async () => {
    const [fresh, stale] = await pendingChats(2);
    const legacy = randomUUID();
    await pool.query(
      `UPDATE chats SET status = 'running', worker_id = $1, started_at = now(),
         heartbeat_at = CASE WHEN id = $2 THEN now() ELSE now() - interval '2 minutes' END
       WHERE id = ANY($3::uuid[])`,
      [legacy, fresh!.id, [fresh!.id, stale!.id]],
    );
    const rows = await recover();
    expect(rows).toContainEqual({ chat_id: stale!.id, action: "stale_lease" });
    expect(rows.map((r) => r.chat_id)).not.toContain(fresh!.id);
    expect(await chatState(pool, fresh!.id)).toMatchObject({
      status: "running",
      worker_id: legacy,
    });
    await releaseChatRunsByWorkerID(pool, { worker_id: legacy });
  });

  it("lists and recovers the chats of a runner that has no row and renews nothing", async () => {
    // A runner's row deleted by hand while it held chats (or a rollback to the previous release
    // after it crashed): nothing renews these leases, and nothing else would list them.
    const [a, b] = await pendingChats(2);
    const worker = await registerRunner(pool);
    await claim(a!.id, worker);
    await claim(b!.id, worker);
    await pool.query("DELETE FROM chat_runners WHERE id = $1", [worker]);
    const rows = await recover();
    expect(rows).toContainEqual({ chat_id: a!.id, action: "stale_lease" });
    expect(rows).toContainEqual({ chat_id: b!.id, action: "stale_lease" });
    expect((await chatState(pool, a!.id)).status).toBe("pending");
  });

  it("fails a chat left in requires_action past the timeout with error tool results and a timeout error", async () => {
    const [chat] = await pendingChats(1);
    const lease = await claim(chat!.id);
    await finish(chat!.id, lease, {
      outcome: "requires_action",
      messages: [{ role: "assistant", content: [toolCall("t1")] }],
    });
    const fresh = await recover();
    expect(fresh.map((r) => r.chat_id)).not.toContain(chat!.id);
    await pool.query(
      "UPDATE chats SET status_changed_at = now() - interval '6 minutes' WHERE id = $1",
      [chat!.id],
    );
    const rows = await recover();
    expect(rows).toContainEqual({ chat_id: chat!.id, action: "tool_timeout" });
    const s = await chatState(pool, chat!.id);
    expect(s.status).toBe("error");
    expect(s.last_error!.kind).toBe("timeout");
    const msgs = await messagesOf(pool, chat!.id);
    expect(msgs.at(-1)!.content).toEqual([
      {
        type: "tool-result",
        tool_call_id: "t1",
        tool_name: "lookup",
        result: { error: "no tool result arrived in time" },
        is_error: true,
      },
    ]);
  });

  it("admits the head of a waiting chat's queue that nobody admitted", async () => {
    const o = await owner();
    const [chat] = await pendingChats(1, o);
    await pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat!.id]);
    await pool.query(
      "INSERT INTO chat_queued_messages (chat_id, content, position) VALUES ($1, $2::jsonb, 1)",
      [chat!.id, JSON.stringify(text("stuck"))],
    );
    const rows = await recover();
    expect(rows).toContainEqual({ chat_id: chat!.id, action: "queue" });
    expect((await chatState(pool, chat!.id)).status).toBe("pending");
    expect((await messagesOf(pool, chat!.id)).map(textOf)).toEqual(["hello", "stuck"]);
  });

  /** A chat left in requires_action (one pending call `t1`) since long before the timeout. */
  async function expiredToolWait(ownerId?: string) {
    const [chat] = await pendingChats(1, ownerId);
    const lease = await claim(chat!.id);
    await finish(chat!.id, lease, {
      outcome: "requires_action",
      messages: [{ role: "assistant", content: [toolCall("t1")] }],
    });
    await pool.query(
      "UPDATE chats SET status_changed_at = now() - interval '6 minutes' WHERE id = $1",
      [chat!.id],
    );
    return chat!;
  }

  it("skips an archived chat left in requires_action and still recovers every other chat", async () => {
    const archived = await expiredToolWait();
    await pool.query("SELECT chat_archive($1, true)", [archived.id]);
    const expired = await expiredToolWait();
    const [stale] = await pendingChats(1);
    await silenceRunner(pool, (await claim(stale!.id)).worker);
    const rows = await recover();
    expect(rows).toContainEqual({ chat_id: expired.id, action: "tool_timeout" });
    expect(rows).toContainEqual({ chat_id: stale!.id, action: "stale_lease" });
    expect(rows.map((r) => r.chat_id)).not.toContain(archived.id);
    expect(await chatState(pool, archived.id)).toMatchObject({ status: "requires_action" });
    // Unarchived, the timeout applies to it like to any other chat.
    await pool.query("SELECT chat_archive($1, false)", [archived.id]);
    expect(await recover()).toContainEqual({ chat_id: archived.id, action: "tool_timeout" });
    expect((await chatState(pool, archived.id)).status).toBe("error");
  });

  it("ends an archived chat whose runner died waiting, as an archive mid-turn leaves it, not pending to run again", async () => {
    const [chat] = await pendingChats(1);
    const lease = await claim(chat!.id);
    await pool.query("SELECT chat_archive($1, true)", [chat!.id]);
    await silenceRunner(pool, lease.worker);
    expect(await recover()).toContainEqual({ chat_id: chat!.id, action: "stale_lease" });
    expect(await chatState(pool, chat!.id)).toMatchObject({ status: "waiting", worker_id: null });
    await pool.query("SELECT chat_archive($1, false)", [chat!.id]);
    const { rows } = await pool.query("SELECT 1 FROM chats WHERE id = $1 AND status = 'pending'", [
      chat!.id,
    ]);
    expect(rows).toEqual([]);
  });

  it("goes on with the other chats when one chat's recovery fails, and reports that one", async () => {
    // Two bad chats, the oldest, ahead of a good one: with batches of one, they come first in
    // every listing unless the pass skips what failed.
    const poisoned = [await expiredToolWait(), await expiredToolWait()];
    const expired = await expiredToolWait();
    // Any failure will do: here their error tool results cannot be stored.
    await pool.query(`
      CREATE FUNCTION test_refuse_message() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'XX999'; END $$`);
    await pool.query(
      `CREATE TRIGGER chat_messages_000_test_refuse BEFORE INSERT ON chat_messages
       FOR EACH ROW WHEN (NEW.chat_id IN ('${poisoned[0]!.id}', '${poisoned[1]!.id}'))
       EXECUTE FUNCTION test_refuse_message()`,
    );
    try {
      const pass = await runRecoveryPass(pool, {
        staleAfterMs: 60_000,
        toolResultsTimeoutMs: 300_000,
        batchSize: 1,
      });
      expect(pass.recovered).toContainEqual({ chat_id: expired.id, action: "tool_timeout" });
      expect(pass.failed.map((f) => f.chat_id).sort()).toEqual(poisoned.map((c) => c.id).sort());
      expect(pass.failed.map((f) => (f.err as { code: string }).code)).toEqual(["XX999", "XX999"]);
      // Their transactions rolled back alone: the chats are as they were, for the next pass.
      for (const c of poisoned)
        expect((await chatState(pool, c.id)).status).toBe("requires_action");
    } finally {
      await pool.query("DROP TRIGGER chat_messages_000_test_refuse ON chat_messages");
      await pool.query("DROP FUNCTION test_refuse_message()");
    }
    const later = await recover();
    for (const c of poisoned)
      expect(later).toContainEqual({ chat_id: c.id, action: "tool_timeout" });
  });

  it("interrupts an archived chat left in requires_action, and its next turn starts with the calls answered", async () => {
    const o = await owner();
    const chat = await expiredToolWait(o);
    await pool.query("SELECT chat_archive($1, true)", [chat.id]);
    await interruptChat(pool, { chat_id: chat.id, owner_id: o });
    expect(await chatState(pool, chat.id)).toMatchObject({ status: "waiting" });
    // Read-only while archived: nothing was written.
    expect((await messagesOf(pool, chat.id)).map((m) => m.role)).toEqual(["user", "assistant"]);
    await pool.query("SELECT chat_archive($1, false)", [chat.id]);
    await sendChatMessage(pool, {
      chat_id: chat.id,
      owner_id: o,
      content: text("next"),
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id: null,
    });
    const msgs = await messagesOf(pool, chat.id);
    expect(msgs.map((m) => m.role)).toEqual(["user", "assistant", "tool", "user"]);
    expect(msgs[2]!.content).toEqual([
      {
        type: "tool-result",
        tool_call_id: "t1",
        tool_name: "lookup",
        result: { error: "interrupted" },
        is_error: true,
      },
    ]);
  });

  it("tells the holder of a stale lease that recovery released it, and nobody about a runner's own shutdown", async () => {
    const [stale, own] = await pendingChats(2);
    const lease = await claim(stale!.id);
    const worker = await registerRunner(pool);
    await claim(own!.id, worker);
    await silenceRunner(pool, lease.worker);
    const listener = await listen(dbUrl, "chat_runner");
    try {
      expect(await recover()).toContainEqual({ chat_id: stale!.id, action: "stale_lease" });
      await listener.next((n) => n.payload === stale!.id);
      await releaseChatRunsByWorkerID(pool, { worker_id: worker });
      // Notifications arrive in commit order: none about the released chat came before this one.
      await pool.query("SELECT pg_notify('chat_runner', 'marker')");
      await listener.next((n) => n.payload === "marker");
      expect(listener.received.map((n) => n.payload)).not.toContain(own!.id);
    } finally {
      await listener.close();
    }
  });

  it("returns every chat of a stopping runner to pending in one call", async () => {
    const chats = await pendingChats(3);
    const worker = await registerRunner(pool);
    for (const c of chats) await claim(c.id, worker);
    const released = await releaseChatRunsByWorkerID(pool, { worker_id: worker });
    expect(released!.released).toBe(3);
    for (const c of chats) expect((await chatState(pool, c.id)).status).toBe("pending");
  });
});

describe("summaries and titles", () => {
  it("writes a turn summary only while updated_at is the one read at the turn's end, blank as NULL, leaving updated_at", async () => {
    const o = await owner();
    const [chat] = await pendingChats(1, o);
    const lease = await claim(chat!.id);
    const ended = await finish(chat!.id, lease);
    const at = ended.updated_at!;
    expect(
      await updateChatLastTurnSummaryByID(pool, {
        id: chat!.id,
        summary: " did it ",
        expected_updated_at: at,
      }),
    ).toBe(1);
    let s = await chatState(pool, chat!.id);
    expect(s.last_turn_summary).toBe("did it");
    expect(s.updated_at).toBe(at);
    expect(
      await updateChatLastTurnSummaryByID(pool, {
        id: chat!.id,
        summary: "   ",
        expected_updated_at: at,
      }),
    ).toBe(1);
    expect((await chatState(pool, chat!.id)).last_turn_summary).toBeNull();
    // A newer turn started: the older summary must not land.
    await sendChatMessage(pool, {
      chat_id: chat!.id,
      owner_id: o,
      content: text("more"),
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id: null,
    });
    expect(
      await updateChatLastTurnSummaryByID(pool, {
        id: chat!.id,
        summary: "stale",
        expected_updated_at: at,
      }),
    ).toBe(0);
    s = await chatState(pool, chat!.id);
    expect(s.last_turn_summary).toBeNull();
  });

  it("never replaces a title the user set with a generated one, unless the user asks to regenerate", async () => {
    const o = await owner();
    const [chat] = await pendingChats(1, o);
    const patch = (title: string) => renameChatByID(pool, { id: chat!.id, owner_id: o, title });
    const fromModel = (title: string, regenerated: boolean) =>
      updateChatTitleFromModelByID(pool, { id: chat!.id, title, regenerated });
    expect(await fromModel("generated", false)).toBe(1);
    expect((await chatState(pool, chat!.id)).title).toBe("generated");
    // Only once: a generated title is not the fallback any more.
    expect(await fromModel("again", false)).toBe(0);
    await patch("mine");
    expect(await fromModel("model", false)).toBe(0);
    expect((await chatState(pool, chat!.id)).title).toBe("mine");
    expect(await fromModel("asked for", true)).toBe(1);
    expect((await chatState(pool, chat!.id)).title).toBe("asked for");
  });

  it("lets one title regeneration of a chat run at a time, and only for its owner", async () => {
    const o = await owner();
    const [chat] = await pendingChats(1, o);
    const begin = (ownerId: string, expire = 120) =>
      beginChatTitleRegeneration(pool, {
        chat_id: chat!.id,
        owner_id: ownerId,
        expire_after_seconds: expire,
      });
    const stranger = await owner();
    expect((await sqlError(() => begin(stranger))).code).toBe("PC404");
    await begin(o);
    expect((await sqlError(() => begin(o))).code).toBe("PC409");
    // One left behind by a crashed server expires.
    await pool.query(
      "UPDATE chat_title_regenerations SET started_at = now() - interval '1 hour' WHERE chat_id = $1",
      [chat!.id],
    );
    await begin(o);
    await deleteChatTitleRegeneration(pool, { chat_id: chat!.id });
    await begin(o);
    await deleteChatTitleRegeneration(pool, { chat_id: chat!.id });
  });
});
