import { randomBytes, randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { SecretDecryptionError } from "../../src/lib/secrets.ts";
import { createApp } from "../../src/server/app.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger, testApp } from "../setup/app.ts";

/*
 * Models: provider and model-config administration (/providers, /model-configs; provider
 * secrets encrypted at rest, never returned, never logged: docs/operations.md "Secret key"), and
 * the enabled models any user may pick (GET /models). docs/api.md has the routes.
 */

const base = "/api/experimental/chats";
const timestamp = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);

let t: Awaited<ReturnType<typeof testApp>>;
let owner: string;
let member: string;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  const org = await gen.organization(t.pool);
  orgId = org.id;
  owner = await gen.apiKey(
    t.pool,
    (await gen.user(t.pool, { owner: true, organizationIds: [org.id] })).id,
  );
  member = await gen.apiKey(t.pool, (await gen.user(t.pool, { organizationIds: [org.id] })).id);
});

const asOwner = (method: string, path: string, body?: unknown) =>
  t.call(method, `${base}${path}`, { token: owner, body });

/** A URL no other test uses, so the one-provider-per-endpoint rule never couples tests. */
const uniqueUrl = () => `https://${randomBytes(5).toString("hex")}.example.test/v1`;
/** Looks like a real key and is unique, so a trace of it anywhere is unambiguous. */
const fakeApiKey = () => `sk-test-${randomBytes(18).toString("hex")}`;

async function createProvider(body: Record<string, unknown> = {}) {
  const res = await asOwner("POST", "/providers", {
    provider: "openai-compatible",
    base_url: uniqueUrl(),
    ...body,
  });
  expect(res.status, res.text).toBe(201);
  return res.json as { id: string; has_api_key: boolean; updated_at: string };
}

interface ModelConfig {
  id: string;
  provider_id: string;
  model: string;
  enabled: boolean;
  is_default: boolean;
  pricing: unknown;
}

async function createModelConfig(body: Record<string, unknown> = {}) {
  const providerId = (body.provider_id as string | undefined) ?? (await createProvider()).id;
  const res = await asOwner("POST", "/model-configs", {
    provider_id: providerId,
    model: gen.uniqueName("model"),
    context_limit: 100_000,
    ...body,
  });
  expect(res.status, res.text).toBe(201);
  return res.json as ModelConfig;
}

async function ciphertextOf(providerId: string): Promise<Buffer | null> {
  const { rows } = await t.pool.query(
    "SELECT api_key_ciphertext FROM chat_providers WHERE id = $1",
    [providerId],
  );
  return rows[0].api_key_ciphertext;
}

async function defaultIds(): Promise<string[]> {
  const { rows } = await t.pool.query("SELECT id FROM chat_model_configs WHERE is_default");
  return rows.map((r) => r.id);
}

interface ListedModel {
  id: string;
  model: string;
  is_default: boolean;
}

interface ListedProvider {
  id: string;
  provider: string;
  models: ListedModel[];
}

const newMember = () => gen.member(t.pool, { organizationIds: [orgId] });

async function models(who: { token: string }): Promise<ListedProvider[]> {
  const res = await t.call("GET", "/api/experimental/chats/models", { token: who.token });
  expect(res.status, res.text).toBe(200);
  return res.json.providers as ListedProvider[];
}

const allModelIds = (providers: ListedProvider[]) =>
  providers.flatMap((p) => p.models.map((m) => m.id));

