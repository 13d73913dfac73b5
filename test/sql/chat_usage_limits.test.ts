import { randomUUID } from "node:crypto";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Pool, Queryable } from "../../src/db/index.ts";
import { editChatMessage, sendChatMessage } from "../../src/generated/chat_messages.ts";
import { finishChatRun } from "../../src/generated/chat_runs.ts";
import {
  getChatUsageLimitStatus,
  setChatUsageLimitConfig,
  setChatUsageLimitGroupOverride,
  setChatUsageLimitUserOverride,
} from "../../src/generated/chat_usage_limits.ts";
import { archiveChat } from "../../src/generated/chats.ts";
import { gen } from "../fixtures/index.ts";
import { newPool, testDb } from "../setup/db.ts";
import { blocked, outcome, session } from "../setup/sessions.ts";
import { sqlError } from "../setup/sql.ts";

/*
 * Spend limits where they live (sql/functions/chat_usage_limits.sql, the rollup trigger in
 * sql/triggers/chat_messages.sql): resolution, periods on a controlled clock, the check inside
 * create and send, and the check racing a turn that stores its cost, on real sessions.
 * test/server/chat_usage_limits.test.ts checks the routes.
 */

let pool: Pool;
/** Room for 20 senders and a turn, each on a session of its own. */
let wide: Pool;
let orgId: string;
let adminId: string;

beforeAll(async () => {
  const db = await testDb();
  pool = db.pool;
  wide = newPool(db.url, 25);
  orgId = (await gen.organization(pool)).id;
  adminId = (await gen.user(pool, { owner: true, organizationIds: [orgId] })).id;
});

async function setLimit(limit: number | null, period: "day" | "week" | "month" = "month") {
  await setChatUsageLimitConfig(pool, { actor_id: adminId, spend_limit_micros: limit, period });
}

beforeEach(() => setLimit(null));

async function member(organizationIds = [orgId]) {
  return (await gen.user(pool, { organizationIds })).id;
}

/** `fn` on one connection whose chat_clock_now() is `now` (the test-only pgchatd.clock_now). */
async function atClock<T>(now: string, fn: (db: Queryable) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("SELECT set_config('pgchatd.clock_now', $1, false)", [now]);
    return await fn(client);
  } finally {
    await client.query("RESET pgchatd.clock_now");
    client.release();
  }
}

/** The status (always one row: the deployment's limit is a single row). */
const statusOf = async (db: Queryable, userId: string, organizationId = orgId) =>
  (await getChatUsageLimitStatus(db, { user_id: userId, organization_id: organizationId }))!;

