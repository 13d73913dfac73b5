import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { type FakeOpenAI, fakeOpenAI } from "../setup/fake_openai.ts";
import { chatState, eventually, settled, testRunner } from "../setup/runner.ts";

/*
 * Users' own provider keys (docs/api.md "Users' own keys"): which key a turn, its title and its
 * summary send, for every key policy of a provider, against a fake OpenAI-compatible server on
 * loopback that records each request's Authorization header. GET /models must promise exactly
 * what the turn then does.
 */

const base = "/api/experimental/chats";
const text = (s: string) => [{ type: "text", text: s }];

let t: Awaited<ReturnType<typeof testApp>>;
let fake: FakeOpenAI;
let ownerToken: string;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  fake = await fakeOpenAI((req) =>
    req.lastUser.includes("Write the title")
      ? { kind: "text", chunks: ["Title: A title"] }
      : { kind: "text", chunks: ["ok"] },
  );
  const org = await gen.organization(t.pool);
  orgId = org.id;
  ownerToken = await gen.apiKey(
    t.pool,
    (await gen.user(t.pool, { owner: true, organizationIds: [org.id] })).id,
  );
});

afterAll(async () => {
  await fake?.close();
});

const secret = (who: string) => `sk-${who}-${randomBytes(12).toString("hex")}`;

interface Policy {
  central_key_enabled: boolean;
  allow_user_key: boolean;
  central_fallback: boolean;
}

const policies: Policy[] = [false, true].flatMap((central_key_enabled) =>
  [false, true].flatMap((allow_user_key) =>
    [false, true].map((central_fallback) => ({
      central_key_enabled,
      allow_user_key,
      central_fallback,
    })),
  ),
);

/** The rule, said independently of sql/functions/chat_models.sql (chat_provider_key_route). */
function expected(
  p: Policy,
  centralKey: string | null,
  needsKey: boolean,
  userKey: string | null,
): { available: true; sends: string | null } | { available: false; reason: string } {
  if (p.allow_user_key && userKey) return { available: true, sends: userKey };
  const centralAllowed = p.central_key_enabled && (!p.allow_user_key || p.central_fallback);
  if (centralAllowed && (centralKey || !needsKey)) return { available: true, sends: centralKey };
  return { available: false, reason: p.allow_user_key ? "user_key_required" : "missing_key" };
}

const valid = (p: Policy) =>
  (p.central_key_enabled || p.allow_user_key) &&
  (!p.central_fallback || (p.central_key_enabled && p.allow_user_key));

async function listed(token: string, providerId: string) {
  const res = await t.call("GET", `${base}/models`, { token });
  expect(res.status, res.text).toBe(200);
  return (res.json.providers as Record<string, unknown>[]).find((p) => p.id === providerId)!;
}

