import { beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { type HousekeepingProgress, runHousekeeping } from "../../src/jobs/housekeeping.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger } from "../setup/app.ts";
import { newPool, testDb } from "../setup/db.ts";

/*
 * The housekeeping job (src/jobs/housekeeping.ts) end to end on this file's database, whose
 * sessions run on a SQL clock far ahead (pgchatd.clock_now set for the database), so chats
 * created now are long idle: auto-archive with its digest, retention after it, and the
 * advisory lock that lets one replica work at a time.
 */

let setup: Pool;
let pool: Pool;
let url: string;
let orgId: string;
const { logger } = captureLogger();

beforeAll(async () => {
  const db = await testDb();
  setup = db.pool;
  url = db.url;
  await setup.query(`ALTER DATABASE ${db.name} SET pgchatd.clock_now = '2099-06-01T00:05:00Z'`);
  // Opened after the setting: every session of this pool has the clock.
  pool = newPool(url, 4);
  orgId = (await gen.organization(setup)).id;
});

const run = (p: Pool = pool) => runHousekeeping({ pool: p, logger, auditRetentionDays: 0 });

/** A pool whose sessions run on the SQL clock `at` (a connection option, not the database's). */
function atClock(at: string): Pool {
  const sep = url.includes("?") ? "&" : "?";
  return newPool(`${url}${sep}options=${encodeURIComponent(`-c pgchatd.clock_now=${at}`)}`, 4);
}

async function configure(autoArchiveDays: number, retentionDays: number) {
  await setup.query(
    `UPDATE chat_housekeeping_config
     SET auto_archive_days = $1, retention_days = $2, auto_archive_done_on = NULL`,
    [autoArchiveDays, retentionDays],
  );
}

async function owner() {
  return (await gen.user(setup, { organizationIds: [orgId] })).id;
}

const archived = async (ids: string[]) =>
  Object.fromEntries(
    (await setup.query("SELECT id, archived FROM chats WHERE id = ANY ($1)", [ids])).rows.map(
      (r) => [r.id, r.archived],
    ),
  );

describe("the housekeeping job", () => {
  it("auto-archives an owner's idle roots with one digest; later runs that day look for nothing, the next day's does", async () => {
    await configure(7, 0);
    const o = await owner();
    const a = await gen.chat(setup, { ownerId: o, organizationId: orgId, text: "first" });
    const b = await gen.chat(setup, { ownerId: o, organizationId: orgId, text: "second" });
    const pinned = await gen.chat(setup, { ownerId: o, organizationId: orgId, text: "pinned" });
    await setup.query("SELECT chat_set_pin($1, $2, 1)", [pinned.id, o]);
    const first = await run();
    expect(first.ran).toBe(true);
    expect(first.autoArchivedRoots).toBeGreaterThanOrEqual(2);
    expect(await archived([a.id, b.id, pinned.id])).toEqual({
      [a.id]: true,
      [b.id]: true,
      [pinned.id]: false,
    });
    const { rows } = await setup.query("SELECT title, body FROM notifications WHERE user_id = $1", [
      o,
    ]);
    expect(rows).toHaveLength(1);
    expect(rows[0].title).toBe("Chats auto-archived");
    expect(rows[0].body).toContain("2 chats without activity for 7 days were archived:");
    expect(rows[0].body).toContain("Archived chats are kept forever");
    const second = await run();
    expect(second).toMatchObject({ ran: true, autoArchivedRoots: 0, digests: 0 });
    const again = await setup.query(
      "SELECT count(*)::int AS n FROM notifications WHERE user_id = $1",
      [o],
    );
    expect(again.rows[0].n).toBe(1);
    // Done for the day: a root that becomes eligible now (unpinned) waits for the next UTC day.
    await setup.query("SELECT chat_set_pin($1, $2, 0)", [pinned.id, o]);
    expect((await run()).autoArchivedRoots).toBe(0);
    const nextDay = atClock("2099-06-02T00:05:00Z");
    expect((await run(nextDay)).autoArchivedRoots).toBeGreaterThanOrEqual(1);
    expect(await archived([pinned.id])).toEqual({ [pinned.id]: true });
  });

  it("deletes archived chats once retention applies, never an unarchived one", async () => {
    await configure(0, 30);
    const o = await owner();
    const old = await gen.chat(setup, { ownerId: o, organizationId: orgId });
    const kept = await gen.chat(setup, { ownerId: o, organizationId: orgId });
    await setup.query("SELECT chat_set_archived($1, $2, true, NULL)", [old.id, o]);
    const seen: HousekeepingProgress[] = [];
    const result = await runHousekeeping({
      pool,
      logger,
      auditRetentionDays: 0,
      progress: (p) => seen.push(p),
    });
    expect(result.purgedChats).toBeGreaterThanOrEqual(1);
    // The progress it reports (admin housekeeping --once draws it) ends at what it did.
    expect(seen.filter((p) => p.phase === "chats").at(-1)?.done).toBe(result.purgedChats);
    expect(seen.filter((p) => p.phase === "notifications").at(-1)?.done).toBe(
      result.purgedNotifications,
    );
    expect(seen.find((p) => p.phase === "auto-archive")).toBeUndefined();
    const { rows } = await setup.query("SELECT id FROM chats WHERE id = ANY ($1)", [
      [old.id, kept.id],
    ]);
    expect(rows.map((r) => r.id)).toEqual([kept.id]);
  });

  it("does nothing while another process holds the lock, and two replicas at once archive each root once", async () => {
    await configure(7, 0);
    const o = await owner();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      ids.push((await gen.chat(setup, { ownerId: o, organizationId: orgId })).id);
    }
    const holder = await setup.connect();
    try {
      await holder.query("SELECT pg_advisory_lock(hashtext('pgchatd.housekeeping'), 0)");
      expect(await run()).toMatchObject({ ran: false, autoArchivedRoots: 0 });
      expect(Object.values(await archived(ids))).not.toContain(true);
    } finally {
      await holder.query("SELECT pg_advisory_unlock(hashtext('pgchatd.housekeeping'), 0)");
      holder.release();
    }
    const other = newPool(url, 4);
    const results = await Promise.all([run(pool), run(other)]);
    expect(results.reduce((n, r) => n + r.autoArchivedRoots, 0)).toBeGreaterThanOrEqual(20);
    expect(Object.values(await archived(ids))).toEqual(ids.map(() => true));
    const audit = await setup.query(
      "SELECT chat_id, count(*)::int AS n FROM audit_logs WHERE action = 'chat_auto_archive' AND chat_id = ANY ($1) GROUP BY chat_id",
      [ids],
    );
    expect(audit.rows).toHaveLength(20);
    expect(audit.rows.every((r) => r.n === 1)).toBe(true);
    const digests = await setup.query(
      "SELECT count(*)::int AS n FROM notifications WHERE user_id = $1",
      [o],
    );
    expect(digests.rows[0].n).toBe(1);
  });
});