describe("which limit applies", () => {
  it("with no deployment limit nobody is limited, and user and group overrides are ignored", async () => {
    const userId = await member();
    const group = await gen.group(pool, orgId, { chatSpendLimitMicros: 5 });
    await pool.query(
      "INSERT INTO group_members (group_id, organization_id, user_id) VALUES ($1, $2, $3)",
      [group.id, orgId, userId],
    );
    await setChatUsageLimitUserOverride(pool, {
      actor_id: adminId,
      target_user_id: userId,
      spend_limit_micros: 7,
    });
    const s = await statusOf(pool, userId);
    expect(s).toMatchObject({ is_limited: false, source: "none", spend_limit_micros: null });
  });

  it("the user's override wins over groups and the default", async () => {
    await setLimit(1_000);
    const userId = await member();
    const group = await gen.group(pool, orgId, { chatSpendLimitMicros: 50 });
    await pool.query(
      "INSERT INTO group_members (group_id, organization_id, user_id) VALUES ($1, $2, $3)",
      [group.id, orgId, userId],
    );
    await setChatUsageLimitUserOverride(pool, {
      actor_id: adminId,
      target_user_id: userId,
      spend_limit_micros: 300,
    });
    expect(await statusOf(pool, userId)).toMatchObject({
      is_limited: true,
      source: "user",
      spend_limit_micros: 300,
    });
  });

  it("without a user override the smallest of the user's groups in the organization applies", async () => {
    await setLimit(1_000);
    const userId = await member();
    for (const limit of [400, 90, null]) {
      const group = await gen.group(pool, orgId, { chatSpendLimitMicros: limit });
      await pool.query(
        "INSERT INTO group_members (group_id, organization_id, user_id) VALUES ($1, $2, $3)",
        [group.id, orgId, userId],
      );
    }
    expect(await statusOf(pool, userId)).toMatchObject({ source: "group", spend_limit_micros: 90 });
  });

  it("with no override the deployment's default applies", async () => {
    await setLimit(1_000, "week");
    const userId = await member();
    expect(await statusOf(pool, userId)).toMatchObject({
      is_limited: true,
      source: "default",
      spend_limit_micros: 1_000,
      period: "week",
    });
  });

  it("a restrictive group in one organization does not limit the user in another", async () => {
    await setLimit(1_000);
    const otherOrgId = (await gen.organization(pool)).id;
    const userId = await member([orgId, otherOrgId]);
    const strict = await gen.group(pool, orgId, { chatSpendLimitMicros: 1 });
    await pool.query(
      "INSERT INTO group_members (group_id, organization_id, user_id) VALUES ($1, $2, $3)",
      [strict.id, orgId, userId],
    );
    expect(await statusOf(pool, userId, orgId)).toMatchObject({ spend_limit_micros: 1 });
    expect(await statusOf(pool, userId, otherOrgId)).toMatchObject({
      source: "default",
      spend_limit_micros: 1_000,
    });
  });

  it("spend counts only the chats of the organization being checked", async () => {
    await setLimit(1_000);
    const otherOrgId = (await gen.organization(pool)).id;
    const userId = await member([orgId, otherOrgId]);
    const here = await gen.chat(pool, { ownerId: userId, organizationId: orgId });
    const there = await gen.chat(pool, { ownerId: userId, organizationId: otherOrgId });
    await gen.costMessage(pool, here.id, { costMicros: 30 });
    await gen.costMessage(pool, there.id, { costMicros: 900 });
    expect((await statusOf(pool, userId, orgId)).current_spend).toBe(30);
    expect((await statusOf(pool, userId, otherOrgId)).current_spend).toBe(900);
  });
});

describe("the current period, on the SQL clock", () => {
  /** A user with messages costing 1 just before `boundary` and 10 at it. */
  async function spendAround(boundary: string) {
    const userId = await member();
    const chat = await gen.chat(pool, { ownerId: userId, organizationId: orgId });
    const before = new Date(new Date(boundary).getTime() - 1).toISOString();
    await gen.costMessage(pool, chat.id, { costMicros: 1, createdAt: before });
    await gen.costMessage(pool, chat.id, { costMicros: 10, createdAt: boundary });
    return userId;
  }

  it("a day starts at UTC midnight", async () => {
    await setLimit(1_000, "day");
    const userId = await spendAround("2026-03-11T00:00:00Z");
    const late = await atClock("2026-03-10T23:59:59.999Z", (db) => statusOf(db, userId));
    expect(late).toMatchObject({
      current_spend: 1,
      period_start: "2026-03-10T00:00:00.000000Z",
      period_end: "2026-03-11T00:00:00.000000Z",
    });
    const early = await atClock("2026-03-11T00:00:00Z", (db) => statusOf(db, userId));
    expect(early).toMatchObject({ current_spend: 10, period_start: "2026-03-11T00:00:00.000000Z" });
  });

  it("a week starts on Monday 00:00 UTC", async () => {
    await setLimit(1_000, "week");
    // 2026-03-09 is a Monday.
    const userId = await spendAround("2026-03-09T00:00:00Z");
    const sunday = await atClock("2026-03-08T12:00:00Z", (db) => statusOf(db, userId));
    expect(sunday).toMatchObject({
      current_spend: 1,
      period_start: "2026-03-02T00:00:00.000000Z",
      period_end: "2026-03-09T00:00:00.000000Z",
    });
    const friday = await atClock("2026-03-13T18:00:00Z", (db) => statusOf(db, userId));
    expect(friday).toMatchObject({
      current_spend: 10,
      period_start: "2026-03-09T00:00:00.000000Z",
      period_end: "2026-03-16T00:00:00.000000Z",
    });
  });

  it("a month starts on the first at 00:00 UTC", async () => {
    await setLimit(1_000, "month");
    const userId = await spendAround("2026-03-01T00:00:00Z");
    const february = await atClock("2026-02-28T23:00:00Z", (db) => statusOf(db, userId));
    expect(february).toMatchObject({
      current_spend: 1,
      period_start: "2026-02-01T00:00:00.000000Z",
      period_end: "2026-03-01T00:00:00.000000Z",
    });
    const march = await atClock("2026-03-31T23:59:59Z", (db) => statusOf(db, userId));
    expect(march).toMatchObject({
      current_spend: 10,
      period_start: "2026-03-01T00:00:00.000000Z",
      period_end: "2026-04-01T00:00:00.000000Z",
    });
  });
});

