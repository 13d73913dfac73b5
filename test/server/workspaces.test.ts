import { beforeAll, describe, expect, it } from "vitest";
import { getWorkspaceByID } from "../../src/generated/workspaces.ts";
import { authenticateAgent } from "../../src/server/auth.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { newPool } from "../setup/db.ts";

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;
let ownerToken: string;
let alice: { id: string; token: string };
let bob: { id: string; token: string };

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
  const owner = await gen.user(t.pool, { owner: true });
  ownerToken = await gen.apiKey(t.pool, owner.id);
  const a = await gen.user(t.pool, { organizationIds: [orgId] });
  const b = await gen.user(t.pool, { organizationIds: [orgId] });
  alice = { id: a.id, token: await gen.apiKey(t.pool, a.id) };
  bob = { id: b.id, token: await gen.apiKey(t.pool, b.id) };
});

describe("POST /api/v2/organizations/{org}/workspaces", () => {
  it("creates a workspace owned by the calling member", async () => {
    const res = await t.call("POST", `/api/v2/organizations/${orgId}/workspaces`, {
      token: alice.token,
      body: { name: "dev" },
    });
    expect(res.status).toBe(201);
    expect(res.json).toEqual({
      id: expect.any(String),
      name: "dev",
      owner_id: alice.id,
      organization_id: orgId,
    });
  });

  it("keeps workspace names unique per owner (409), not across owners", async () => {
    const body = { name: "shared-name" };
    const path = `/api/v2/organizations/${orgId}/workspaces`;
    expect((await t.call("POST", path, { token: alice.token, body })).status).toBe(201);
    expect(
      (await t.call("POST", path, { token: alice.token, body: { name: "Shared-Name" } })).status,
    ).toBe(409);
    expect((await t.call("POST", path, { token: bob.token, body })).status).toBe(201);
  });

  it("forbids non-members (403) and creating for someone else unless owner", async () => {
    const other = await gen.organization(t.pool);
    expect(
      (
        await t.call("POST", `/api/v2/organizations/${other.id}/workspaces`, {
          token: alice.token,
          body: { name: "x" },
        })
      ).status,
    ).toBe(403);
    expect(
      (
        await t.call("POST", `/api/v2/organizations/${orgId}/workspaces`, {
          token: alice.token,
          body: { name: "for-bob", owner_id: bob.id },
        })
      ).status,
    ).toBe(403);
    const byOwner = await t.call("POST", `/api/v2/organizations/${orgId}/workspaces`, {
      token: ownerToken,
      body: { name: "for-bob", owner_id: bob.id },
    });
    expect(byOwner.status).toBe(201);
    expect(byOwner.json.owner_id).toBe(bob.id);
  });

  it("rejects an owner who is not a member of the organization (400)", async () => {
    const outsider = await gen.user(t.pool);
    const res = await t.call("POST", `/api/v2/organizations/${orgId}/workspaces`, {
      token: ownerToken,
      body: { name: "outside", owner_id: outsider.id },
    });
    expect(res.status).toBe(400);
    expect(res.json.message).toMatch(/not a member/);
  });
});

describe("POST /api/v2/workspaces/{workspace}/builds", () => {
  it("creates a build whose agents get ids and tokens", async () => {
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: alice.id });
    const res = await t.call("POST", `/api/v2/workspaces/${ws.id}/builds`, {
      token: alice.token,
      body: { agents: [{ name: "main" }, { name: "gpu" }] },
    });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ workspace_id: ws.id, build_number: 1 });
    expect(res.json.agents.map((a: { name: string }) => a.name)).toEqual(["main", "gpu"]);
    for (const agent of res.json.agents) {
      const actor = await authenticateAgent(t.pool, agent.token);
      expect(actor).toMatchObject({ kind: "agent", agent: { id: agent.id, workspace_id: ws.id } });
    }
    const { rows } = await t.pool.query(
      "SELECT ordinal FROM workspace_agents WHERE build_id = $1 ORDER BY ordinal",
      [res.json.id],
    );
    expect(rows.map((r) => r.ordinal)).toEqual([0, 1]);
  });

  it("supersedes the previous build: new agent ids, and the old agents' tokens stop working", async () => {
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: alice.id });
    const first = await gen.build(t.pool, ws.id, ["main"]);
    const res = await t.call("POST", `/api/v2/workspaces/${ws.id}/builds`, {
      token: alice.token,
      body: { agents: [{ name: "main" }] },
    });
    expect(res.json.build_number).toBe(2);
    expect(res.json.agents[0].id).not.toBe(first.agents[0]!.id);
    expect(await authenticateAgent(t.pool, first.agents[0]!.token)).toBeNull();
    expect(await authenticateAgent(t.pool, res.json.agents[0].token)).not.toBeNull();
    expect((await getWorkspaceByID(t.pool, { id: ws.id }))?.latest_build_number).toBe(2);
  });

  it("rejects a wrong agent secret", async () => {
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: alice.id });
    const b = await gen.build(t.pool, ws.id, ["main"]);
    const [id] = b.agents[0]!.token.split("-");
    expect(await authenticateAgent(t.pool, `${id}-${"x".repeat(32)}`)).toBeNull();
  });

  it("hides other users' workspaces (404) but not from site owners", async () => {
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: alice.id });
    const body = { agents: [{ name: "main" }] };
    expect(
      (await t.call("POST", `/api/v2/workspaces/${ws.id}/builds`, { token: bob.token, body }))
        .status,
    ).toBe(404);
    expect(
      (await t.call("POST", `/api/v2/workspaces/${ws.id}/builds`, { token: ownerToken, body }))
        .status,
    ).toBe(201);
  });

  it("rejects duplicate agent names (400)", async () => {
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: alice.id });
    const res = await t.call("POST", `/api/v2/workspaces/${ws.id}/builds`, {
      token: alice.token,
      body: { agents: [{ name: "main" }, { name: "MAIN" }] },
    });
    expect(res.status).toBe(400);
  });

  it("numbers 20 concurrent builds 1..20 without gaps or duplicates", async () => {
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: alice.id });
    const pool = newPool(t.db.url, 20);
    const builds = await Promise.all(
      Array.from({ length: 20 }, () => gen.build(pool, ws.id, ["main"])),
    );
    expect(builds.map((b) => b.build_number).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
  });
});
