import { beforeAll, describe, expect, it } from "vitest";
import { setChatUsageLimitConfig } from "../../src/generated/chat_usage_limits.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { base, text } from "../setup/chat_requests.ts";
import { messagesOf, settled, statusHistory, testRunner, textOf } from "../setup/runner.ts";

/*
 * Spend limits seen from a turn (docs/api.md "Spend limits"): a turn's cost counts as soon as it
 * is stored, and a turn that would start while its owner is at the limit ends in a usage_limit
 * error without calling the model. The default model (local/echo) is priced here at 1 micro per
 * output token.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
  const admin = await gen.user(t.pool, { owner: true, organizationIds: [orgId] });
  await t.pool.query(
    "UPDATE chat_model_configs SET output_price_micros = 1000000 WHERE is_default",
  );
  await setChatUsageLimitConfig(t.pool, {
    actor_id: admin.id,
    spend_limit_micros: 5,
    period: "month",
  });
});

describe("a turn at the spend limit", () => {
  it("a message queued before the limit was reached ends its turn with usage_limit and never reaches the model", async () => {
    const u = await gen.member(t.pool, { organizationIds: [orgId] });
    // Admitted at zero spend: the chat, and a second message queued behind its first turn.
    const created = await t.call("POST", base, {
      token: u.token,
      body: { content: text("a question long enough to cost more than five micros") },
    });
    expect(created.status).toBe(201);
    const chatId = created.json.id as string;
    const queued = await t.call("POST", `${base}/${chatId}/messages`, {
      token: u.token,
      body: { content: text("and a follow-up") },
    });
    expect(queued.json.queued).toBe(true);

    const { runner } = await testRunner();
    runner.wake();
    const state = await settled(t.pool, chatId, "error");

    expect(state.last_error).toMatchObject({
      kind: "usage_limit",
      message: "You have reached your spend limit for this month.",
    });
    expect(await statusHistory(t.pool, chatId)).toEqual([
      "running",
      "waiting",
      "pending",
      "running",
      "error",
    ]);
    // The first turn answered and cost more than the limit; the second stopped before the model.
    const messages = await messagesOf(t.pool, chatId);
    expect(messages.map((m) => m.role)).toEqual(["user", "assistant", "user"]);
    expect(textOf(messages[2]!)).toBe("and a follow-up");
    expect(messages[1]!.total_cost_micros).toBeGreaterThan(5);

    const refused = await t.call("POST", `${base}/${chatId}/messages`, {
      token: u.token,
      body: { content: text("one more") },
    });
    expect(refused.status).toBe(409);
    expect(refused.json.spent_micros).toBe(messages[1]!.total_cost_micros);
  });
});