describe("the check in create and send", () => {
  const send = (db: Queryable, chatId: string, ownerId: string) =>
    sendChatMessage(db, {
      chat_id: chatId,
      owner_id: ownerId,
      content: [{ type: "text", text: "more" }],
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id: null,
    });

  async function waitingChats(ownerId: string, n: number) {
    const chats: { id: string }[] = [];
    for (let i = 0; i < n; i++) {
      const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
      await gen.chatStatus(pool, chat.id, "waiting");
      chats.push(chat);
    }
    return chats;
  }

  it("refuses a send at the limit with the spend, the limit and when the period resets", async () => {
    await setLimit(100, "month");
    const userId = await member();
    const chat = await gen.chat(pool, { ownerId: userId, organizationId: orgId });
    await gen.chatStatus(pool, chat.id, "waiting");
    await gen.costMessage(pool, chat.id, { costMicros: 99 });
    await send(pool, chat.id, userId);
    await gen.chatStatus(pool, chat.id, "waiting");
    await gen.costMessage(pool, chat.id, { costMicros: 1 });
    const err = await sqlError(() => send(pool, chat.id, userId));
    expect(err.code).toBe("PL409");
    const figures = JSON.parse((err as unknown as { detail: string }).detail);
    const { period_end } = await statusOf(pool, userId);
    expect(figures).toEqual({ spent_micros: 100, limit_micros: 100, resets_at: period_end });
  });

  it("refuses creating a chat at the limit, and a queued send too", async () => {
    await setLimit(50);
    const userId = await member();
    const chat = await gen.chat(pool, { ownerId: userId, organizationId: orgId });
    await gen.chatStatus(pool, chat.id, "running");
    await gen.costMessage(pool, chat.id, { costMicros: 60 });
    expect((await sqlError(() => send(pool, chat.id, userId))).code).toBe("PL409");
    const create = await sqlError(() => gen.chat(pool, { ownerId: userId, organizationId: orgId }));
    expect(create.code).toBe("PL409");
    const { rows } = await pool.query("SELECT count(*)::int AS n FROM chats WHERE owner_id = $1", [
      userId,
    ]);
    expect(rows[0].n).toBe(1);
  });

  it("unpriced messages never count as spend", async () => {
    await setLimit(10);
    const userId = await member();
    const chat = await gen.chat(pool, { ownerId: userId, organizationId: orgId });
    await gen.chatStatus(pool, chat.id, "waiting");
    await gen.costMessage(pool, chat.id, { costMicros: null, inputTokens: 1_000_000 });
    expect((await statusOf(pool, userId)).current_spend).toBe(0);
    await expect(send(pool, chat.id, userId)).resolves.toBeTruthy();
  });

  it("20 concurrent sends wait for a turn storing the cost that crosses the limit, then all get 409", async () => {
    await setLimit(100);
    const userId = await member();
    const chats = await waitingChats(userId, 20);
    await gen.costMessage(pool, chats[0]!.id, { costMicros: 90 });
    // A turn stores its cost (120 in all) and has not committed yet.
    const turn = await session(wide);
    const senders = await Promise.all(chats.map(() => session(wide)));
    try {
      await turn.client.query("BEGIN");
      await gen.costMessage(turn.client, chats[0]!.id, { costMicros: 30 });
      const sends = senders.map((s, i) => outcome(send(s.client, chats[i]!.id, userId)));
      for (const s of senders) await blocked(pool, s.pid);
      await turn.client.query("COMMIT");
      const results = await Promise.all(sends);
      expect(results.map((r) => (r.ok ? "admitted" : r.code))).toEqual(Array(20).fill("PL409"));
    } finally {
      turn.release();
      for (const s of senders) s.release();
    }
  });

  it("a send waiting for a turn's cost compares it with the limit as committed by then, lowered meanwhile", async () => {
    await setLimit(1_000);
    const userId = await member();
    const [spent, sending] = await waitingChats(userId, 2);
    await gen.costMessage(pool, spent!.id, { costMicros: 500 });
    const turn = await session(wide);
    const sender = await session(wide);
    try {
      await turn.client.query("BEGIN");
      await gen.costMessage(turn.client, spent!.id, { costMicros: 300 });
      const sent = outcome(send(sender.client, sending!.id, userId));
      await blocked(pool, sender.pid);
      await setLimit(600);
      await turn.client.query("COMMIT");
      const result = await sent;
      expect(result.ok ? "admitted" : result.code).toBe("PL409");
    } finally {
      turn.release();
      sender.release();
    }
  });

  it("20 concurrent sends under the limit are all admitted, and none waits for another", async () => {
    await setLimit(100);
    const userId = await member();
    const chats = await waitingChats(userId, 20);
    await gen.costMessage(pool, chats[0]!.id, { costMicros: 99 });
    const senders = await Promise.all(chats.map(() => session(wide)));
    try {
      // Every send holds its transaction open: the shared spend locks do not exclude each other.
      for (const s of senders) await s.client.query("BEGIN");
      const results = await Promise.all(
        senders.map((s, i) => outcome(send(s.client, chats[i]!.id, userId))),
      );
      for (const s of senders) await s.client.query("COMMIT");
      expect(results.filter((r) => r.ok)).toHaveLength(20);
    } finally {
      for (const s of senders) s.release();
    }
  });
});

