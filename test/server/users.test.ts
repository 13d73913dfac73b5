import { beforeAll, describe, expect, it } from "vitest";
import { getOrganizationByName } from "../../src/generated/organizations.ts";
import { getUserByUsername } from "../../src/generated/users.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";

let t: Awaited<ReturnType<typeof testApp>>;
let ownerToken: string;
let defaultOrgId: string;

beforeAll(async () => {
  t = await testApp();
  const org =
    (await getOrganizationByName(t.pool, { name: "default" })) ??
    (await gen.organization(t.pool, { name: "default" }));
  defaultOrgId = org.id;
  const owner = await gen.user(t.pool, { owner: true, organizationIds: [defaultOrgId] });
  ownerToken = await gen.apiKey(t.pool, owner.id);
});

describe("GET /api/v2/users/me", () => {
  it("returns the caller with roles and organization ids", async () => {
    const org = await gen.organization(t.pool);
    const u = await gen.user(t.pool, { name: "Ada", organizationIds: [org.id] });
    const token = await gen.apiKey(t.pool, u.id);
    const res = await t.call("GET", "/api/v2/users/me", { token });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      id: u.id,
      username: u.username,
      name: "Ada",
      email: null,
      roles: ["member"],
      organization_ids: [org.id],
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/),
    });
  });

  it("accepts the Coder-Session-Token header as well as Bearer", async () => {
    const res = await t.call("GET", "/api/v2/users/me", {
      headers: { "coder-session-token": ownerToken },
    });
    expect(res.status).toBe(200);
    expect(res.json.roles).toEqual(["owner"]);
  });
});

describe("authentication failures are all 401 with the same body", () => {
  it("rejects missing, malformed, unknown, wrong-secret and expired tokens alike", async () => {
    const u = await gen.user(t.pool);
    const good = await gen.apiKey(t.pool, u.id);
    const expired = await gen.apiKey(t.pool, u.id);
    await t.pool.query(
      "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
      [expired.split("-")[0]],
    );
    const [id] = good.split("-");
    const attempts: (string | undefined)[] = [
      undefined,
      "not-a-token",
      `zzzzzzzzzz-${"a".repeat(32)}`,
      `${id}-${"b".repeat(32)}`,
      expired,
    ];
    const bodies = new Set<string>();
    for (const token of attempts) {
      const res = await t.call("GET", "/api/v2/users/me", token ? { token } : {});
      expect(res.status).toBe(401);
      bodies.add(res.text);
    }
    expect(bodies.size).toBe(1);
    expect((await t.call("GET", "/api/v2/users/me", { token: good })).status).toBe(200);
  });

  it("records when a key was last used", async () => {
    const u = await gen.user(t.pool);
    const token = await gen.apiKey(t.pool, u.id);
    await t.call("GET", "/api/v2/users/me", { token });
    const { rows } = await t.pool.query("SELECT last_used_at FROM api_keys WHERE id = $1", [
      token.split("-")[0],
    ]);
    expect(rows[0].last_used_at).not.toBeNull();
  });

  it("never writes a token into the request log", async () => {
    const u = await gen.user(t.pool);
    const token = await gen.apiKey(t.pool, u.id);
    await t.call("GET", "/api/v2/users/me?x=1", { token });
    await t.call("GET", "/api/v2/users/me", { headers: { "coder-session-token": token } });
    await t.call("GET", "/api/v2/users/me", { token: `${token}x` });
    // The secret is everything after the first "-" (it may contain "-" itself).
    const secret = token.slice(token.indexOf("-") + 1);
    expect(t.logLines.length).toBeGreaterThan(0);
    expect(t.logLines.join("\n")).not.toContain(secret);
  });
});

