import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getChatForRunByID } from "../../src/generated/chat_runs.ts";
import type { ModelRouting } from "../../src/models/index.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { type FakeOpenAI, fakeOpenAI } from "../setup/fake_openai.ts";
import { chatState, eventually, settled, testRunner } from "../setup/runner.ts";

/*
 * Users' own provider keys (docs/api.md "Users' own keys") under both routings
 * (docs/operations.md "Model routing"): which key a turn, its title and its summary send, for every
 * key policy of a provider, against a fake OpenAI-compatible server on loopback (a provider's
 * endpoint, or the gateway) that records every request's headers. GET /models must promise
 * exactly what the turn then does.
 */

const base = "/api/experimental/chats";
const text = (s: string) => [{ type: "text", text: s }];

const gatewayToken = `gw-${randomBytes(12).toString("hex")}`;

interface Setup {
  t: Awaited<ReturnType<typeof testApp>>;
  fake: FakeOpenAI;
  ownerToken: string;
  orgId: string;
}

/** An app (its GET /models routed as `routing` says) and one fake server for its model calls. */
async function setup(routing: (url: string) => ModelRouting): Promise<Setup> {
  const fake = await fakeOpenAI((req) =>
    req.lastUser.includes("Write the title")
      ? { kind: "text", chunks: ["Title: A title"] }
      : { kind: "text", chunks: ["ok"] },
  );
  const t = await testApp({ modelRouting: routing(fake.url) });
  const org = await gen.organization(t.pool);
  const ownerToken = await gen.apiKey(
    t.pool,
    (await gen.user(t.pool, { owner: true, organizationIds: [org.id] })).id,
  );
  return { t, fake, ownerToken, orgId: org.id };
}

const modes = {
  direct: () => ({ mode: "direct" }) as const,
  gateway: (url: string) => ({ mode: "gateway", url, token: gatewayToken }) as const,
};

let direct: Setup;
let gateway: Setup;

beforeAll(async () => {
  [direct, gateway] = await Promise.all([setup(modes.direct), setup(modes.gateway)]);
});