describe("the daily cost rollup", () => {
  it("sums priced and unpriced assistant messages per chat, UTC day and model, and ignores other roles", async () => {
    const userId = await member();
    const chat = await gen.chat(pool, { ownerId: userId, organizationId: orgId });
    const model = await gen.modelConfig(pool);
    await gen.costMessage(pool, chat.id, {
      costMicros: 5,
      createdAt: "2026-05-01T23:59:59Z",
      modelConfigId: model.id,
      inputTokens: 10,
      outputTokens: 2,
      runtimeMs: 100,
    });
    await gen.costMessage(pool, chat.id, {
      costMicros: 7,
      createdAt: "2026-05-01T01:00:00Z",
      modelConfigId: model.id,
      inputTokens: 1,
      outputTokens: 1,
      runtimeMs: 5,
    });
    await gen.costMessage(pool, chat.id, {
      costMicros: null,
      createdAt: "2026-05-02T00:00:00Z",
      modelConfigId: model.id,
    });
    const { rows } = await pool.query(
      `SELECT day::text, total_cost_micros, priced_message_count, unpriced_message_count,
         input_tokens, output_tokens, runtime_ms
       FROM chat_cost_daily WHERE chat_id = $1 AND model_config_id = $2 ORDER BY day`,
      [chat.id, model.id],
    );
    expect(rows).toEqual([
      {
        day: "2026-05-01",
        total_cost_micros: 12,
        priced_message_count: 2,
        unpriced_message_count: 0,
        input_tokens: 11,
        output_tokens: 3,
        runtime_ms: 105,
      },
      {
        day: "2026-05-02",
        total_cost_micros: 0,
        priced_message_count: 0,
        unpriced_message_count: 1,
        input_tokens: 0,
        output_tokens: 0,
        runtime_ms: 0,
      },
    ]);
    // The spend check's rollup: the priced cost per owner, organization and day.
    const spend = await pool.query(
      `SELECT day::text, total_cost_micros FROM chat_spend_daily
       WHERE owner_id = $1 AND organization_id = $2 ORDER BY day`,
      [userId, orgId],
    );
    expect(spend.rows).toEqual([{ day: "2026-05-01", total_cost_micros: 12 }]);
  });

  it("rebuilding the rollups from the messages gives exactly what the trigger kept", async () => {
    const userId = await member();
    const root = await gen.chat(pool, { ownerId: userId, organizationId: orgId });
    const child = await gen.chat(pool, { ownerId: userId, parent_chat_id: root.id });
    const model = await gen.modelConfig(pool);
    for (const [chatId, costMicros, createdAt] of [
      [root.id, 3, "2026-07-01T23:59:59Z"],
      [root.id, null, "2026-07-02T00:00:00Z"],
      [child.id, 8, "2026-07-02T10:00:00Z"],
    ] as const) {
      await gen.costMessage(pool, chatId, { costMicros, createdAt, modelConfigId: model.id });
    }
    const snapshot = async () =>
      (
        await pool.query(
          `SELECT (SELECT jsonb_agg(d ORDER BY d.chat_id, d.day, d.model_config_id)
                   FROM chat_cost_daily d) AS costs,
             (SELECT jsonb_agg(s ORDER BY s.owner_id, s.organization_id, s.day)
              FROM chat_spend_daily s) AS spend`,
        )
      ).rows[0];
    const kept = await snapshot();
    await pool.query("SELECT chat_costs_rebuild_daily()");
    expect(await snapshot()).toEqual(kept);
  });

  it("a stored message's cost cannot change (the rollup counted it)", async () => {
    const userId = await member();
    const chat = await gen.chat(pool, { ownerId: userId, organizationId: orgId });
    const id = await gen.costMessage(pool, chat.id, { costMicros: 5 });
    const err = await sqlError(() =>
      pool.query("UPDATE chat_messages SET total_cost_micros = 1 WHERE id = $1", [id]),
    );
    expect(err.code).toBe("55000");
    // Soft deletion (an edit) still works, and the cost stays counted.
    await pool.query("UPDATE chat_messages SET deleted = true WHERE id = $1", [id]);
    const { rows } = await pool.query(
      "SELECT sum(total_cost_micros)::int AS s FROM chat_cost_daily WHERE chat_id = $1",
      [chat.id],
    );
    expect(rows[0].s).toBe(5);
  });
});

