import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { base, type Member } from "../setup/chat_requests.ts";

/*
 * Cost analytics (docs/api.md "Cost and limit bodies"): a user's summary, every user's cost, a
 * chat's cost. Messages are placed at fixed times so that windows, partial days and the rollup to
 * root chats are checked to the micro. Each test uses a window of its own.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;
let owner: Member;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
  owner = await gen.member(t.pool, { organizationIds: [orgId], owner: true });
});

const as = (who: Member, method: string, path: string) =>
  t.call(method, `${base}${path}`, { token: who.token });

const member = (opts: { username?: string; name?: string } = {}) =>
  gen
    .user(t.pool, { organizationIds: [orgId], ...opts })
    .then(async (u) => ({ id: u.id, token: await gen.apiKey(t.pool, u.id) }));

const chatOf = (u: Member, opts: { parent_chat_id?: string; text?: string } = {}) =>
  gen.chat(t.pool, { ownerId: u.id, organizationId: orgId, ...opts });

async function pricedModel(displayName: string) {
  const model = await gen.modelConfig(t.pool, { inputPriceMicros: 1 });
  await t.pool.query("UPDATE chat_model_configs SET display_name = $2 WHERE id = $1", [
    model.id,
    displayName,
  ]);
  return model;
}

describe("a user's summary", () => {
  it("totals priced and unpriced messages apart, by model with names and by root chat with subagents rolled up", async () => {
    const u = await member();
    const fancy = await pricedModel("Fancy");
    const free = await gen.modelConfig(t.pool);
    const root = await chatOf(u, { text: "the root" });
    const child = await chatOf(u, { parent_chat_id: root.id });
    const other = await chatOf(u, { text: "another" });
    const at = "2026-02-10T10:00:00Z";
    const msg = (chatId: string, modelConfigId: string, costMicros: number | null) =>
      gen.costMessage(t.pool, chatId, {
        costMicros,
        modelConfigId,
        createdAt: at,
        inputTokens: 10,
        outputTokens: 4,
        cacheReadTokens: 2,
        cacheCreationTokens: 1,
        runtimeMs: 100,
      });
    await msg(root.id, fancy.id, 500);
    await msg(child.id, fancy.id, 300);
    await msg(child.id, free.id, null);
    await msg(other.id, fancy.id, 50);
    // Someone else's cost and a user message never count.
    await gen.costMessage(t.pool, (await chatOf(await member())).id, {
      costMicros: 9_999,
      createdAt: at,
    });
    await gen.chatMessage(t.pool, root.id, { role: "user", text: "hi" });

    const res = await as(u, "GET", "/cost/me/summary?start_date=2026-02-01&end_date=2026-03-01");
    expect(res.status).toBe(200);
    const tokens = (n: number) => ({
      total_input_tokens: 10 * n,
      total_output_tokens: 4 * n,
      total_cache_read_tokens: 2 * n,
      total_cache_creation_tokens: 1 * n,
    });
    expect(res.json).toEqual({
      start_date: "2026-02-01T00:00:00.000000Z",
      end_date: "2026-03-01T00:00:00.000000Z",
      total_cost_micros: 850,
      priced_message_count: 3,
      unpriced_message_count: 1,
      ...tokens(4),
      total_runtime_ms: 400,
      by_model: [
        {
          model_config_id: fancy.id,
          display_name: "Fancy",
          provider: "openai-compatible",
          model: fancy.model,
          total_cost_micros: 850,
          message_count: 3,
          ...tokens(3),
          total_runtime_ms: 300,
        },
        {
          model_config_id: free.id,
          display_name: free.model,
          provider: "openai-compatible",
          model: free.model,
          total_cost_micros: 0,
          message_count: 1,
          ...tokens(1),
          total_runtime_ms: 100,
        },
      ],
      by_chat: [
        {
          root_chat_id: root.id,
          chat_title: "the root",
          total_cost_micros: 800,
          message_count: 3,
          ...tokens(3),
          total_runtime_ms: 300,
        },
        {
          root_chat_id: other.id,
          chat_title: "another",
          total_cost_micros: 50,
          message_count: 1,
          ...tokens(1),
          total_runtime_ms: 100,
        },
      ],
    });
  });

  it("counts exactly the messages inside a window whose bounds are not UTC midnights", async () => {
    const u = await member();
    const chat = await chatOf(u);
    const costs: [string, number][] = [
      ["2026-04-09T23:00:00Z", 1],
      ["2026-04-10T11:59:59.999999Z", 2],
      ["2026-04-10T12:00:00Z", 4],
      ["2026-04-11T10:00:00Z", 8],
      ["2026-04-12T00:10:00Z", 16],
      ["2026-04-12T00:30:00Z", 32],
    ];
    for (const [createdAt, costMicros] of costs) {
      await gen.costMessage(t.pool, chat.id, { costMicros, createdAt });
    }
    const total = async (start: string, end: string) => {
      const q = new URLSearchParams({ start_date: start, end_date: end });
      const res = await as(u, "GET", `/cost/me/summary?${q}`);
      expect(res.status, res.text).toBe(200);
      return res.json.total_cost_micros;
    };
    // Partial first and last days around a whole one; the offset is honoured.
    expect(await total("2026-04-10T14:00:00+02:00", "2026-04-12T00:30:00Z")).toBe(4 + 8 + 16);
    // Inside one day.
    expect(await total("2026-04-11T09:00:00Z", "2026-04-11T11:00:00Z")).toBe(8);
    // Across one midnight, no whole day.
    expect(await total("2026-04-10T12:00:00Z", "2026-04-11T10:00:00Z")).toBe(4);
    // Whole days only.
    expect(await total("2026-04-10T00:00:00Z", "2026-04-12T00:00:00Z")).toBe(2 + 4 + 8);
  });

  it("defaults to the 30 UTC days ending with today", async () => {
    const u = await member();
    const chat = await chatOf(u);
    await gen.costMessage(t.pool, chat.id, { costMicros: 3 });
    await gen.costMessage(t.pool, chat.id, {
      costMicros: 5,
      createdAt: new Date(Date.now() - 31 * 86_400_000).toISOString(),
    });
    const res = await as(u, "GET", "/cost/me/summary");
    expect(res.json.total_cost_micros).toBe(3);
    const start = Date.parse(res.json.start_date);
    const end = Date.parse(res.json.end_date);
    expect(end - start).toBe(30 * 86_400_000);
    expect(end % 86_400_000).toBe(0);
    expect(end).toBeGreaterThan(Date.now());
  });

  it("includes the usage limit status only while limiting is on", async () => {
    const u = await member();
    expect((await as(u, "GET", "/cost/me/summary")).json).not.toHaveProperty("usage_limit");
    await t.call("PUT", `${base}/usage-limits`, {
      token: owner.token,
      body: { spend_limit_micros: 1_000, period: "month" },
    });
    try {
      expect((await as(u, "GET", "/cost/me/summary")).json.usage_limit).toMatchObject({
        is_limited: true,
        spend_limit_micros: 1_000,
        period: "month",
      });
    } finally {
      await t.call("PUT", `${base}/usage-limits`, {
        token: owner.token,
        body: { spend_limit_micros: null },
      });
    }
  });

  it("a member reading another user's summary gets 404; a site owner may read it", async () => {
    const a = await member();
    const b = await member();
    expect((await as(a, "GET", `/cost/${b.id}/summary`)).status).toBe(404);
    expect((await as(a, "GET", `/cost/${a.id}/summary`)).status).toBe(200);
    expect((await as(owner, "GET", `/cost/${b.id}/summary`)).status).toBe(200);
    expect((await as(owner, "GET", `/cost/${randomUUID()}/summary`)).status).toBe(404);
    expect((await as(a, "GET", "/cost/someone/summary")).status).toBe(400);
  });

  it("rejects a window that ends before it starts and dates that are not RFC 3339", async () => {
    const u = await member();
    for (const q of [
      "start_date=2026-05-02&end_date=2026-05-01",
      "start_date=2026-05-01&end_date=2026-05-01",
      "start_date=yesterday",
      "end_date=2026-13-01",
      "start_date=2026-05-01T10:00:00",
    ]) {
      expect((await as(u, "GET", `/cost/me/summary?${q}`)).status, q).toBe(400);
    }
  });
});

describe("every user's cost (site owners)", () => {
  const window = "start_date=2025-06-01&end_date=2025-07-01";

  it("lists users most expensive first with a total count, filters on username or name, and pages", async () => {
    const users = [
      await member({ username: gen.uniqueName("zed"), name: "Ada Lovelace" }),
      await member({ username: gen.uniqueName("ada-fan") }),
      await member({ username: gen.uniqueName("bob") }),
    ];
    const spend = [300, 200, 100];
    for (const [i, u] of users.entries()) {
      const root = await chatOf(u);
      const child = await chatOf(u, { parent_chat_id: root.id });
      await gen.costMessage(t.pool, root.id, {
        costMicros: spend[i]! / 2,
        createdAt: "2025-06-15T12:00:00Z",
        inputTokens: 1,
      });
      await gen.costMessage(t.pool, child.id, {
        costMicros: spend[i]! / 2,
        createdAt: "2025-06-16T12:00:00Z",
        inputTokens: 1,
      });
    }
    const page = await as(owner, "GET", `/cost/users?${window}`);
    expect(page.status).toBe(200);
    expect(page.json.count).toBe(3);
    expect(page.json.users.map((r: { user_id: string }) => r.user_id)).toEqual(
      users.map((u) => u.id),
    );
    expect(page.json.users[0]).toMatchObject({
      total_cost_micros: 300,
      message_count: 2,
      chat_count: 1,
      total_input_tokens: 2,
    });

    const ada = await as(owner, "GET", `/cost/users?${window}&username=ADA`);
    expect(ada.json.count).toBe(2);
    expect(ada.json.users.map((r: { user_id: string }) => r.user_id)).toEqual([
      users[0]!.id,
      users[1]!.id,
    ]);

    const second = await as(owner, "GET", `/cost/users?${window}&limit=1&offset=1`);
    expect(second.json.count).toBe(3);
    expect(second.json.users.map((r: { user_id: string }) => r.user_id)).toEqual([users[1]!.id]);
    const past = await as(owner, "GET", `/cost/users?${window}&limit=1&offset=5`);
    expect(past.json).toMatchObject({ count: 3, users: [] });
    // Wildcards are plain characters, not patterns.
    expect((await as(owner, "GET", `/cost/users?${window}&username=%25`)).json.count).toBe(0);
  });

  it("is for site owners only, and rejects bad paging", async () => {
    const u = await member();
    expect((await as(u, "GET", "/cost/users")).status).toBe(403);
    for (const q of ["limit=0", "limit=201", "offset=-1", "limit=abc"]) {
      expect((await as(owner, "GET", `/cost/users?${q}`)).status, q).toBe(400);
    }
  });
});

describe("a chat's cost", () => {
  it("sums the chat and all its descendants, all time; another user's chat is 404", async () => {
    const u = await member();
    const root = await chatOf(u);
    const child = await chatOf(u, { parent_chat_id: root.id });
    const grandchild = await chatOf(u, { parent_chat_id: child.id });
    await gen.costMessage(t.pool, root.id, { costMicros: 1, runtimeMs: 10 });
    await gen.costMessage(t.pool, child.id, {
      costMicros: 2,
      createdAt: "2020-01-01T00:00:00Z",
      runtimeMs: 20,
    });
    await gen.costMessage(t.pool, grandchild.id, { costMicros: null, runtimeMs: 40 });

    expect((await as(u, "GET", `/${root.id}/cost`)).json).toEqual({
      chat_id: root.id,
      total_cost_micros: 3,
      message_count: 3,
      unpriced_message_count: 1,
      total_runtime_ms: 70,
    });
    expect((await as(u, "GET", `/${child.id}/cost`)).json).toMatchObject({
      total_cost_micros: 2,
      message_count: 2,
    });
    expect((await as(await member(), "GET", `/${root.id}/cost`)).status).toBe(404);
    expect((await as(u, "GET", `/${randomUUID()}/cost`)).status).toBe(404);
  });
});