afterAll(async () => {
  await direct?.fake.close();
  await gateway?.fake.close();
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
  viaGateway: boolean,
): { available: true; source: "user" | "central" } | { available: false; reason: string } {
  if (p.allow_user_key && userKey) return { available: true, source: "user" };
  const centralAllowed = p.central_key_enabled && (!p.allow_user_key || p.central_fallback);
  if (centralAllowed && (viaGateway || centralKey || !needsKey)) {
    return { available: true, source: "central" };
  }
  return { available: false, reason: p.allow_user_key ? "user_key_required" : "missing_key" };
}

/** The headers a call carries: the key and, through the gateway, the governance marker. */
function wantedHeaders(
  source: "user" | "central",
  userKey: string | null,
  centralKey: string | null,
  viaGateway: boolean,
) {
  if (!viaGateway) {
    const key = source === "user" ? userKey : centralKey;
    return { authorization: key ? `Bearer ${key}` : null, governance: null };
  }
  return source === "user"
    ? { authorization: `Bearer ${userKey}`, governance: "delegated" }
    : // The central key is the gateway's to apply: never forwarded.
      { authorization: null, governance: gatewayToken };
}
const valid = (p: Policy) =>
  (p.central_key_enabled || p.allow_user_key) &&
  (!p.central_fallback || (p.central_key_enabled && p.allow_user_key));

async function listed(t: Setup["t"], token: string, providerId: string) {
  const res = await t.call("GET", `${base}/models`, { token });
  expect(res.status, res.text).toBe(200);
  return (res.json.providers as Record<string, unknown>[]).find((p) => p.id === providerId)!;
}

/** A provider at the fake server (its own marker: one provider per endpoint) and a model on it. */
async function providerWithModel(
  { t, fake, ownerToken }: Setup,
  body: Record<string, unknown>,
): Promise<{ providerId: string; modelId: string; marker: string }> {
  const marker = randomBytes(4).toString("hex");
  const provider = await t.call("POST", `${base}/providers`, {
    token: ownerToken,
    body: { provider: "openai-compatible", base_url: `${fake.url}?p=${marker}`, ...body },
  });
  expect(provider.status, provider.text).toBe(201);
  const model = await t.call("POST", `${base}/model-configs`, {
    token: ownerToken,
    body: { provider_id: provider.json.id, model: "fake-model", context_limit: 32_000 },
  });
  expect(model.status, model.text).toBe(201);
  return { providerId: provider.json.id, modelId: model.json.id, marker };
}

async function putUserKey(t: Setup["t"], providerId: string, token: string, key: string) {
  return t.call("PUT", `${base}/providers/${providerId}/user-key`, {
    token,
    body: { api_key: key },
  });
}

describe("key policies", () => {
  it("refuses every policy no key can satisfy, creating nothing", async () => {
    const { t, fake, ownerToken } = direct;
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

  it("gives no key when it does not know the routing or whether the user has a key", async () => {
    const { t } = direct;
    const { providerId } = await providerWithModel(direct, {
      api_key: secret("central"),
      allow_user_key: true,
      central_fallback: true,
    });
    for (const [hasUserKey, viaGateway] of [
      [null, false],
      [false, null],
      [null, null],
    ]) {
      const { rows } = await t.pool.query(
        `SELECT r.* FROM chat_providers p, chat_provider_key_route(p, $2, $3) r WHERE p.id = $1`,
        [providerId, hasUserKey, viaGateway],
      );
      expect(rows, JSON.stringify([hasUserKey, viaGateway])).toEqual([
        { key_source: null, unavailable_reason: "missing_key" },
      ]);
    }
  });

  for (const mode of ["direct", "gateway"] as const) {
    it(`${mode}: for every valid policy, with and without a central key and a user's own key, GET /models promises what the turn, its title and its summary send, or the turn fails closed with missing_key`, async () => {
      const s = mode === "direct" ? direct : gateway;
      const { t, fake } = s;
      const viaGateway = mode === "gateway";
      const { runner } = await testRunner({ secrets: t.secrets, models: t.models });
      const cases: string[] = [];
      for (const p of policies.filter(valid)) {
        for (const centralKey of [secret("central"), null]) {
          const { providerId, modelId, marker } = await providerWithModel(s, {
            ...(centralKey ? { api_key: centralKey } : {}),
            ...p,
          });
          for (const userKey of [secret("user"), null]) {
            const me = await gen.member(t.pool, { organizationIds: [s.orgId] });
            if (userKey) {
              const put = await putUserKey(t, providerId, me.token, userKey);
              expect(put.status, put.text).toBe(p.allow_user_key ? 204 : 400);
            }
            const want = expected(p, centralKey, false, userKey, viaGateway);
            const label = JSON.stringify({
              mode,
              ...p,
              centralKey: !!centralKey,
              userKey: !!userKey,
            });
            cases.push(label);
            const shown = await listed(t, me.token, providerId);
            expect(shown, label).toMatchObject({
              available: want.available,
              has_user_api_key: !!userKey && p.allow_user_key,
            });
            if (!want.available) expect(shown.unavailable_reason, label).toBe(want.reason);
            else expect(shown, label).not.toHaveProperty("unavailable_reason");

            const prompt = `case ${marker} ${userKey ? "u" : "n"}`;
            const chat = await t.call("POST", base, {
              token: me.token,
              body: { content: text(prompt), model_config_id: modelId },
            });
            expect(chat.status, chat.text).toBe(201);
            runner.wake();
            const sent = () => fake.requests.filter((r) => JSON.stringify(r.body).includes(prompt));
            if (!want.available) {
              const state = await settled(t.pool, chat.json.id, "error");
              expect(state.last_error, label).toMatchObject({
                kind: "missing_key",
                retryable: false,
              });
              expect(sent(), label).toEqual([]);
              continue;
            }
            await settled(t.pool, chat.json.id, "waiting");
            // The turn, then its title and summary: all the same way.
            const requests = await eventually(async () => {
              const state = await chatState(t.pool, chat.json.id);
              const r = sent();
              return state.title === "A title" && state.last_turn_summary && r.length >= 3
                ? r
                : undefined;
            }, `the turn, title and summary of ${label}`);
            const wanted = wantedHeaders(want.source, userKey, centralKey, viaGateway);
            for (const r of requests) {
              expect(
                {
                  authorization: r.headers.authorization ?? null,
                  governance: r.headers["x-pgchatd-governance-token"] ?? null,
                },
                label,
              ).toEqual(wanted);
              // A provider's endpoint, or the gateway with the provider kind in the model name.
              expect(r.url.includes(marker), label).toBe(!viaGateway);
              expect(r.body.model, label).toBe(
                viaGateway ? "openai-compatible/fake-model" : "fake-model",
              );
              if (viaGateway) {
                expect(r.headers["x-pgchatd-user-id"], label).toBe(me.id);
                expect(r.headers["x-pgchatd-api-key-id"], label).toBe(me.token.split("-")[0]);
              }
              if (centralKey && viaGateway) {
                expect(JSON.stringify(r.headers), label).not.toContain(centralKey);
              }
            }
          }
        }
      }
      expect(cases).toHaveLength(16);
    });
  }

  it("an openai provider (which needs a key) without a central key is available directly only to users with their own, through the gateway to everyone central routes allow", async () => {
    for (const [mode, s] of [
      ["direct", direct],
      ["gateway", gateway],
    ] as const) {
      const { t, fake, ownerToken } = s;
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
          const me = await gen.member(t.pool, { organizationIds: [s.orgId] });
          if (userKey && p.allow_user_key) {
            const put = await putUserKey(t, provider.json.id, me.token, userKey);
            expect(put.status, put.text).toBe(204);
          }
          const want = expected(
            p,
            null,
            true,
            p.allow_user_key ? userKey : null,
            mode === "gateway",
          );
          const shown = await listed(t, me.token, provider.json.id);
          const label = JSON.stringify({ mode, ...p, userKey: !!userKey });
          expect(shown.available, label).toBe(want.available);
          expect(shown.unavailable_reason, label).toBe(want.available ? undefined : want.reason);
        }
      }
    }
  });
});

describe("through the gateway", () => {
  it("an anthropic user's own key goes in x-api-key with the delegation marker, nothing in Authorization", async () => {
    const { t, fake, ownerToken, orgId } = gateway;
    const provider = await t.call("POST", `${base}/providers`, {
      token: ownerToken,
      body: { provider: "anthropic", central_key_enabled: false, allow_user_key: true },
    });
    expect(provider.status, provider.text).toBe(201);
    const model = await gen.modelConfig(t.pool, {
      providerId: provider.json.id,
      model: "claude-x",
    });
    const me = await gen.member(t.pool, { organizationIds: [orgId] });
    const key = secret("anthropic");
    expect((await putUserKey(t, provider.json.id, me.token, key)).status).toBe(204);
    const prompt = `anthropic ${randomBytes(4).toString("hex")}`;
    const chat = await t.call("POST", base, {
      token: me.token,
      body: { content: text(prompt), model_config_id: model.id },
    });
    expect(chat.status, chat.text).toBe(201);
    const { runner } = await testRunner({ secrets: t.secrets, models: t.models });
    runner.wake();
    await settled(t.pool, chat.json.id, "waiting");
    const [request] = fake.requests.filter((r) => r.lastUser === prompt);
    expect(request!.body.model).toBe("anthropic/claude-x");
    expect(request!.headers).toMatchObject({
      "x-api-key": key,
      "x-pgchatd-governance-token": "delegated",
    });
    expect(request!.headers.authorization).toBeUndefined();
  });

  it("fails closed with auth, calling nothing, when the API key that sent the message has expired or was deleted", async () => {
    const { t, fake, orgId } = gateway;
    const { modelId } = await providerWithModel(gateway, {});
    for (const end of [
      "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
      "DELETE FROM api_keys WHERE id = $1",
    ]) {
      const me = await gen.member(t.pool, { organizationIds: [orgId] });
      const prompt = `initiator ${randomBytes(4).toString("hex")}`;
      const chat = await t.call("POST", base, {
        token: me.token,
        body: { content: text(prompt), model_config_id: modelId },
      });
      expect(chat.status, chat.text).toBe(201);
      await t.pool.query(end, [me.token.split("-")[0]]);
      const { runner } = await testRunner({ secrets: t.secrets, models: t.models });
      runner.wake();
      const state = await settled(t.pool, chat.json.id, "error");
      // Before the next chat exists: a live runner would run it before its key is ended.
      await runner.stop();
      expect(state.last_error, end).toMatchObject({ kind: "auth", retryable: false });
      expect(
        fake.requests.filter((r) => r.lastUser === prompt),
        end,
      ).toEqual([]);
    }
  });
});

describe("the initiating API key", () => {
  it("is the key that sent the newest message: deleted, it fails closed instead of falling back to the chat's creating key, and an agent's context file does not replace it", async () => {
    const { t, fake, orgId } = gateway;
    const { modelId } = await providerWithModel(gateway, {});
    const me = await gen.member(t.pool, { organizationIds: [orgId] });
    const second = await gen.apiKey(t.pool, me.id);
    const idOf = (token: string) => token.split("-")[0]!;
    const prompt = `creator ${randomBytes(4).toString("hex")}`;
    const chat = await t.call("POST", base, {
      token: me.token,
      body: { content: text(prompt), model_config_id: modelId },
    });
    expect(chat.status, chat.text).toBe(201);
    const initiator = async () =>
      (await getChatForRunByID(t.pool, { id: chat.json.id, gateway: true }))!;
    expect(await initiator()).toMatchObject({
      initiator_api_key_id: idOf(me.token),
      initiator_key_active: true,
    });
    // Interrupted before it runs, then another key sends the next message.
    await t.pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat.json.id]);
    const sent = await t.call("POST", `${base}/${chat.json.id}/messages`, {
      token: second,
      body: { content: text(`${prompt} again`) },
    });
    expect(sent.status, sent.text).toBe(200);
    // What chat_context_files_add writes: a model-only user message from no one.
    await t.pool.query(
      `INSERT INTO chat_messages (chat_id, role, content, visibility)
       VALUES ($1, 'user', '[{"type":"context-file","context_file_path":"AGENTS.md","context_file_content":"x"}]', 'model')`,
      [chat.json.id],
    );
    expect(await initiator()).toMatchObject({
      initiator_api_key_id: idOf(second),
      initiator_key_active: true,
    });
    await t.pool.query("DELETE FROM api_keys WHERE id = $1", [idOf(second)]);
    expect(await initiator()).toMatchObject({
      initiator_api_key_id: null,
      initiator_key_active: false,
    });
    const { runner } = await testRunner({ secrets: t.secrets, models: t.models });
    runner.wake();
    const state = await settled(t.pool, chat.json.id, "error");
    expect(state.last_error).toMatchObject({ kind: "auth" });
    expect(fake.requests.filter((r) => r.lastUser === `${prompt} again`)).toEqual([]);
  });
});

