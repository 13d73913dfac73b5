import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { base, type Member } from "../setup/chat_requests.ts";

/*
 * The housekeeping settings (docs/api.md "Housekeeping"): retention and auto-archive days, site
 * owners only, stored in the database and audited.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let owner: Member;
let member: Member;

beforeAll(async () => {
  t = await testApp();
  const orgId = (await gen.organization(t.pool)).id;
  owner = await gen.member(t.pool, { organizationIds: [orgId], owner: true });
  member = await gen.member(t.pool, { organizationIds: [orgId] });
});

const as = (who: Member, method: string, path: string, body?: unknown) =>
  t.call(method, `${base}${path}`, { token: who.token, body });

describe("housekeeping settings", () => {
  it("keep archived chats forever and archive nothing by default", async () => {
    expect((await as(owner, "GET", "/config/retention")).json).toEqual({ retention_days: 0 });
    expect((await as(owner, "GET", "/config/auto-archive")).json).toEqual({
      auto_archive_days: 0,
    });
  });

  it("a site owner sets each, the other stays, and every change is audited with the old and new value", async () => {
    const retention = await as(owner, "PUT", "/config/retention", { retention_days: 30 });
    expect(retention.status).toBe(200);
    expect(retention.json).toEqual({ retention_days: 30 });
    const archive = await as(owner, "PUT", "/config/auto-archive", { auto_archive_days: 3650 });
    expect(archive.json).toEqual({ auto_archive_days: 3650 });
    expect((await as(owner, "GET", "/config/retention")).json).toEqual({ retention_days: 30 });
    await as(owner, "PUT", "/config/retention", { retention_days: 0 });
    const { rows } = await t.pool.query(
      `SELECT actor_user_id, action, detail FROM audit_logs
       WHERE action IN ('retention_config', 'auto_archive_config') ORDER BY id`,
    );
    expect(rows).toEqual([
      { actor_user_id: owner.id, action: "retention_config", detail: { old: 0, new: 30 } },
      { actor_user_id: owner.id, action: "auto_archive_config", detail: { old: 0, new: 3650 } },
      { actor_user_id: owner.id, action: "retention_config", detail: { old: 30, new: 0 } },
    ]);
  });

  it("refuses members (403) and values outside 0..3650 (400), changing nothing", async () => {
    await as(owner, "PUT", "/config/retention", { retention_days: 7 });
    expect((await as(member, "GET", "/config/retention")).status).toBe(403);
    expect((await as(member, "PUT", "/config/retention", { retention_days: 1 })).status).toBe(403);
    expect((await as(member, "PUT", "/config/auto-archive", { auto_archive_days: 1 })).status).toBe(
      403,
    );
    for (const body of [
      { retention_days: -1 },
      { retention_days: 3651 },
      { retention_days: 1.5 },
      { retention_days: "7" },
      { retention_days: null },
      {},
      { retention_days: 7, extra: 1 },
    ]) {
      const res = await as(owner, "PUT", "/config/retention", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect((await as(owner, "GET", "/config/retention")).json).toEqual({ retention_days: 7 });
  });
});