describe("the cost of a turn whose output is not kept", () => {
  /** A chat of a new user whose turn a runner holds, as ClaimPendingChats leaves it. */
  async function runningTurn() {
    const userId = await member();
    const chat = await gen.chat(pool, { ownerId: userId, organizationId: orgId });
    const worker = randomUUID();
    const { rows } = await pool.query(
      `UPDATE chats SET status = 'running', worker_id = $2, started_at = now(), heartbeat_at = now()
       WHERE id = $1 RETURNING started_at, last_model_config_id`,
      [chat.id, worker],
    );
    const model = await gen.modelConfig(pool, { inputPriceMicros: 1_000_000 });
    const finish = () =>
      finishChatRun(pool, {
        chat_id: chat.id,
        worker_id: worker,
        started_at: rows[0].started_at,
        model_config_id: model.id,
        messages: [
          {
            role: "assistant",
            content: [{ type: "text", text: "an answer nobody will see" }],
            input_tokens: 60,
            output_tokens: 20,
            provider_response_id: `resp-${worker}`,
          },
        ],
        outcome: "completed",
        error: null,
      });
    return { userId, chat, finish };
  }

  const visibleAssistants = async (chatId: string) =>
    (
      await pool.query(
        "SELECT count(*)::int AS n FROM chat_messages WHERE chat_id = $1 AND role = 'assistant' AND NOT deleted",
        [chatId],
      )
    ).rows[0].n;

  it("a turn whose lease an edit took still counts its cost, and its output is in no history", async () => {
    await setLimit(1_000);
    const { userId, chat, finish } = await runningTurn();
    const { rows } = await pool.query(
      "SELECT id FROM chat_messages WHERE chat_id = $1 AND role = 'user'",
      [chat.id],
    );
    await editChatMessage(pool, {
      chat_id: chat.id,
      owner_id: userId,
      message_id: rows[0].id,
      content: [{ type: "text", text: "again" }],
      api_key_id: null,
      model_config_id: null,
    });
    expect((await finish()).outcome).toBe("lost");
    expect((await statusOf(pool, userId)).current_spend).toBe(60);
    expect(await visibleAssistants(chat.id)).toBe(0);
  });

  it("a finish repeated for a step it already stored counts that step once", async () => {
    await setLimit(1_000);
    const { userId, finish } = await runningTurn();
    expect((await finish()).outcome).toBe("completed");
    expect((await finish()).outcome).toBe("lost");
    expect((await statusOf(pool, userId)).current_spend).toBe(60);
  });

  it("a turn its chat's archive ended still counts its cost", async () => {
    await setLimit(1_000);
    const { userId, chat, finish } = await runningTurn();
    await archiveChat(pool, { id: chat.id, owner_id: userId, api_key_id: null });
    expect((await finish()).outcome).toBe("discarded");
    expect((await statusOf(pool, userId)).current_spend).toBe(60);
    expect(await visibleAssistants(chat.id)).toBe(0);
  });
});

