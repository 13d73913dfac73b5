import { randomUUID } from "node:crypto";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { base, type Member, text, wideClient } from "../setup/chat_requests.ts";

/*
 * The spend-limit routes (docs/api.md "Spend limits"): the configuration and its overrides for
 * site owners, the caller's status, and the 409 of create and send at the limit.
 * test/sql/chat_usage_limits.test.ts checks resolution, periods and races where they live.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;
let owner: Member;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
  owner = await gen.member(t.pool, { organizationIds: [orgId], owner: true });
});

const as = (who: Member, method: string, path: string, body?: unknown) =>
  t.call(method, `${base}${path}`, { token: who.token, body });

beforeEach(async () => {
  const res = await as(owner, "PUT", "/usage-limits", {
    spend_limit_micros: null,
    period: "month",
  });
  expect(res.status).toBe(200);
});

const member = () => gen.member(t.pool, { organizationIds: [orgId] });

describe("the configuration (site owners)", () => {
  it("PUT sets the limit and period and GET shows them with the overrides embedded", async () => {
    const u = await member();
    const group = await gen.group(t.pool, orgId, { name: "interns" });
    await t.pool.query(
      "INSERT INTO group_members (group_id, organization_id, user_id) VALUES ($1, $2, $3)",
      [group.id, orgId, u.id],
    );
    expect(
      (await as(owner, "PUT", `/usage-limits/overrides/${u.id}`, { spend_limit_micros: 7_000 }))
        .json,
    ).toMatchObject({ user_id: u.id, spend_limit_micros: 7_000 });
    expect(
      (
        await as(owner, "PUT", `/usage-limits/group-overrides/${group.id}`, {
          spend_limit_micros: 9_000,
        })
      ).json,
    ).toEqual({
      group_id: group.id,
      group_name: "interns",
      organization_id: orgId,
      member_count: 1,
      spend_limit_micros: 9_000,
    });
    const put = await as(owner, "PUT", "/usage-limits", {
      spend_limit_micros: 5_000_000,
      period: "week",
    });
    expect(put.status).toBe(200);
    const got = await as(owner, "GET", "/usage-limits");
    expect(got.json).toEqual(put.json);
    expect(got.json).toMatchObject({
      spend_limit_micros: 5_000_000,
      period: "week",
      updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/),
      unpriced_model_count: expect.any(Number),
    });
    expect(got.json.overrides).toContainEqual({
      user_id: u.id,
      username: expect.any(String),
      name: expect.any(String),
      spend_limit_micros: 7_000,
    });
    expect(got.json.group_overrides).toContainEqual(
      expect.objectContaining({ group_id: group.id, spend_limit_micros: 9_000 }),
    );

    expect((await as(owner, "DELETE", `/usage-limits/overrides/${u.id}`)).status).toBe(204);
    expect((await as(owner, "DELETE", `/usage-limits/group-overrides/${group.id}`)).status).toBe(
      204,
    );
    const after = await as(owner, "GET", "/usage-limits");
    expect(after.json.overrides.map((o: { user_id: string }) => o.user_id)).not.toContain(u.id);
    expect(after.json.group_overrides).toEqual([]);
  });

  it("counts the usable model configs that have no pricing", async () => {
    const before = (await as(owner, "GET", "/usage-limits")).json.unpriced_model_count;
    await gen.modelConfig(t.pool);
    await gen.modelConfig(t.pool, { inputPriceMicros: 5 });
    await gen.modelConfig(t.pool, { enabled: false });
    expect((await as(owner, "GET", "/usage-limits")).json.unpriced_model_count).toBe(before + 1);
  });

  it("PUT without a period keeps the period, and null turns limiting off", async () => {
    await as(owner, "PUT", "/usage-limits", { spend_limit_micros: 10, period: "day" });
    const res = await as(owner, "PUT", "/usage-limits", { spend_limit_micros: null });
    expect(res.json).toMatchObject({ spend_limit_micros: null, period: "day" });
  });

  it("rejects limits that are not positive integers and unknown periods, changing nothing", async () => {
    await as(owner, "PUT", "/usage-limits", { spend_limit_micros: 10, period: "day" });
    for (const body of [
      { spend_limit_micros: 0, period: "day" },
      { spend_limit_micros: -5, period: "day" },
      { spend_limit_micros: 1.5, period: "day" },
      { spend_limit_micros: "10", period: "day" },
      { spend_limit_micros: 10, period: "year" },
      { spend_limit_micros: 2 ** 60, period: "day" },
      { period: "day" },
    ]) {
      const res = await as(owner, "PUT", "/usage-limits", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    const u = await member();
    for (const body of [{ spend_limit_micros: 0 }, { spend_limit_micros: null }, {}]) {
      expect((await as(owner, "PUT", `/usage-limits/overrides/${u.id}`, body)).status).toBe(400);
    }
    expect((await as(owner, "GET", "/usage-limits")).json).toMatchObject({
      spend_limit_micros: 10,
      period: "day",
      overrides: expect.not.arrayContaining([expect.objectContaining({ user_id: u.id })]),
    });
  });

  it("an override of an unknown user or group is 404, and a malformed id 400", async () => {
    const missing = randomUUID();
    const body = { spend_limit_micros: 5 };
    expect((await as(owner, "PUT", `/usage-limits/overrides/${missing}`, body)).status).toBe(404);
    expect((await as(owner, "DELETE", `/usage-limits/overrides/${missing}`)).status).toBe(404);
    expect((await as(owner, "PUT", `/usage-limits/group-overrides/${missing}`, body)).status).toBe(
      404,
    );
    expect((await as(owner, "DELETE", `/usage-limits/group-overrides/${missing}`)).status).toBe(
      404,
    );
    expect((await as(owner, "PUT", "/usage-limits/overrides/nope", body)).status).toBe(400);
  });

  it("PUT of an override answers the override it set, even while a DELETE of it runs", async () => {
    // Real parallelism (a pool of its own): the DELETE must be able to land between the PUT's write
    // and the read its answer is built from.
    const client = wideClient(t.db.url);
    const u = await member();
    const group = await gen.group(t.pool, orgId);
    const rounds = 20;
    for (const [path, key] of [
      [`/usage-limits/overrides/${u.id}`, "user_id"],
      [`/usage-limits/group-overrides/${group.id}`, "group_id"],
    ] as const) {
      const answers = await Promise.all(
        Array.from({ length: rounds }, (_, i) =>
          Promise.all([
            client("PUT", `${base}${path}`, owner.token, { spend_limit_micros: 1_000 + i }),
            client("DELETE", `${base}${path}`, owner.token),
          ]),
        ),
      );
      for (const [[put, del], i] of answers.map((a, i) => [a, i] as const)) {
        expect(put.status).toBe(200);
        expect(del.status).toBe(204);
        expect(put.json).toMatchObject({
          [key]: path.split("/").pop(),
          spend_limit_micros: 1_000 + i,
        });
      }
    }
  });

  it("members may not read or change the configuration", async () => {
    const u = await member();
    expect((await as(u, "GET", "/usage-limits")).status).toBe(403);
    expect((await as(u, "PUT", "/usage-limits", { spend_limit_micros: 1 })).status).toBe(403);
    expect(
      (await as(u, "PUT", `/usage-limits/overrides/${u.id}`, { spend_limit_micros: 1e12 })).status,
    ).toBe(403);
    expect((await as(u, "DELETE", `/usage-limits/overrides/${u.id}`)).status).toBe(403);
  });

  it("every change is audited with the owner as actor", async () => {
    const u = await member();
    await as(owner, "PUT", "/usage-limits", { spend_limit_micros: 77, period: "week" });
    await as(owner, "PUT", `/usage-limits/overrides/${u.id}`, { spend_limit_micros: 3 });
    const { rows } = await t.pool.query(
      `SELECT action, detail FROM audit_logs WHERE actor_user_id = $1 ORDER BY id DESC LIMIT 2`,
      [owner.id],
    );
    expect(rows.map((r) => r.action)).toEqual(["usage_limit_override", "usage_limit_config"]);
    expect(rows[0].detail).toMatchObject({ user_id: u.id, new_spend_limit_micros: 3 });
    expect(rows[1].detail.new).toEqual({ spend_limit_micros: 77, period: "week" });
  });
});

describe("the caller's status", () => {
  it("is only is_limited false and the spend while limiting is off", async () => {
    const u = await member();
    expect((await as(u, "GET", "/usage-limits/status")).json).toEqual({
      is_limited: false,
      current_spend: 0,
    });
  });

  it("shows the limit, the spend and the current period while limited", async () => {
    await as(owner, "PUT", "/usage-limits", { spend_limit_micros: 1_000, period: "day" });
    const u = await member();
    const chat = await gen.chat(t.pool, { ownerId: u.id, organizationId: orgId });
    await gen.costMessage(t.pool, chat.id, { costMicros: 250 });
    const res = await as(u, "GET", "/usage-limits/status");
    const today = new Date().toISOString().slice(0, 10);
    expect(res.json).toEqual({
      is_limited: true,
      period: "day",
      spend_limit_micros: 1_000,
      current_spend: 250,
      period_start: `${today}T00:00:00.000000Z`,
      period_end: expect.stringMatching(/T00:00:00\.000000Z$/),
    });
  });

  it("reports on another of the caller's organizations when asked, and refuses one they are not in", async () => {
    await as(owner, "PUT", "/usage-limits", { spend_limit_micros: 1_000 });
    const otherOrgId = (await gen.organization(t.pool)).id;
    const u = await gen.member(t.pool, { organizationIds: [orgId, otherOrgId] });
    const chat = await gen.chat(t.pool, { ownerId: u.id, organizationId: otherOrgId });
    await gen.costMessage(t.pool, chat.id, { costMicros: 40 });
    expect(
      (await as(u, "GET", `/usage-limits/status?organization_id=${orgId}`)).json.current_spend,
    ).toBe(0);
    expect(
      (await as(u, "GET", `/usage-limits/status?organization_id=${otherOrgId}`)).json.current_spend,
    ).toBe(40);
    const stranger = (await gen.organization(t.pool)).id;
    expect((await as(u, "GET", `/usage-limits/status?organization_id=${stranger}`)).status).toBe(
      403,
    );
  });
});

describe("create and send at the limit", () => {
  it("answer 409 with the spend, the limit and when it resets, and store nothing", async () => {
    await as(owner, "PUT", "/usage-limits", { spend_limit_micros: 100, period: "month" });
    const u = await member();
    const chat = await gen.chat(t.pool, { ownerId: u.id, organizationId: orgId });
    await gen.chatStatus(t.pool, chat.id, "waiting");
    await gen.costMessage(t.pool, chat.id, { costMicros: 120 });
    const now = new Date();
    const nextMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    const expected = {
      message: "You have reached your spend limit for this month.",
      spent_micros: 120,
      limit_micros: 100,
      resets_at: `${nextMonth.toISOString().slice(0, 19)}.000000Z`,
    };

    const send = await as(u, "POST", `/${chat.id}/messages`, { content: text("more") });
    expect(send.status).toBe(409);
    expect(send.json).toEqual(expected);
    const create = await as(u, "POST", "", { content: text("new chat") });
    expect(create.status).toBe(409);
    expect(create.json).toEqual(expected);

    const { rows } = await t.pool.query(
      `SELECT (SELECT count(*)::int FROM chats WHERE owner_id = $1) AS chats,
         (SELECT count(*)::int FROM chat_messages WHERE chat_id = $2 AND role = 'user') AS sent`,
      [u.id, chat.id],
    );
    expect(rows[0]).toEqual({ chats: 1, sent: 1 });
  });

  it("a user override above the default lets the user go on", async () => {
    await as(owner, "PUT", "/usage-limits", { spend_limit_micros: 100 });
    const u = await member();
    const chat = await gen.chat(t.pool, { ownerId: u.id, organizationId: orgId });
    await gen.chatStatus(t.pool, chat.id, "waiting");
    await gen.costMessage(t.pool, chat.id, { costMicros: 150 });
    await as(owner, "PUT", `/usage-limits/overrides/${u.id}`, { spend_limit_micros: 200 });
    expect((await as(u, "POST", `/${chat.id}/messages`, { content: text("more") })).status).toBe(
      200,
    );
  });
});