describe("POST /api/v2/users", () => {
  it("lets an owner create a member of the default organization", async () => {
    const res = await t.call("POST", "/api/v2/users", {
      token: ownerToken,
      body: { username: "grace", name: "Grace", email: "grace@example.com" },
    });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({
      username: "grace",
      name: "Grace",
      email: "grace@example.com",
      roles: ["member"],
      organization_ids: [defaultOrgId],
    });
  });

  it("rejects a username taken in any letter case with 409", async () => {
    await gen.user(t.pool, { username: "linus" });
    const res = await t.call("POST", "/api/v2/users", {
      token: ownerToken,
      body: { username: "LINUS" },
    });
    expect(res.status).toBe(409);
    expect(res.json.message).toMatch(/username/i);
  });

  it("forbids members from creating users", async () => {
    const u = await gen.user(t.pool);
    const token = await gen.apiKey(t.pool, u.id);
    const res = await t.call("POST", "/api/v2/users", { token, body: { username: "mallory" } });
    expect(res.status).toBe(403);
    expect(await getUserByUsername(t.pool, { username: "mallory" })).toBeNull();
  });

  it("names each invalid field", async () => {
    const res = await t.call("POST", "/api/v2/users", {
      token: ownerToken,
      body: { username: "bad name!", email: "nope", roles: ["god"] },
    });
    expect(res.status).toBe(400);
    const fields = res.json.validations.map((v: { field: string }) => v.field).sort();
    expect(fields).toEqual(["email", "roles.0", "username"]);
  });

  it("creates nothing when an organization does not exist", async () => {
    const res = await t.call("POST", "/api/v2/users", {
      token: ownerToken,
      body: {
        username: "orphan",
        organization_ids: [defaultOrgId, "00000000-0000-4000-8000-000000000000"],
      },
    });
    expect(res.status).toBe(400);
    expect(await getUserByUsername(t.pool, { username: "orphan" })).toBeNull();
  });

  it("joins the listed organizations and stores the spend limit", async () => {
    const a = await gen.organization(t.pool);
    const res = await t.call("POST", "/api/v2/users", {
      token: ownerToken,
      body: {
        username: "joiner",
        organization_ids: [a.id, a.id],
        chat_spend_limit_micros: 5_000_000,
        roles: ["owner"],
      },
    });
    expect(res.status).toBe(201);
    expect(res.json.organization_ids).toEqual([a.id]);
    expect(res.json.roles).toEqual(["owner"]);
    const row = await getUserByUsername(t.pool, { username: "joiner" });
    expect(row?.chat_spend_limit_micros).toBe(5_000_000);
  });
});

describe("POST /api/v2/users/{user}/keys", () => {
  it("creates a working key for oneself, by id or as 'me'", async () => {
    const u = await gen.user(t.pool);
    const token = await gen.apiKey(t.pool, u.id);
    for (const who of [u.id, "me"]) {
      const res = await t.call("POST", `/api/v2/users/${who}/keys`, { token, body: {} });
      expect(res.status).toBe(201);
      expect(res.json.key).toMatch(/^[a-z0-9]{10}-[A-Za-z0-9_-]{22,}$/);
      const me = await t.call("GET", "/api/v2/users/me", { token: res.json.key });
      expect(me.json.id).toBe(u.id);
    }
  });

  it("stores only a hash of the secret", async () => {
    const u = await gen.user(t.pool);
    const token = await gen.apiKey(t.pool, u.id);
    const res = await t.call("POST", "/api/v2/users/me/keys", { token });
    const key: string = res.json.key;
    const id = key.slice(0, key.indexOf("-"));
    const secret = key.slice(key.indexOf("-") + 1);
    const { rows } = await t.pool.query("SELECT * FROM api_keys WHERE id = $1", [id]);
    expect(JSON.stringify(rows[0])).not.toContain(secret);
    expect(rows[0].hashed_secret).toHaveLength(32);
  });

  it("gives a key the requested lifetime", async () => {
    const u = await gen.user(t.pool);
    const token = await gen.apiKey(t.pool, u.id);
    const res = await t.call("POST", "/api/v2/users/me/keys", {
      token,
      body: { lifetime_seconds: 120 },
    });
    const { rows } = await t.pool.query(
      "SELECT extract(epoch FROM expires_at - created_at)::int AS s FROM api_keys WHERE id = $1",
      [res.json.key.split("-")[0]],
    );
    expect(rows[0].s).toBe(120);
    const bad = await t.call("POST", "/api/v2/users/me/keys", {
      token,
      body: { lifetime_seconds: 0 },
    });
    expect(bad.status).toBe(400);
  });

  it("hides other users from members (404) but lets owners create their keys", async () => {
    const a = await gen.user(t.pool);
    const b = await gen.user(t.pool);
    const tokenA = await gen.apiKey(t.pool, a.id);
    expect((await t.call("POST", `/api/v2/users/${b.id}/keys`, { token: tokenA })).status).toBe(
      404,
    );
    expect((await t.call("POST", `/api/v2/users/${b.id}/keys`, { token: ownerToken })).status).toBe(
      201,
    );
    const missing = "00000000-0000-4000-8000-000000000001";
    expect(
      (await t.call("POST", `/api/v2/users/${missing}/keys`, { token: ownerToken })).status,
    ).toBe(404);
  });

  it("rejects a path parameter that is not a UUID with 400", async () => {
    const res = await t.call("POST", "/api/v2/users/12345/keys", { token: ownerToken });
    expect(res.status).toBe(400);
    expect(res.json.validations[0].field).toBe("user");
  });
});