describe("changes to the limits", () => {
  it("every change writes an audit entry naming who made it and what changed", async () => {
    const userId = await member();
    const group = await gen.group(pool, orgId);
    await setLimit(500, "week");
    await setChatUsageLimitUserOverride(pool, {
      actor_id: adminId,
      target_user_id: userId,
      spend_limit_micros: 20,
    });
    await setChatUsageLimitGroupOverride(pool, {
      actor_id: adminId,
      group_id: group.id,
      spend_limit_micros: 30,
    });
    await setChatUsageLimitUserOverride(pool, {
      actor_id: adminId,
      target_user_id: userId,
      spend_limit_micros: null,
    });
    const { rows } = await pool.query(
      `SELECT action, detail FROM audit_logs
       WHERE actor_user_id = $1 AND action LIKE 'usage_limit%' ORDER BY id DESC LIMIT 4`,
      [adminId],
    );
    expect(rows.reverse()).toEqual([
      {
        action: "usage_limit_config",
        detail: {
          old: { spend_limit_micros: null, period: "month" },
          new: { spend_limit_micros: 500, period: "week" },
        },
      },
      {
        action: "usage_limit_override",
        detail: { user_id: userId, old_spend_limit_micros: null, new_spend_limit_micros: 20 },
      },
      {
        action: "usage_limit_group_override",
        detail: { group_id: group.id, old_spend_limit_micros: null, new_spend_limit_micros: 30 },
      },
      {
        action: "usage_limit_override",
        detail: { user_id: userId, old_spend_limit_micros: 20, new_spend_limit_micros: null },
      },
    ]);
  });

  it("an override of an unknown user or group is PC404", async () => {
    const missing = "00000000-0000-4000-8000-000000000000";
    const user = await sqlError(() =>
      setChatUsageLimitUserOverride(pool, {
        actor_id: adminId,
        target_user_id: missing,
        spend_limit_micros: 1,
      }),
    );
    const group = await sqlError(() =>
      setChatUsageLimitGroupOverride(pool, {
        actor_id: adminId,
        group_id: missing,
        spend_limit_micros: 1,
      }),
    );
    expect([user.code, group.code]).toEqual(["PC404", "PC404"]);
  });
});
