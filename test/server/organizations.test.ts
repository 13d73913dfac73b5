import { beforeAll, describe, expect, it } from "vitest";
import { getGroupByID } from "../../src/generated/groups.ts";
import { getOrganizationByID } from "../../src/generated/organizations.ts";
import { getUserByID } from "../../src/generated/users.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";

let t: Awaited<ReturnType<typeof testApp>>;
let ownerToken: string;
let memberToken: string;

beforeAll(async () => {
  t = await testApp();
  const owner = await gen.user(t.pool, { owner: true });
  ownerToken = await gen.apiKey(t.pool, owner.id);
  const member = await gen.user(t.pool);
  memberToken = await gen.apiKey(t.pool, member.id);
});

const missingId = "00000000-0000-4000-8000-00000000beef";

describe("POST /api/v2/organizations", () => {
  it("creates an organization for an owner", async () => {
    const res = await t.call("POST", "/api/v2/organizations", {
      token: ownerToken,
      body: { name: "acme" },
    });
    expect(res.status).toBe(201);
    expect(res.json).toEqual({ id: expect.any(String), name: "acme" });
    expect(await getOrganizationByID(t.pool, { id: res.json.id })).not.toBeNull();
  });

  it("rejects a name taken in any letter case with 409", async () => {
    await gen.organization(t.pool, { name: "globex" });
    const res = await t.call("POST", "/api/v2/organizations", {
      token: ownerToken,
      body: { name: "Globex" },
    });
    expect(res.status).toBe(409);
  });

  it("forbids members (403) and rejects unknown fields (400)", async () => {
    expect(
      (await t.call("POST", "/api/v2/organizations", { token: memberToken, body: { name: "x" } }))
        .status,
    ).toBe(403);
    const res = await t.call("POST", "/api/v2/organizations", {
      token: ownerToken,
      body: { name: "y", extra: 1 },
    });
    expect(res.status).toBe(400);
  });
});

describe("PUT /api/v2/organizations/{org}/members/{user}", () => {
  it("adds a member, and adding again changes nothing", async () => {
    const org = await gen.organization(t.pool);
    const u = await gen.user(t.pool);
    for (let i = 0; i < 2; i++) {
      const res = await t.call("PUT", `/api/v2/organizations/${org.id}/members/${u.id}`, {
        token: ownerToken,
      });
      expect(res.status).toBe(200);
    }
    expect((await getUserByID(t.pool, { id: u.id }))?.organization_ids).toEqual([org.id]);
  });

  it("answers 404 for an unknown organization or user and 403 for members", async () => {
    const org = await gen.organization(t.pool);
    const u = await gen.user(t.pool);
    const put = (o: string, usr: string, token = ownerToken) =>
      t.call("PUT", `/api/v2/organizations/${o}/members/${usr}`, { token });
    expect((await put(missingId, u.id)).status).toBe(404);
    expect((await put(org.id, missingId)).status).toBe(404);
    expect((await put(org.id, u.id, memberToken)).status).toBe(403);
  });
});

describe("groups", () => {
  it("creates a group with a spend limit; the name is unique per organization", async () => {
    const org = await gen.organization(t.pool);
    const body = { name: "Engineering", chat_spend_limit_micros: 10_000_000 };
    const res = await t.call("POST", `/api/v2/organizations/${org.id}/groups`, {
      token: ownerToken,
      body,
    });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({
      organization_id: org.id,
      name: "Engineering",
      chat_spend_limit_micros: 10_000_000,
    });
    const dup = await t.call("POST", `/api/v2/organizations/${org.id}/groups`, {
      token: ownerToken,
      body: { name: "engineering" },
    });
    expect(dup.status).toBe(409);
    const other = await gen.organization(t.pool);
    const elsewhere = await t.call("POST", `/api/v2/organizations/${other.id}/groups`, {
      token: ownerToken,
      body: { name: "Engineering" },
    });
    expect(elsewhere.status).toBe(201);
    expect((await getGroupByID(t.pool, { id: elsewhere.json.id }))?.organization_id).toBe(other.id);
  });

  it("admits only members of the group's organization", async () => {
    const org = await gen.organization(t.pool);
    const group = await gen.group(t.pool, org.id);
    const outsider = await gen.user(t.pool);
    const path = `/api/v2/organizations/${org.id}/groups/${group.id}/members/${outsider.id}`;
    const refused = await t.call("PUT", path, { token: ownerToken });
    expect(refused.status).toBe(400);
    expect(refused.json.message).toMatch(/not a member/);
    await gen.organizationMember(t.pool, org.id, outsider.id);
    expect((await t.call("PUT", path, { token: ownerToken })).status).toBe(200);
    expect((await t.call("PUT", path, { token: ownerToken })).status).toBe(200);
    const { rows } = await t.pool.query(
      "SELECT count(*)::int AS n FROM group_members WHERE group_id = $1",
      [group.id],
    );
    expect(rows[0].n).toBe(1);
  });

  it("answers 404 for a group addressed through another organization", async () => {
    const a = await gen.organization(t.pool);
    const b = await gen.organization(t.pool);
    const group = await gen.group(t.pool, a.id);
    const u = await gen.user(t.pool, { organizationIds: [a.id, b.id] });
    const res = await t.call(
      "PUT",
      `/api/v2/organizations/${b.id}/groups/${group.id}/members/${u.id}`,
      {
        token: ownerToken,
      },
    );
    expect(res.status).toBe(404);
  });

  it("removes a user from the organization's groups when they leave the organization", async () => {
    const org = await gen.organization(t.pool);
    const group = await gen.group(t.pool, org.id);
    const u = await gen.user(t.pool, { organizationIds: [org.id] });
    await t.call("PUT", `/api/v2/organizations/${org.id}/groups/${group.id}/members/${u.id}`, {
      token: ownerToken,
    });
    await t.pool.query(
      "DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2",
      [org.id, u.id],
    );
    const { rows } = await t.pool.query(
      "SELECT count(*)::int AS n FROM group_members WHERE user_id = $1",
      [u.id],
    );
    expect(rows[0].n).toBe(0);
  });
});