describe("a user's own key", () => {
  it("is stored sealed and bound to its user: a copy under another user does not open, and nothing is sent", async () => {
    const { t, fake, orgId } = direct;
    const { providerId, modelId, marker } = await providerWithModel(direct, {
      central_key_enabled: false,
      allow_user_key: true,
    });
    const alice = await gen.member(t.pool, { organizationIds: [orgId] });
    const bob = await gen.member(t.pool, { organizationIds: [orgId] });
    const key = secret("alice");
    const put = await putUserKey(t, providerId, alice.token, key);
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
      [providerId, bob.id, rows[0].api_key_ciphertext],
    );
    const chat = await t.call("POST", base, {
      token: bob.token,
      body: { content: text(`stolen ${marker}`), model_config_id: modelId },
    });
    expect(chat.status, chat.text).toBe(201);
    const { runner } = await testRunner({ secrets: t.secrets });
    runner.wake();
    const state = await settled(t.pool, chat.json.id, "error");
    expect(state.last_error).toMatchObject({ kind: "config" });
    expect(fake.requests.filter((r) => r.url.includes(marker))).toEqual([]);
  });
});

describe("redaction", () => {
  it("a user's own key that the provider or the gateway echoes in an error never reaches a log line, an event, a stored error or a response", async () => {
    // Not shaped like a provider key (sk-…), which the error scrubber cuts out by its look alone.
    const planted = `planted-${randomBytes(16).toString("hex")}`;
    // Echoes whatever credential it got, as some providers' error bodies do.
    const echo = await fakeOpenAI((req) => {
      const got = String(req.headers.authorization ?? req.headers["x-api-key"] ?? "");
      const status = req.lastUser.includes("five hundred")
        ? 500
        : req.lastUser.includes("four hundred")
          ? 400
          : 401;
      return {
        kind: "status",
        status,
        body: { error: { message: `Incorrect API key provided: ${got}`, key: got } },
      };
    });
    try {
      for (const routing of [modes.direct(), modes.gateway(echo.url)]) {
        const t = await testApp({ modelRouting: routing });
        const org = await gen.organization(t.pool);
        const owner = await gen.apiKey(
          t.pool,
          (await gen.user(t.pool, { owner: true, organizationIds: [org.id] })).id,
        );
        const { modelId, providerId } = await providerWithModel(
          { t, fake: echo, ownerToken: owner, orgId: org.id },
          { central_key_enabled: false, allow_user_key: true },
        );
        const me = await gen.member(t.pool, { organizationIds: [org.id] });
        expect((await putUserKey(t, providerId, me.token, planted)).status).toBe(204);
        const { runner, published, logLines } = await testRunner({
          secrets: t.secrets,
          models: t.models,
        });
        const seen: string[] = [];
        const kinds = {
          "four oh one": "auth",
          "four hundred": "config",
          "five hundred": "generic",
        };
        for (const [prompt, kind] of Object.entries(kinds)) {
          const chat = await t.call("POST", base, {
            token: me.token,
            body: { content: text(prompt), model_config_id: modelId },
          });
          expect(chat.status, chat.text).toBe(201);
          runner.wake();
          const state = await settled(t.pool, chat.json.id, "error");
          expect(state.last_error?.kind, routing.mode).toBe(kind);
          for (const path of [`${base}/${chat.json.id}`, `${base}/${chat.json.id}/messages`]) {
            seen.push((await t.call("GET", path, { token: me.token })).text);
          }
          const { rows } = await t.pool.query(
            "SELECT payload FROM chat_events WHERE chat_id = $1",
            [chat.json.id],
          );
          seen.push(JSON.stringify(rows), JSON.stringify(state));
        }
        // Before the next routing's app (another secret key) stores chats in the same database.
        await runner.stop();
        // The provider did see it: the test would prove nothing otherwise.
        expect(echo.requests.some((r) => JSON.stringify(r.headers).includes(planted))).toBe(true);
        seen.push(JSON.stringify(published), ...logLines, ...t.logLines);
        expect(seen.join("\n"), routing.mode).not.toContain(planted);
        expect(seen.join("\n"), routing.mode).not.toContain(planted.slice(8));
      }
    } finally {
      await echo.close();
    }
  });
});