// First: it reads the catalogue as seeded, before the administration tests below change it.
describe("GET /api/experimental/chats/models", () => {
  it("lists the seeded local echo model as the default", async () => {
    const me = await newMember();
    const providers = await models(me);
    const local = providers.filter((p) => p.provider === "local");
    expect(local).toHaveLength(1);
    const echo = local[0]!.models.find((m) => m.model === "echo");
    expect(echo).toMatchObject({ model: "echo", is_default: true });
    // One default at a time.
    expect(providers.flatMap((p) => p.models).filter((m) => m.is_default)).toEqual([echo]);
  });

  it("leaves out disabled and deleted model configs and every model of a disabled provider", async () => {
    const me = await newMember();
    const provider = await gen.chatProvider(t.pool);
    const enabled = await gen.modelConfig(t.pool, { providerId: provider.id });
    const disabled = await gen.modelConfig(t.pool, { providerId: provider.id, enabled: false });
    const deleted = await gen.modelConfig(t.pool, { providerId: provider.id });
    await t.pool.query("UPDATE chat_model_configs SET deleted = true WHERE id = $1", [deleted.id]);
    const offProvider = await gen.chatProvider(t.pool, { enabled: false });
    const onOffProvider = await gen.modelConfig(t.pool, { providerId: offProvider.id });

    const providers = await models(me);
    const ids = allModelIds(providers);
    expect(ids).toContain(enabled.id);
    expect(ids).not.toContain(disabled.id);
    expect(ids).not.toContain(deleted.id);
    expect(ids).not.toContain(onOffProvider.id);
    expect(providers.map((p) => p.id)).not.toContain(offProvider.id);
  });

  it("groups models per provider, each provider once with all its enabled models", async () => {
    const me = await newMember();
    const p1 = await gen.chatProvider(t.pool, { provider: "openai" });
    const p2 = await gen.chatProvider(t.pool, { provider: "anthropic" });
    const a = await gen.modelConfig(t.pool, { providerId: p1.id, model: "gpt-a" });
    const b = await gen.modelConfig(t.pool, { providerId: p1.id, model: "gpt-b" });
    const c = await gen.modelConfig(t.pool, { providerId: p2.id, model: "claude-c" });

    const providers = await models(me);
    const ids = providers.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const g1 = providers.find((p) => p.id === p1.id);
    const g2 = providers.find((p) => p.id === p2.id);
    expect(g1?.provider).toBe("openai");
    expect(g1?.models.map((m) => m.id).sort()).toEqual([a.id, b.id].sort());
    expect(g2?.provider).toBe("anthropic");
    expect(g2?.models.map((m) => m.id)).toEqual([c.id]);
    // Each model id is listed exactly once overall.
    const all = allModelIds(providers);
    expect(new Set(all).size).toBe(all.length);
  });

  it("requires authentication", async () => {
    expect((await t.call("GET", "/api/experimental/chats/models")).status).toBe(401);
  });
});

describe("access", () => {
  it("answers 403 to members and 401 without a token on every provider and model-config route", async () => {
    const id = randomUUID();
    const routes: [string, string, unknown?][] = [
      ["GET", "/providers"],
      ["POST", "/providers", { provider: "openai" }],
      ["PATCH", `/providers/${id}`, { enabled: false }],
      ["DELETE", `/providers/${id}`],
      ["GET", "/model-configs"],
      ["POST", "/model-configs", { provider_id: id, model: "m", context_limit: 1 }],
      ["PATCH", `/model-configs/${id}`, { enabled: false }],
      ["DELETE", `/model-configs/${id}`],
    ];
    for (const [method, path, body] of routes) {
      const asMember = await t.call(method, `${base}${path}`, { token: member, body });
      expect(asMember.status, `${method} ${path}`).toBe(403);
      const anonymous = await t.call(method, `${base}${path}`, { body });
      expect(anonymous.status, `${method} ${path}`).toBe(401);
    }
  });
});