describe("key policies", () => {
  it("refuses every policy no key can satisfy, creating nothing", async () => {
    for (const p of policies.filter((x) => !valid(x))) {
      const marker = randomBytes(4).toString("hex");
      const res = await t.call("POST", `${base}/providers`, {
        token: ownerToken,
        body: { provider: "openai-compatible", base_url: `${fake.url}?p=${marker}`, ...p },
      });
      expect(res.status, JSON.stringify(p)).toBe(400);
      const { rowCount } = await t.pool.query(
        "SELECT 1 FROM chat_providers WHERE base_url LIKE $1",
        [`%${marker}`],
      );
      expect(rowCount).toBe(0);
    }
  });

  it("for every valid policy, with and without a central key and a user's own key, GET /models promises what the turn, its title and its summary send, or the turn fails closed with missing_key", async () => {
    const { runner } = await testRunner({ secrets: t.secrets });
    const cases: string[] = [];
    for (const p of policies.filter(valid)) {
      for (const centralKey of [secret("central"), null]) {
        const marker = randomBytes(4).toString("hex");
        const provider = await t.call("POST", `${base}/providers`, {
          token: ownerToken,
          body: {
            provider: "openai-compatible",
            base_url: `${fake.url}?p=${marker}`,
            ...(centralKey ? { api_key: centralKey } : {}),
            ...p,
          },
        });
        expect(provider.status, provider.text).toBe(201);
        const model = await t.call("POST", `${base}/model-configs`, {
          token: ownerToken,
          body: { provider_id: provider.json.id, model: "fake-model", context_limit: 32_000 },
        });
        expect(model.status, model.text).toBe(201);
        for (const userKey of [secret("user"), null]) {
          const me = await gen.member(t.pool, { organizationIds: [orgId] });
          if (userKey) {
            const put = await t.call("PUT", `${base}/providers/${provider.json.id}/user-key`, {
              token: me.token,
              body: { api_key: userKey },
            });
            expect(put.status, put.text).toBe(p.allow_user_key ? 204 : 400);
          }
          const want = expected(p, centralKey, false, userKey);
          const label = JSON.stringify({ ...p, centralKey: !!centralKey, userKey: !!userKey });
          cases.push(label);
          const shown = await listed(me.token, provider.json.id);
          expect(shown, label).toMatchObject({
            available: want.available,
            has_user_api_key: !!userKey && p.allow_user_key,
          });
          if (!want.available) expect(shown.unavailable_reason, label).toBe(want.reason);
          else expect(shown, label).not.toHaveProperty("unavailable_reason");

          const prompt = `case ${marker} ${userKey ? "u" : "n"}`;
          const chat = await t.call("POST", base, {
            token: me.token,
            body: { content: text(prompt), model_config_id: model.json.id },
          });
          expect(chat.status, chat.text).toBe(201);
          runner.wake();
          const sent = () =>
            fake.requests.filter(
              (r) => r.url.includes(marker) && JSON.stringify(r.body).includes(prompt),
            );
          if (want.available) {
            await settled(t.pool, chat.json.id, "waiting");
            // The turn, then its title and summary: all with the same key.
            const requests = await eventually(async () => {
              const s = await chatState(t.pool, chat.json.id);
              const r = sent();
              return s.title === "A title" && s.last_turn_summary && r.length >= 3 ? r : undefined;
            }, `the turn, title and summary of ${label}`);
            expect(new Set(requests.map((r) => r.headers.authorization ?? null)), label).toEqual(
              new Set([want.sends ? `Bearer ${want.sends}` : null]),
            );
          } else {
            const state = await settled(t.pool, chat.json.id, "error");
            expect(state.last_error, label).toMatchObject({
              kind: "missing_key",
              retryable: false,
            });
            expect(sent(), label).toEqual([]);
          }
        }
      }
    }
    expect(cases).toHaveLength(16);
  });

  it("an openai provider (which needs a key) without a central key is available only to users with their own", async () => {
    for (const p of policies.filter(valid)) {
      const provider = await t.call("POST", `${base}/providers`, {
        token: ownerToken,
        body: {
          provider: "openai",
          base_url: `${fake.url}?p=${randomBytes(4).toString("hex")}`,
          ...p,
        },
      });
      expect(provider.status, provider.text).toBe(201);
      await gen.modelConfig(t.pool, { providerId: provider.json.id });
      for (const userKey of [secret("user"), null]) {
        const me = await gen.member(t.pool, { organizationIds: [orgId] });
        if (userKey && p.allow_user_key) {
          const put = await t.call("PUT", `${base}/providers/${provider.json.id}/user-key`, {
            token: me.token,
            body: { api_key: userKey },
          });
          expect(put.status, put.text).toBe(204);
        }
        const want = expected(p, null, true, p.allow_user_key ? userKey : null);
        const shown = await listed(me.token, provider.json.id);
        const label = JSON.stringify({ ...p, userKey: !!userKey });
        expect(shown.available, label).toBe(want.available);
        expect(shown.unavailable_reason, label).toBe(want.available ? undefined : want.reason);
      }
    }
  });
});

describe("a user's own key", () => {
  it("is stored sealed and bound to its user: a copy under another user does not open, and nothing is sent", async () => {
    const marker = randomBytes(4).toString("hex");
    const provider = await t.call("POST", `${base}/providers`, {
      token: ownerToken,
      body: {
        provider: "openai-compatible",
        base_url: `${fake.url}?p=${marker}`,
        central_key_enabled: false,
        allow_user_key: true,
      },
    });
    expect(provider.status, provider.text).toBe(201);
    const model = await gen.modelConfig(t.pool, { providerId: provider.json.id });
    const alice = await gen.member(t.pool, { organizationIds: [orgId] });
    const bob = await gen.member(t.pool, { organizationIds: [orgId] });
    const key = secret("alice");
    const put = await t.call("PUT", `${base}/providers/${provider.json.id}/user-key`, {
      token: alice.token,
      body: { api_key: key },
    });
    expect(put.status, put.text).toBe(204);
    const { rows } = await t.pool.query(
      "SELECT api_key_ciphertext FROM chat_provider_user_keys WHERE user_id = $1",
      [alice.id],
    );
    expect(rows).toHaveLength(1);
    expect(Buffer.from(rows[0].api_key_ciphertext).includes(Buffer.from(key))).toBe(false);
    // Bob gets Alice's sealed key in his row: it must not open as his.
    await t.pool.query(
      `INSERT INTO chat_provider_user_keys (provider_id, user_id, api_key_ciphertext)
       VALUES ($1, $2, $3)`,
      [provider.json.id, bob.id, rows[0].api_key_ciphertext],
    );
    const chat = await t.call("POST", base, {
      token: bob.token,
      body: { content: text(`stolen ${marker}`), model_config_id: model.id },
    });
    expect(chat.status, chat.text).toBe(201);
    const { runner } = await testRunner({ secrets: t.secrets });
    runner.wake();
    const state = await settled(t.pool, chat.json.id, "error");
    expect(state.last_error).toMatchObject({ kind: "config" });
    expect(fake.requests.filter((r) => r.url.includes(marker))).toEqual([]);
  });
});