describe("providers", () => {
  it("creates a provider and shows it without the key, only has_api_key", async () => {
    const url = uniqueUrl();
    const res = await asOwner("POST", "/providers", {
      provider: "openai-compatible",
      display_name: "Gateway",
      base_url: url,
      api_key: fakeApiKey(),
    });
    expect(res.status, res.text).toBe(201);
    expect(res.json).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      provider: "openai-compatible",
      display_name: "Gateway",
      base_url: url,
      enabled: true,
      has_api_key: true,
      central_key_enabled: true,
      allow_user_key: false,
      central_fallback: false,
      created_at: timestamp,
      updated_at: timestamp,
    });
    const list = await asOwner("GET", "/providers");
    expect(list.status).toBe(200);
    expect(list.json).toContainEqual(res.json);

    const keyless = await createProvider({ enabled: false });
    expect(keyless).toMatchObject({ has_api_key: false, enabled: false });
  });

  it("never returns or logs the API key, and stores only a ciphertext bound to the provider", async () => {
    const apiKey = fakeApiKey();
    const created = await asOwner("POST", "/providers", {
      provider: "openai-compatible",
      base_url: uniqueUrl(),
      api_key: apiKey,
    });
    expect(created.status).toBe(201);
    const id = created.json.id as string;
    const responses = [
      created,
      await asOwner("GET", "/providers"),
      await asOwner("PATCH", `/providers/${id}`, { display_name: "renamed" }),
    ];
    for (const r of responses) expect(r.text).not.toContain(apiKey);
    expect(t.logLines.join("\n")).not.toContain(apiKey);

    const sealed = (await ciphertextOf(id))!;
    expect(sealed.includes(Buffer.from(apiKey))).toBe(false);
    expect(sealed.includes(Buffer.from(apiKey).toString("base64"))).toBe(false);
    // version | 12-byte IV | ciphertext | 16-byte tag
    expect(sealed[0]).toBe(1);
    expect(sealed.length).toBe(1 + 12 + Buffer.byteLength(apiKey) + 16);
    expect(await t.secrets.decrypt(sealed, id)).toBe(apiKey);

    // The provider id is the associated data: the same bytes in another row do not open.
    const other = await createProvider();
    await t.pool.query("UPDATE chat_providers SET api_key_ciphertext = $1 WHERE id = $2", [
      sealed,
      other.id,
    ]);
    await expect(t.secrets.decrypt((await ciphertextOf(other.id))!, other.id)).rejects.toThrow(
      SecretDecryptionError,
    );
  });

  it("leaves no trace of the API key when the request fails", async () => {
    const url = uniqueUrl();
    await createProvider({ base_url: url });
    const apiKey = fakeApiKey();
    const failures = [
      await asOwner("POST", "/providers", {
        provider: "openai-compatible",
        base_url: url,
        api_key: apiKey,
      }),
      await asOwner("POST", "/providers", {
        provider: "openai",
        base_url: "ftp://nope",
        api_key: apiKey,
      }),
      await asOwner("POST", "/providers", { provider: "openai-compatible", api_key: apiKey }),
      await asOwner("PATCH", `/providers/${randomUUID()}`, { api_key: apiKey }),
      await t.call("POST", `${base}/providers`, {
        token: member,
        body: { provider: "openai", api_key: apiKey },
      }),
    ];
    expect(failures.map((r) => r.status)).toEqual([409, 400, 400, 404, 403]);
    for (const r of failures) expect(r.text).not.toContain(apiKey);
    expect(t.logLines.join("\n")).not.toContain(apiKey);
  });

  it("rejects a duplicate: the same kind with the same base_url, NULL and '' alike (409)", async () => {
    const first = await asOwner("POST", "/providers", { provider: "anthropic" });
    expect(first.status, first.text).toBe(201);
    expect(first.json.base_url).toBeNull();
    for (const base_url of [null, ""]) {
      const dup = await asOwner("POST", "/providers", { provider: "anthropic", base_url });
      expect(dup.status).toBe(409);
      expect(dup.json.message).toMatch(/already exists/);
    }

    const url = uniqueUrl();
    await createProvider({ base_url: url });
    const trailingSlash = await asOwner("POST", "/providers", {
      provider: "openai-compatible",
      base_url: `${url}/`,
    });
    expect(trailingSlash.status).toBe(409);
    // Another kind at the same URL is another provider.
    const otherKind = await asOwner("POST", "/providers", { provider: "openai", base_url: url });
    expect(otherKind.status).toBe(201);
  });

  it("rejects a PATCH that turns a provider into a duplicate (409)", async () => {
    const url = uniqueUrl();
    await createProvider({ base_url: url });
    const other = await createProvider();
    const res = await asOwner("PATCH", `/providers/${other.id}`, { base_url: url });
    expect(res.status).toBe(409);
  });

  it("requires base_url to be an http(s) URL with a host and no credentials (400)", async () => {
    for (const base_url of [
      "ftp://example.test",
      "example.test/v1",
      "http://",
      "https://user:secret@example.test/v1",
      "https://exa mple.test",
      42,
    ]) {
      const res = await asOwner("POST", "/providers", { provider: "openai", base_url });
      expect(res.status, String(base_url)).toBe(400);
      expect(res.json.validations[0].field).toBe("base_url");
    }
    const http = await createProvider({ base_url: `http://127.0.0.1:1/${randomUUID()}` });
    expect(http.id).toBeTruthy();
  });

  it("requires a base_url for openai-compatible, on create and when a PATCH clears it (400)", async () => {
    for (const body of [{}, { base_url: null }, { base_url: "" }]) {
      const res = await asOwner("POST", "/providers", { provider: "openai-compatible", ...body });
      expect(res.status).toBe(400);
      expect(res.json.message).toMatch(/openai-compatible provider needs a base_url/);
    }
    const p = await createProvider();
    const cleared = await asOwner("PATCH", `/providers/${p.id}`, { base_url: null });
    expect(cleared.status).toBe(400);
  });

  it("PATCH changes only what it names: api_key null clears the key, absent keeps it", async () => {
    const firstKey = fakeApiKey();
    const p = await createProvider({ api_key: firstKey, display_name: "before" });
    const sealed = await ciphertextOf(p.id);

    const renamed = await asOwner("PATCH", `/providers/${p.id}`, { display_name: "after" });
    expect(renamed.status).toBe(200);
    expect(renamed.json).toMatchObject({ display_name: "after", has_api_key: true, enabled: true });
    expect(renamed.json.updated_at > p.updated_at).toBe(true);
    expect(await ciphertextOf(p.id)).toEqual(sealed);

    const secondKey = fakeApiKey();
    const rekeyed = await asOwner("PATCH", `/providers/${p.id}`, { api_key: secondKey });
    expect(rekeyed.json).toMatchObject({ display_name: "after", has_api_key: true });
    expect(await t.secrets.decrypt((await ciphertextOf(p.id))!, p.id)).toBe(secondKey);

    const disabled = await asOwner("PATCH", `/providers/${p.id}`, { enabled: false });
    expect(disabled.json).toMatchObject({ enabled: false, has_api_key: true });

    const cleared = await asOwner("PATCH", `/providers/${p.id}`, { api_key: null });
    expect(cleared.json).toMatchObject({ has_api_key: false, enabled: false });
    expect(await ciphertextOf(p.id)).toBeNull();
  });

  it("does not change a provider's kind (400) or accept an empty api_key (400)", async () => {
    const p = await createProvider();
    const kind = await asOwner("PATCH", `/providers/${p.id}`, { provider: "openai" });
    expect(kind.status).toBe(400);
    const empty = await asOwner("PATCH", `/providers/${p.id}`, { api_key: "" });
    expect(empty.status).toBe(400);
  });

  it("answers 404 to PATCH and DELETE of an unknown or deleted provider", async () => {
    const p = await createProvider();
    expect((await asOwner("DELETE", `/providers/${p.id}`)).status).toBe(204);
    for (const id of [p.id, randomUUID()]) {
      expect((await asOwner("PATCH", `/providers/${id}`, { enabled: true })).status).toBe(404);
      expect((await asOwner("DELETE", `/providers/${id}`)).status).toBe(404);
    }
    const notUuid = await asOwner("DELETE", "/providers/not-a-uuid");
    expect(notUuid.status).toBe(400);
  });

  it("refuses to delete a provider with live model configs (409); once they are deleted it goes, with its key", async () => {
    const url = uniqueUrl();
    const p = await createProvider({ base_url: url, api_key: fakeApiKey() });
    const a = await createModelConfig({ provider_id: p.id });
    const b = await createModelConfig({ provider_id: p.id });

    const refused = await asOwner("DELETE", `/providers/${p.id}`);
    expect(refused.status).toBe(409);
    expect(refused.json).toMatchObject({
      message: "The provider still has model configs.",
      detail: expect.stringMatching(/^2 model config/),
    });

    expect((await asOwner("DELETE", `/model-configs/${a.id}`)).status).toBe(204);
    expect((await asOwner("DELETE", `/providers/${p.id}`)).status).toBe(409);
    expect((await asOwner("DELETE", `/model-configs/${b.id}`)).status).toBe(204);
    expect((await asOwner("DELETE", `/providers/${p.id}`)).status).toBe(204);

    const list = await asOwner("GET", "/providers");
    expect(list.json.map((x: { id: string }) => x.id)).not.toContain(p.id);
    // The row stays for the deleted configs that point at it, disabled and without its key.
    const { rows } = await t.pool.query(
      "SELECT deleted, enabled, api_key_ciphertext FROM chat_providers WHERE id = $1",
      [p.id],
    );
    expect(rows).toEqual([{ deleted: true, enabled: false, api_key_ciphertext: null }]);
    // Its endpoint is free again.
    await createProvider({ base_url: url });
  });

  it("never leaves a model config on a deleted provider when create and delete race", async () => {
    for (let round = 0; round < 5; round++) {
      const p = await createProvider();
      const [created, deleted] = await Promise.all([
        asOwner("POST", "/model-configs", {
          provider_id: p.id,
          model: "racer",
          context_limit: 1000,
        }),
        asOwner("DELETE", `/providers/${p.id}`),
      ]);
      // Either the config came first (the delete sees it: 409) or the delete did (400).
      expect([
        [201, 409],
        [400, 204],
      ]).toContainEqual([created.status, deleted.status]);
      const { rows } = await t.pool.query(
        `SELECT count(*)::int AS n FROM chat_model_configs m JOIN chat_providers p ON p.id = m.provider_id
         WHERE p.id = $1 AND p.deleted AND NOT m.deleted`,
        [p.id],
      );
      expect(rows[0].n).toBe(0);
    }
  });

  it("refuses to disable the provider of the default model config (409)", async () => {
    const p = await createProvider();
    await createModelConfig({ provider_id: p.id, is_default: true });
    const res = await asOwner("PATCH", `/providers/${p.id}`, { enabled: false });
    expect(res.status).toBe(409);
    expect(res.json.message).toMatch(/default model config cannot be disabled/);
    expect((await asOwner("GET", "/providers")).json).toContainEqual(
      expect.objectContaining({ id: p.id, enabled: true }),
    );
  });

  it("deletes the seeded local provider only under the same rule: not while echo is live", async () => {
    const { rows } = await t.pool.query(
      "SELECT p.id AS provider_id, m.id AS echo_id FROM chat_providers p JOIN chat_model_configs m ON m.provider_id = p.id WHERE p.provider = 'local' AND NOT p.deleted",
    );
    const { provider_id, echo_id } = rows[0];
    expect((await asOwner("DELETE", `/providers/${provider_id}`)).status).toBe(409);

    // echo may be the default; another default first, then echo can go, then the provider.
    await createModelConfig({ is_default: true });
    expect((await asOwner("DELETE", `/model-configs/${echo_id}`)).status).toBe(204);
    expect((await asOwner("DELETE", `/providers/${provider_id}`)).status).toBe(204);
    const list = await asOwner("GET", "/providers");
    expect(list.json.map((p: { provider: string }) => p.provider)).not.toContain("local");
  });

  it("answers 503 to a request that would store a key on an app without secrets", async () => {
    const app = createApp({ db: t.pool, logger: captureLogger().logger });
    const call = (body: unknown) =>
      app.request(`${base}/providers`, {
        method: "POST",
        headers: { authorization: `Bearer ${owner}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const url = uniqueUrl();
    const withKey = await call({ provider: "openai", base_url: url, api_key: fakeApiKey() });
    expect(withKey.status).toBe(503);
    // Nothing was stored, and a request without a key works.
    expect((await call({ provider: "openai", base_url: url })).status).toBe(201);
  });
});

describe("users' own keys", () => {
  const userKey = (providerId: string, token: string, body?: unknown, method = "PUT") =>
    t.call(method, `${base}/providers/${providerId}/user-key`, { token, body });
  const hasUserKey = async (token: string, providerId: string) =>
    (await models({ token })).find((p) => p.id === providerId) as unknown as {
      has_user_api_key: boolean;
      available: boolean;
    };

  it("a member stores, replaces and removes their own key; it is never returned and never logged", async () => {
    const provider = await createProvider({ central_key_enabled: false, allow_user_key: true });
    await createModelConfig({ provider_id: provider.id });
    const me = await newMember();
    expect(await hasUserKey(me.token, provider.id)).toMatchObject({
      has_user_api_key: false,
      available: false,
    });
    const keys = [fakeApiKey(), fakeApiKey()];
    for (const key of keys) {
      const put = await userKey(provider.id, me.token, { api_key: key });
      expect(put.status, put.text).toBe(204);
    }
    const { rows } = await t.pool.query(
      "SELECT count(*)::int AS n FROM chat_provider_user_keys WHERE provider_id = $1",
      [provider.id],
    );
    expect(rows[0].n).toBe(1);
    const listedWithKey = await models(me);
    expect(listedWithKey.find((p) => p.id === provider.id)).toMatchObject({
      has_user_api_key: true,
      available: true,
    });
    // Another member sees their own state, not this one's.
    expect(await hasUserKey((await newMember()).token, provider.id)).toMatchObject({
      has_user_api_key: false,
    });
    const removed = await userKey(provider.id, me.token, undefined, "DELETE");
    expect(removed.status, removed.text).toBe(204);
    expect((await userKey(provider.id, me.token, undefined, "DELETE")).status).toBe(204);
    expect(await hasUserKey(me.token, provider.id)).toMatchObject({ has_user_api_key: false });
    const everything = JSON.stringify(listedWithKey) + t.logLines.join("\n");
    for (const key of keys) expect(everything).not.toContain(key);
  });

  it("refuses a key for a provider that does not accept users' keys (400), or an unknown or deleted one (404), and bad bodies (400), storing nothing", async () => {
    const me = await newMember();
    const central = await createProvider();
    const deleted = await createProvider({ allow_user_key: true });
    expect((await asOwner("DELETE", `/providers/${deleted.id}`)).status).toBe(204);
    const open = await createProvider({ allow_user_key: true });
    const key = fakeApiKey();
    const refused = [
      await userKey(central.id, me.token, { api_key: key }),
      await userKey(randomUUID(), me.token, { api_key: key }),
      await userKey(deleted.id, me.token, { api_key: key }),
      await userKey(randomUUID(), me.token, undefined, "DELETE"),
      await userKey(open.id, me.token, { api_key: "" }),
      await userKey(open.id, me.token, { api_key: key, user_id: randomUUID() }),
      await userKey(open.id, me.token, { api_key: "x".repeat(5000) }),
      await userKey("not-a-uuid", me.token, { api_key: key }),
      await t.call("PUT", `${base}/providers/${open.id}/user-key`, { body: { api_key: key } }),
    ];
    expect(refused.map((r) => r.status)).toEqual([400, 404, 404, 404, 400, 400, 400, 400, 401]);
    expect(refused[0]!.json.message).toMatch(/does not accept users' own keys/);
    for (const r of refused) expect(r.text).not.toContain(key);
    const { rows } = await t.pool.query(
      "SELECT count(*)::int AS n FROM chat_provider_user_keys WHERE provider_id = ANY ($1)",
      [[central.id, deleted.id, open.id]],
    );
    expect(rows[0].n).toBe(0);
  });

  it("deleting a provider deletes its users' keys", async () => {
    const provider = await createProvider({ allow_user_key: true });
    const me = await newMember();
    expect((await userKey(provider.id, me.token, { api_key: fakeApiKey() })).status).toBe(204);
    expect((await asOwner("DELETE", `/providers/${provider.id}`)).status).toBe(204);
    const { rows } = await t.pool.query(
      "SELECT count(*)::int AS n FROM chat_provider_user_keys WHERE provider_id = $1",
      [provider.id],
    );
    expect(rows[0].n).toBe(0);
  });

  it("a site owner sets the key policy; one no key can satisfy is 400 and changes nothing", async () => {
    const provider = await createProvider();
    const patched = await asOwner("PATCH", `/providers/${provider.id}`, {
      allow_user_key: true,
      central_fallback: true,
    });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json).toMatchObject({
      central_key_enabled: true,
      allow_user_key: true,
      central_fallback: true,
    });
    const bad = [
      [{ central_key_enabled: false }, /central_fallback needs both/],
      [
        { central_fallback: false, allow_user_key: false, central_key_enabled: false },
        /must allow/,
      ],
    ] as const;
    for (const [body, message] of bad) {
      const res = await asOwner("PATCH", `/providers/${provider.id}`, body);
      expect(res.status, res.text).toBe(400);
      expect(res.json.message).toMatch(message);
    }
    const local = await asOwner("POST", "/providers", {
      provider: "local",
      base_url: uniqueUrl(),
      allow_user_key: true,
    });
    expect(local.status).toBe(400);
    expect(local.json.message).toMatch(/local provider takes no keys/);
    const after = await asOwner("GET", "/providers");
    expect(after.json.find((p: { id: string }) => p.id === provider.id)).toMatchObject({
      central_key_enabled: true,
      allow_user_key: true,
      central_fallback: true,
    });
  });
});

describe("model configs", () => {
  it("creates a model config and shows the ModelConfig shape with pricing", async () => {
    const p = await createProvider();
    const res = await asOwner("POST", "/model-configs", {
      provider_id: p.id,
      model: "gpt-test",
      display_name: "GPT Test",
      context_limit: 200_000,
      pricing: { input: 2_500_000, output: 10_000_000, cache_read: 1_250_000, cache_write: 0 },
    });
    expect(res.status, res.text).toBe(201);
    expect(res.json).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      provider_id: p.id,
      provider: "openai-compatible",
      model: "gpt-test",
      display_name: "GPT Test",
      context_limit: 200_000,
      enabled: true,
      is_default: false,
      pricing: { input: 2_500_000, output: 10_000_000, cache_read: 1_250_000, cache_write: 0 },
      store_responses: false,
      created_at: timestamp,
      updated_at: timestamp,
    });
    const list = await asOwner("GET", "/model-configs");
    expect(list.status).toBe(200);
    expect(list.json).toContainEqual(res.json);
  });

  it("stores a model config without pricing as free (pricing null)", async () => {
    const m = await createModelConfig({ enabled: false });
    expect(m).toMatchObject({ pricing: null, enabled: false });
    const { rows } = await t.pool.query(
      "SELECT input_price_micros, output_price_micros, cache_read_price_micros, cache_write_price_micros FROM chat_model_configs WHERE id = $1",
      [m.id],
    );
    expect(Object.values(rows[0])).toEqual([null, null, null, null]);
  });

  it("rejects pricing that is negative, fractional or incomplete, and a bad context_limit (400)", async () => {
    const p = await createProvider();
    const full = { input: 1, output: 1, cache_read: 1, cache_write: 1 };
    for (const extra of [
      { pricing: { ...full, input: -1 } },
      { pricing: { ...full, output: 1.5 } },
      { pricing: { input: 1, output: 1 } },
      { pricing: { ...full, extra: 1 } },
      { context_limit: 0 },
      { context_limit: 2 ** 31 },
      { model: "  " },
    ]) {
      const res = await asOwner("POST", "/model-configs", {
        provider_id: p.id,
        model: "m",
        context_limit: 1000,
        ...extra,
      });
      expect(res.status, JSON.stringify(extra)).toBe(400);
    }
  });

  it("rejects an unknown or deleted provider_id (400)", async () => {
    const unknown = await asOwner("POST", "/model-configs", {
      provider_id: randomUUID(),
      model: "m",
      context_limit: 1000,
    });
    expect(unknown.status).toBe(400);
    expect(unknown.json.message).toBe("Provider not found.");

    const p = await createProvider();
    expect((await asOwner("DELETE", `/providers/${p.id}`)).status).toBe(204);
    const deleted = await asOwner("POST", "/model-configs", {
      provider_id: p.id,
      model: "m",
      context_limit: 1000,
    });
    expect(deleted.status).toBe(400);
    const m = await createModelConfig();
    const moved = await asOwner("PATCH", `/model-configs/${m.id}`, { provider_id: p.id });
    expect(moved.status).toBe(400);
  });

  it("PATCH changes only what it names; pricing null makes the model free", async () => {
    const m = await createModelConfig({
      display_name: "before",
      pricing: { input: 5, output: 6, cache_read: 7, cache_write: 8 },
    });
    const renamed = await asOwner("PATCH", `/model-configs/${m.id}`, {
      display_name: "after",
      context_limit: 64_000,
    });
    expect(renamed.status, renamed.text).toBe(200);
    expect(renamed.json).toMatchObject({
      display_name: "after",
      context_limit: 64_000,
      model: m.model,
      enabled: true,
      pricing: { input: 5, output: 6, cache_read: 7, cache_write: 8 },
    });
    const other = await createProvider({ provider: "openai", base_url: uniqueUrl() });
    const moved = await asOwner("PATCH", `/model-configs/${m.id}`, {
      provider_id: other.id,
      model: "renamed-model",
      enabled: false,
    });
    expect(moved.json).toMatchObject({
      provider_id: other.id,
      provider: "openai",
      model: "renamed-model",
      enabled: false,
      pricing: { input: 5, output: 6, cache_read: 7, cache_write: 8 },
    });
    const free = await asOwner("PATCH", `/model-configs/${m.id}`, { pricing: null });
    expect(free.json).toMatchObject({ pricing: null, display_name: "after", enabled: false });
  });

  it("making one model config the default clears the previous default in the same request", async () => {
    const first = await createModelConfig({ is_default: true });
    expect(first.is_default).toBe(true);
    expect(await defaultIds()).toEqual([first.id]);

    const second = await createModelConfig();
    const res = await asOwner("PATCH", `/model-configs/${second.id}`, { is_default: true });
    expect(res.status).toBe(200);
    expect(res.json.is_default).toBe(true);
    expect(await defaultIds()).toEqual([second.id]);
    const list = (await asOwner("GET", "/model-configs")).json as {
      id: string;
      is_default: boolean;
    }[];
    expect(list.filter((m) => m.is_default).map((m) => m.id)).toEqual([second.id]);

    // Making the default the default again changes nothing.
    const again = await asOwner("PATCH", `/model-configs/${second.id}`, { is_default: true });
    expect(again.status).toBe(200);
    expect(await defaultIds()).toEqual([second.id]);
  });

  it("leaves exactly one default when many make-default requests race", async () => {
    for (let round = 0; round < 3; round++) {
      const configs = await Promise.all(Array.from({ length: 4 }, () => createModelConfig()));
      const provider = await createProvider();
      const results = await Promise.all([
        ...configs.map((m) => asOwner("PATCH", `/model-configs/${m.id}`, { is_default: true })),
        ...Array.from({ length: 4 }, () =>
          asOwner("POST", "/model-configs", {
            provider_id: provider.id,
            model: "racing-default",
            context_limit: 1000,
            is_default: true,
          }),
        ),
      ]);
      expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 201, 201, 201, 201]);
      const defaults = await defaultIds();
      expect(defaults).toHaveLength(1);
      // The winner is one of the racers, and the API agrees with the table.
      const racers = [...configs.map((m) => m.id), ...results.slice(4).map((r) => r.json.id)];
      expect(racers).toContain(defaults[0]);
      const list = (await asOwner("GET", "/model-configs")).json as { is_default: boolean }[];
      expect(list.filter((m) => m.is_default)).toHaveLength(1);
    }
  });

  it("keeps the default usable: it cannot be disabled, un-defaulted or deleted (409)", async () => {
    const m = await createModelConfig({ is_default: true });
    const disable = await asOwner("PATCH", `/model-configs/${m.id}`, { enabled: false });
    expect(disable.status).toBe(409);
    expect(disable.json.message).toMatch(/default model config must stay enabled/);
    const undefault = await asOwner("PATCH", `/model-configs/${m.id}`, { is_default: false });
    expect(undefault.status).toBe(409);
    expect(undefault.json.detail).toMatch(/another model config the default/);
    const del = await asOwner("DELETE", `/model-configs/${m.id}`);
    expect(del.status).toBe(409);
    expect(del.json.message).toBe("The default model config cannot be deleted.");
    expect(await defaultIds()).toEqual([m.id]);

    // is_default false on a config that is not the default is a no-op.
    const other = await createModelConfig();
    const noop = await asOwner("PATCH", `/model-configs/${other.id}`, { is_default: false });
    expect(noop.status).toBe(200);
  });

  it("rejects a default that is disabled in the same body (400) or sits on a disabled provider (409)", async () => {
    const p = await createProvider();
    const body = { provider_id: p.id, model: "m", context_limit: 1000 };
    const create = await asOwner("POST", "/model-configs", {
      ...body,
      is_default: true,
      enabled: false,
    });
    expect(create.status).toBe(400);
    expect(create.json.validations[0].field).toBe("enabled");

    const m = await createModelConfig({ provider_id: p.id });
    const patch = await asOwner("PATCH", `/model-configs/${m.id}`, {
      is_default: true,
      enabled: false,
    });
    expect(patch.status).toBe(400);

    const off = await createProvider({ enabled: false });
    const onOff = await createModelConfig({ provider_id: off.id });
    const makeDefault = await asOwner("PATCH", `/model-configs/${onOff.id}`, { is_default: true });
    expect(makeDefault.status).toBe(409);
    expect(makeDefault.json.message).toMatch(/disabled provider/);
    const createDefault = await asOwner("POST", "/model-configs", {
      ...body,
      provider_id: off.id,
      is_default: true,
    });
    expect(createDefault.status).toBe(409);

    // Nor can the default move to a disabled provider.
    const d = await createModelConfig({ is_default: true });
    const move = await asOwner("PATCH", `/model-configs/${d.id}`, { provider_id: off.id });
    expect(move.status).toBe(409);
  });

  it("soft-deletes: a deleted config is not listed and is 404 on PATCH and DELETE, but its row stays", async () => {
    const m = await createModelConfig();
    expect((await asOwner("DELETE", `/model-configs/${m.id}`)).status).toBe(204);
    const list = (await asOwner("GET", "/model-configs")).json as { id: string }[];
    expect(list.map((x) => x.id)).not.toContain(m.id);
    expect((await asOwner("PATCH", `/model-configs/${m.id}`, { enabled: true })).status).toBe(404);
    expect((await asOwner("PATCH", `/model-configs/${m.id}`, { is_default: true })).status).toBe(
      404,
    );
    expect((await asOwner("DELETE", `/model-configs/${m.id}`)).status).toBe(404);
    expect((await asOwner("DELETE", `/model-configs/${randomUUID()}`)).status).toBe(404);
    const { rows } = await t.pool.query("SELECT deleted FROM chat_model_configs WHERE id = $1", [
      m.id,
    ]);
    expect(rows).toEqual([{ deleted: true }]);
  });
});
