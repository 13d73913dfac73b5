import { beforeAll, describe, expect, it } from "vitest";
import type { Pool, PoolClient } from "../../src/db/index.ts";
import {
  autoArchiveChatsOfOwner,
  listChatAutoArchiveCandidates,
  listChatRetentionCandidates,
  purgeArchivedChats,
  purgeAuditLogs,
  purgeNotifications,
  purgeUnlinkedChatFiles,
} from "../../src/generated/chat_housekeeping.ts";
import { beginChatTitleRegeneration } from "../../src/generated/chat_titles.ts";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import { blocked, lockedChats, outcome, session } from "../setup/sessions.ts";

/*
 * Auto-archive where it lives (sql/functions/chat_housekeeping.sql), on the SQL clock
 * (pgchatd.clock_now): UTC day boundaries, pins, activity that lands after the candidates were
 * read, the batch limit, the audit, and the digest's text.
 */

let pool: Pool;
let orgId: string;

beforeAll(async () => {
  pool = (await testDb()).pool;
  orgId = (await gen.organization(pool)).id;
});

/** One connection whose chat_clock_now() is `at`. */
async function clockedAt(at: string): Promise<PoolClient & { done(): Promise<void> }> {
  const client = await pool.connect();
  await client.query("SELECT set_config('pgchatd.clock_now', $1, false)", [at]);
  return Object.assign(client, {
    async done() {
      await client.query("RESET pgchatd.clock_now");
      client.release();
    },
  });
}

async function setAutoArchiveDays(days: number, retentionDays = 0) {
  await pool.query(
    `UPDATE chat_housekeeping_config
     SET auto_archive_days = $1, retention_days = $2, auto_archive_done_on = NULL`,
    [days, retentionDays],
  );
}

/** A root chat of a new owner whose last message is at `at` (assistant, so nothing else moves). */
async function idleSince(at: string, title = "idle") {
  const u = await gen.user(pool, { organizationIds: [orgId] });
  const chat = await gen.chat(pool, { ownerId: u.id, organizationId: orgId, text: title });
  await pool.query("UPDATE chats SET title = $2 WHERE id = $1", [chat.id, title]);
  await pool.query(
    `INSERT INTO chat_messages (chat_id, role, content, created_at)
     VALUES ($1, 'assistant', '[]', $2)`,
    [chat.id, at],
  );
  return { ownerId: u.id, chat };
}

/** Archives `root` as the job would (its owner's batch of one); how many roots it archived. */
async function archiveRoot(db: PoolClient, root: { id: string; owner_id: string }) {
  return (await autoArchiveChatsOfOwner(db, { owner_id: root.owner_id, root_ids: [root.id] }))
    .archived;
}

/** The digest's notification for `titles`, as chat_auto_archive_owner writes it. */
async function digest(ownerId: string, titles: string[]) {
  const { rows } = await pool.query(
    "SELECT chat_auto_archive_notify($1, $2::text[]) AS notification_id",
    [ownerId, titles],
  );
  return { notification_id: rows[0].notification_id as string };
}

const candidates = async (db: PoolClient, limit = 1000) =>
  (await listChatAutoArchiveCandidates(db, { batch_size: limit })).map((r) => r.chat_id);

describe("auto-archive eligibility", () => {
  it("goes by UTC date: activity at 23:59 is archived on the first run after the next-but-one midnight, activity at 00:01 a day later", async () => {
    await setAutoArchiveDays(1);
    const late = await idleSince("2099-03-08T23:59:00Z");
    const early = await idleSince("2099-03-09T00:01:00Z");
    const before = await clockedAt("2099-03-09T23:59:59Z");
    try {
      expect(await candidates(before)).not.toContain(late.chat.id);
    } finally {
      await before.done();
    }
    const c = await clockedAt("2099-03-10T00:05:00Z");
    try {
      const found = await candidates(c);
      expect(found).toContain(late.chat.id);
      expect(found).not.toContain(early.chat.id);
      expect(await archiveRoot(c, late.chat)).toBe(1);
    } finally {
      await c.done();
    }
    const next = await clockedAt("2099-03-11T00:01:00Z");
    try {
      expect(await candidates(next)).toContain(early.chat.id);
    } finally {
      await next.done();
    }
  });

  it("never takes a pinned root, a child on its own, or anything while auto-archive is off", async () => {
    await setAutoArchiveDays(1);
    const pinned = await idleSince("2099-01-01T00:00:00Z");
    await pool.query("SELECT chat_set_pin($1, $2, 1)", [pinned.chat.id, pinned.ownerId]);
    const family = await idleSince("2099-01-01T00:00:00Z");
    const child = await gen.chat(pool, { ownerId: family.ownerId, parent_chat_id: family.chat.id });
    // The child's message is recent: the family is active.
    await pool.query(
      "INSERT INTO chat_messages (chat_id, role, content, created_at) VALUES ($1, 'assistant', '[]', '2099-03-09T12:00:00Z')",
      [child.id],
    );
    const c = await clockedAt("2099-03-10T00:05:00Z");
    try {
      const found = await candidates(c);
      expect(found).not.toContain(pinned.chat.id);
      expect(found).not.toContain(family.chat.id);
      expect(found).not.toContain(child.id);
      expect(await archiveRoot(c, pinned.chat)).toBe(0);
      expect(await archiveRoot(c, child)).toBe(0);
      await setAutoArchiveDays(0);
      const idle = await idleSince("2099-01-01T00:00:00Z");
      expect(await candidates(c)).toEqual([]);
      expect(await archiveRoot(c, idle.chat)).toBe(0);
    } finally {
      await c.done();
    }
  });

  it("archives the whole family with one audit entry per root, and not a root that got a message after the candidates were read", async () => {
    await setAutoArchiveDays(2);
    const family = await idleSince("2099-02-01T08:00:00Z", "family");
    const child = await gen.chat(pool, { ownerId: family.ownerId, parent_chat_id: family.chat.id });
    await pool.query(
      "INSERT INTO chat_messages (chat_id, role, content, created_at) VALUES ($1, 'assistant', '[]', '2099-02-01T09:00:00Z')",
      [child.id],
    );
    const revived = await idleSince("2099-02-01T08:00:00Z", "revived");
    const c = await clockedAt("2099-03-10T00:05:00Z");
    try {
      const found = await candidates(c);
      expect(found).toEqual(expect.arrayContaining([family.chat.id, revived.chat.id]));
      // The owner writes between the read and the archive.
      await pool.query(
        "INSERT INTO chat_messages (chat_id, role, content, created_at) VALUES ($1, 'assistant', '[]', '2099-03-10T00:04:00Z')",
        [revived.chat.id],
      );
      expect(await archiveRoot(c, family.chat)).toBe(1);
      expect(await archiveRoot(c, revived.chat)).toBe(0);
    } finally {
      await c.done();
    }
    const { rows } = await pool.query(
      "SELECT id, archived FROM chats WHERE id = ANY ($1) ORDER BY id",
      [[family.chat.id, child.id, revived.chat.id]],
    );
    expect(Object.fromEntries(rows.map((r) => [r.id, r.archived]))).toEqual({
      [family.chat.id]: true,
      [child.id]: true,
      [revived.chat.id]: false,
    });
    const audit = await pool.query(
      "SELECT actor_user_id, chat_id, detail FROM audit_logs WHERE action = 'chat_auto_archive' AND chat_id = ANY ($1)",
      [[family.chat.id, child.id, revived.chat.id]],
    );
    expect(audit.rows).toEqual([
      {
        actor_user_id: null,
        chat_id: family.chat.id,
        detail: { archived_chats: 2, cutoff_date: "2099-03-08" },
      },
    ]);
  });

  it("an auto-archive waiting for the owner's pin of the root archives nothing once the pin commits", async () => {
    await setAutoArchiveDays(1);
    const r = await idleSince("2099-01-05T00:00:00Z");
    const pinning = await session(pool);
    const archiving = await session(pool);
    try {
      await archiving.client.query(
        "SELECT set_config('pgchatd.clock_now', '2099-03-10T00:05:00Z', false)",
      );
      await pinning.client.query("BEGIN");
      await pinning.client.query("SELECT chat_set_pin($1, $2, 1)", [r.chat.id, r.ownerId]);
      const archive = outcome(archiveRoot(archiving.client, r.chat));
      await blocked(pool, archiving.pid);
      await pinning.client.query("COMMIT");
      const result = await archive;
      expect(result.ok && result.value).toBe(0);
    } finally {
      await archiving.client.query("RESET pgchatd.clock_now");
      pinning.release();
      archiving.release();
    }
    const { rows } = await pool.query("SELECT archived, pin_order FROM chats WHERE id = $1", [
      r.chat.id,
    ]);
    expect(rows[0]).toEqual({ archived: false, pin_order: 1 });
  });

  it("an owner's auto-archive waiting for the lowest of their roots' rows holds none of the others", async () => {
    await setAutoArchiveDays(1);
    const first = await idleSince("2099-01-06T00:00:00Z");
    const roots = [first.chat];
    for (let i = 0; i < 3; i++) {
      roots.push(await gen.chat(pool, { ownerId: first.ownerId, organizationId: orgId }));
    }
    const ids = roots.map((r) => r.id).sort();
    const holder = await session(pool);
    const archiving = await session(pool);
    try {
      await archiving.client.query(
        "SELECT set_config('pgchatd.clock_now', '2099-03-10T00:05:00Z', false)",
      );
      await holder.client.query("BEGIN");
      await holder.client.query("SELECT 1 FROM chats WHERE id = $1 FOR NO KEY UPDATE", [ids[0]]);
      const archive = outcome(
        autoArchiveChatsOfOwner(archiving.client, { owner_id: first.ownerId, root_ids: ids }),
      );
      await blocked(pool, archiving.pid);
      expect(await lockedChats(pool, ids.slice(1))).toEqual([]);
      await holder.client.query("COMMIT");
      const result = await archive;
      expect(result.ok && result.value.archived).toBe(4);
    } finally {
      await archiving.client.query("RESET pgchatd.clock_now");
      holder.release();
      archiving.release();
    }
  });

  it("counts a touch of the root as activity: a chat pinned and unpinned today is not idle, however old its messages", async () => {
    await setAutoArchiveDays(1);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const { rows } = await pool.query(
      `INSERT INTO chats (owner_id, organization_id, last_model_config_id, title, created_at,
         updated_at)
       VALUES ($1, $2, (SELECT id FROM chat_model_configs WHERE is_default), 'old',
         '2020-01-01Z', '2020-01-01Z')
       RETURNING id`,
      [u.id, orgId],
    );
    const id = rows[0].id as string;
    await pool.query(
      "INSERT INTO chat_messages (chat_id, role, content, created_at) VALUES ($1, 'assistant', '[]', '2020-01-01Z')",
      [id],
    );
    const c = await pool.connect();
    try {
      expect(
        (await listChatAutoArchiveCandidates(c, { batch_size: 100_000 })).map((r) => r.chat_id),
      ).toContain(id);
      await pool.query("SELECT chat_set_pin($1, $2, 1)", [id, u.id]);
      await pool.query("SELECT chat_set_pin($1, $2, 0)", [id, u.id]);
      expect(
        (await listChatAutoArchiveCandidates(c, { batch_size: 100_000 })).map((r) => r.chat_id),
      ).not.toContain(id);
    } finally {
      c.release();
    }
  });

  it("counts a subagent's touch as its family's activity: a child relabelled today keeps its root", async () => {
    await setAutoArchiveDays(1);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const model = "(SELECT id FROM chat_model_configs WHERE is_default)";
    const { rows } = await pool.query(
      `INSERT INTO chats (owner_id, organization_id, last_model_config_id, title, created_at,
         updated_at)
       VALUES ($1, $2, ${model}, 'old root', '2020-01-01Z', '2020-01-01Z') RETURNING id`,
      [u.id, orgId],
    );
    const root = rows[0].id as string;
    const { rows: kids } = await pool.query(
      `INSERT INTO chats (owner_id, organization_id, last_model_config_id, title, parent_chat_id,
         created_at, updated_at)
       VALUES ($1, $2, ${model}, 'old child', $3, '2020-01-01Z', '2020-01-01Z') RETURNING id`,
      [u.id, orgId, root],
    );
    const ids = async () =>
      (await listChatAutoArchiveCandidates(pool, { batch_size: 100_000 })).map((r) => r.chat_id);
    expect(await ids()).toContain(root);
    await pool.query(`UPDATE chats SET labels = '{"keep": "yes"}' WHERE id = $1`, [kids[0].id]);
    expect(await ids()).not.toContain(root);
  });

  it("locks only the roots it archives and their families, not the owner's pinned chats", async () => {
    await setAutoArchiveDays(1);
    const idle = await idleSince("2099-01-07T00:00:00Z");
    const pinned = await gen.chat(pool, { ownerId: idle.ownerId, organizationId: orgId });
    await pool.query("SELECT chat_set_pin($1, $2, 1)", [pinned.id, idle.ownerId]);
    const c = await clockedAt("2099-03-10T00:05:00Z");
    try {
      await c.query("BEGIN");
      expect(await archiveRoot(c, idle.chat)).toBe(1);
      expect(await lockedChats(pool, [pinned.id, idle.chat.id])).toEqual([idle.chat.id]);
      await c.query("COMMIT");
    } finally {
      await c.done();
    }
  });

  it("marks the day done only for today's cutoff: a run that crossed midnight or a changed threshold leaves it open", async () => {
    await setAutoArchiveDays(2);
    await pool.query("UPDATE chat_housekeeping_config SET auto_archive_done_on = NULL");
    const c = await clockedAt("2099-04-10T00:00:01Z");
    try {
      // Candidates read before midnight had cutoff 2099-04-07; today's is 2099-04-08.
      await c.query("SELECT chat_auto_archive_mark_done('2099-04-07')");
      expect((await c.query("SELECT chat_auto_archive_cutoff()::text AS d")).rows[0].d).toBe(
        "2099-04-08",
      );
      await c.query("SELECT chat_auto_archive_mark_done('2099-04-08')");
      expect((await c.query("SELECT chat_auto_archive_cutoff() AS d")).rows[0].d).toBeNull();
    } finally {
      await c.done();
    }
  });

  it("takes at most the batch, least recently updated first, and the next run continues with the rest", async () => {
    await setAutoArchiveDays(1);
    for (let i = 0; i < 5; i++) await idleSince(`2098-01-0${i + 1}T00:00:00Z`);
    const c = await clockedAt("2099-03-10T00:05:00Z");
    try {
      const { rows: all } = await c.query(
        `SELECT a.chat_id, c.owner_id, c.updated_at FROM chat_auto_archive_candidates(1000) a
         JOIN chats c ON c.id = a.chat_id`,
      );
      expect(all.length).toBeGreaterThanOrEqual(5);
      const times = all.map((r) => Date.parse(r.updated_at));
      expect([...times].sort((x, y) => x - y)).toEqual(times);
      const first = await candidates(c, 2);
      expect(first).toEqual(all.slice(0, 2).map((r) => r.chat_id));
      for (const r of all.slice(0, 2)) {
        expect(await archiveRoot(c, { id: r.chat_id, owner_id: r.owner_id })).toBe(1);
      }
      expect(await candidates(c, 2)).toEqual(all.slice(2, 4).map((r) => r.chat_id));
    } finally {
      await c.done();
    }
  });
});

describe("the auto-archive digest", () => {
  it("lists 25 titles and 'and N more', and says archived chats are kept forever when retention is 0", async () => {
    await setAutoArchiveDays(30, 0);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const titles = Array.from({ length: 27 }, (_, i) => `Chat ${i + 1}`);
    const { notification_id } = await digest(u.id, titles);
    const { rows } = await pool.query(
      "SELECT user_id, kind, title, body, read_at FROM notifications WHERE id = $1",
      [notification_id],
    );
    expect(rows[0]).toMatchObject({
      user_id: u.id,
      kind: "chats_auto_archived",
      title: "Chats auto-archived",
      read_at: null,
    });
    const lines = (rows[0].body as string).split("\n");
    expect(lines[0]).toBe("27 chats without activity for 30 days were archived:");
    expect(lines.slice(1, 26)).toEqual(titles.slice(0, 25).map((t) => `- ${t}`));
    expect(lines[26]).toBe("and 2 more");
    expect(lines.at(-1)).toBe("Archived chats are kept forever; unarchive one to continue it.");
  });

  it("says when archived chats will be deleted when retention is on, and lists one chat without 'more'", async () => {
    await setAutoArchiveDays(1, 90);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const { notification_id } = await digest(u.id, [""]);
    const { rows } = await pool.query("SELECT body FROM notifications WHERE id = $1", [
      notification_id,
    ]);
    expect(rows[0].body).toBe(
      "1 chat without activity for 1 day was archived:\n- (untitled)\n\n" +
        "Archived chats are deleted 90 days after they were archived; unarchive one to keep it.",
    );
  });
});

describe("retention", () => {
  async function setRetentionDays(days: number) {
    await pool.query("UPDATE chat_housekeeping_config SET retention_days = $1", [days]);
  }
  const exists = async (id: string) =>
    (await pool.query("SELECT 1 FROM chats WHERE id = $1", [id])).rowCount === 1;
  const candidatesAt = async (at: string) => {
    const c = await clockedAt(at);
    try {
      return (await listChatRetentionCandidates(c, { batch_size: 100_000 })).map((r) => r.chat_id);
    } finally {
      await c.done();
    }
  };
  const purgeAt = async (at: string, ...ids: string[]) => {
    const c = await clockedAt(at);
    try {
      return (await purgeArchivedChats(c, { chat_ids: ids })).deleted;
    } finally {
      await c.done();
    }
  };

  it("deletes an archived family older than the retention with hard_deleted events, and never an unarchived chat however old", async () => {
    await setRetentionDays(30);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const root = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
    const child = await gen.chat(pool, { ownerId: u.id, parent_chat_id: root.id });
    const kept = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
    await pool.query("SELECT chat_set_archived($1, $2, true, NULL)", [root.id, u.id]);
    // A day after the archive: within the retention.
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
    expect(await candidatesAt(tomorrow)).not.toContain(root.id);
    expect(await purgeAt(tomorrow, root.id)).toBe(0);
    const later = "2099-01-01T00:00:00Z";
    const found = await candidatesAt(later);
    expect(found).toContain(root.id);
    expect(found).not.toContain(kept.id);
    expect(await purgeAt(later, kept.id)).toBe(0);
    expect(await purgeAt(later, root.id)).toBe(2);
    expect([await exists(root.id), await exists(child.id), await exists(kept.id)]).toEqual([
      false,
      false,
      true,
    ]);
    const { rows } = await pool.query(
      "SELECT chat_id FROM chat_events WHERE kind = 'hard_deleted' AND chat_id = ANY ($1)",
      [[root.id, child.id]],
    );
    expect(rows.map((r) => r.chat_id).sort()).toEqual([root.id, child.id].sort());
    await setRetentionDays(0);
    expect(await candidatesAt(later)).toEqual([]);
  });

  it("a purge waiting for an unarchive of the family deletes nothing once the unarchive commits", async () => {
    await setRetentionDays(1);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const root = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
    const child = await gen.chat(pool, { ownerId: u.id, parent_chat_id: root.id });
    await pool.query("SELECT chat_set_archived($1, $2, true, NULL)", [root.id, u.id]);
    const unarchiving = await session(pool);
    const purging = await session(pool);
    try {
      await purging.client.query("SELECT set_config('pgchatd.clock_now', '2099-01-01Z', false)");
      await unarchiving.client.query("BEGIN");
      await unarchiving.client.query("SELECT chat_set_archived($1, $2, false, NULL)", [
        root.id,
        u.id,
      ]);
      const purge = outcome(purgeArchivedChats(purging.client, { chat_ids: [child.id] }));
      await blocked(pool, purging.pid);
      await unarchiving.client.query("COMMIT");
      const result = await purge;
      expect(result.ok && result.value.deleted).toBe(0);
    } finally {
      await purging.client.query("RESET pgchatd.clock_now");
      unarchiving.release();
      purging.release();
    }
    expect([await exists(root.id), await exists(child.id)]).toEqual([true, true]);
  });

  it("one purge of many chats deletes each archived chat once, a subagent listed with its root included, and keeps the unarchived ones", async () => {
    await setRetentionDays(1);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const root = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
    const child = await gen.chat(pool, { ownerId: u.id, parent_chat_id: root.id });
    const other = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
    const live = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
    for (const c of [root, other]) {
      await pool.query("SELECT chat_set_archived($1, $2, true, NULL)", [c.id, u.id]);
    }
    expect(await purgeAt("2099-01-01T00:00:00Z", child.id, live.id, root.id, other.id)).toBe(3);
    expect(await Promise.all([root, child, other, live].map((c) => exists(c.id)))).toEqual([
      false,
      false,
      false,
      true,
    ]);
  });

  it("a purge of many families takes their locks in lock-key order: waiting for the lowest, it holds none of the others", async () => {
    await setRetentionDays(1);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const chats = [];
    for (let i = 0; i < 4; i++) {
      const c = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
      await pool.query("SELECT chat_set_archived($1, $2, true, NULL)", [c.id, u.id]);
      chats.push(c.id as string);
    }
    const { rows } = await pool.query<{ id: string }>(
      "SELECT id FROM unnest($1::uuid[]) AS id ORDER BY hashtext(id::text), id",
      [chats],
    );
    const [lowest, ...rest] = rows.map((r) => r.id);
    const holder = await session(pool);
    const purging = await session(pool);
    const prober = await session(pool);
    try {
      await purging.client.query("SELECT set_config('pgchatd.clock_now', '2099-01-01Z', false)");
      await holder.client.query("BEGIN");
      await holder.client.query("SELECT chat_lock_family($1, true)", [lowest]);
      // Listed highest key first: a purge locking in list order would hold the others now.
      const purge = outcome(
        purgeArchivedChats(purging.client, { chat_ids: [...rest].reverse().concat(lowest!) }),
      );
      await blocked(pool, purging.pid);
      await prober.client.query("BEGIN");
      for (const id of rest) {
        const { rows: free } = await prober.client.query(
          "SELECT pg_try_advisory_xact_lock(hashtext('pgchatd.chat_family'), hashtext($1::text)) AS ok",
          [id],
        );
        expect(free[0].ok).toBe(true);
      }
      await prober.client.query("ROLLBACK");
      await holder.client.query("COMMIT");
      const result = await purge;
      expect(result.ok && result.value.deleted).toBe(4);
    } finally {
      await purging.client.query("RESET pgchatd.clock_now");
      holder.release();
      purging.release();
      prober.release();
    }
  });

  it("a title regeneration starting while retention deletes its chat waits, then gets PC404, not a foreign key error", async () => {
    await setRetentionDays(1);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const chat = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
    await pool.query("SELECT chat_set_archived($1, $2, true, NULL)", [chat.id, u.id]);
    const purging = await session(pool);
    const titling = await session(pool);
    try {
      await purging.client.query("SELECT set_config('pgchatd.clock_now', '2099-01-01Z', false)");
      await purging.client.query("BEGIN");
      expect((await purgeArchivedChats(purging.client, { chat_ids: [chat.id] })).deleted).toBe(1);
      const begin = outcome(
        beginChatTitleRegeneration(titling.client, {
          chat_id: chat.id,
          owner_id: u.id,
          expire_after_seconds: 120,
        }),
      );
      await blocked(pool, titling.pid);
      await purging.client.query("COMMIT");
      expect(await begin).toMatchObject({ ok: false, code: "PC404" });
    } finally {
      await purging.client.query("RESET pgchatd.clock_now");
      purging.release();
      titling.release();
    }
  });

  it("deletes old files only when no chat links to them", async () => {
    await setRetentionDays(1);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const linked = await gen.chatFile(pool, { ownerId: u.id, organizationId: orgId });
    const loose = await gen.chatFile(pool, { ownerId: u.id, organizationId: orgId });
    const chat = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
    await pool.query("INSERT INTO chat_file_links (chat_id, file_id) VALUES ($1, $2)", [
      chat.id,
      linked.id,
    ]);
    const c = await clockedAt("2099-01-01T00:00:00Z");
    try {
      while ((await purgeUnlinkedChatFiles(c, { batch_size: 1000 })).deleted === 1000);
    } finally {
      await c.done();
    }
    const { rows } = await pool.query("SELECT id FROM chat_files WHERE id = ANY ($1)", [
      [linked.id, loose.id],
    ]);
    expect(rows.map((r) => r.id)).toEqual([linked.id]);
  });

  it("a message linking a file that retention is deleting waits, then gets PC400, not a foreign key error", async () => {
    await setRetentionDays(1);
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const file = await gen.chatFile(pool, { ownerId: u.id, organizationId: orgId });
    const chat = await gen.chat(pool, { ownerId: u.id, organizationId: orgId });
    const purging = await session(pool);
    const linking = await session(pool);
    try {
      await purging.client.query("SELECT set_config('pgchatd.clock_now', '2099-01-01Z', false)");
      await purging.client.query("BEGIN");
      await purgeUnlinkedChatFiles(purging.client, { batch_size: 100_000 });
      const link = outcome(
        linking.client.query("SELECT chat_link_files($1, $2, $3)", [
          chat.id,
          u.id,
          JSON.stringify([{ type: "file", file_id: file.id }]),
        ]),
      );
      await blocked(pool, linking.pid);
      await purging.client.query("COMMIT");
      expect(await link).toMatchObject({ ok: false, code: "PC400", message: "File not found." });
    } finally {
      await purging.client.query("RESET pgchatd.clock_now");
      purging.release();
      linking.release();
    }
  });

  it("deletes audit entries and notifications past their own retention from the old end", async () => {
    const u = await gen.user(pool, { organizationIds: [orgId] });
    await pool.query(
      `INSERT INTO audit_logs (time, action, detail)
       SELECT t, 'retention_config', '{}'
       FROM unnest(ARRAY['2098-06-02Z', '2098-06-03Z', '2098-06-04Z', '2098-06-05Z',
         '2098-06-06Z', '2099-12-15Z']::timestamptz[]) t`,
    );
    await pool.query(
      `INSERT INTO notifications (user_id, kind, title, body, created_at)
       SELECT $1, 'chats_auto_archived', 't', 'b', '2098-06-01Z'::timestamptz + g * interval '1 day'
       FROM generate_series(1, 5) g`,
      [u.id],
    );
    // Later than every clock this file's other tests used, so the old end is all theirs too.
    const c = await clockedAt("2100-01-01T00:00:00Z");
    try {
      // Everything before 2099-06-15 (200 days before the clock): the old end of both logs.
      let audit = 0;
      for (let n = -1; n !== 0; audit += n) {
        n = (await purgeAuditLogs(c, { retention_days: 200, batch_size: 3 })).deleted ?? 0;
      }
      expect(audit).toBeGreaterThanOrEqual(5);
      const left = await pool.query(
        "SELECT time FROM audit_logs WHERE time > '2098-01-01Z' ORDER BY time",
      );
      expect(left.rows.map((r) => r.time)).toEqual(["2099-12-15T00:00:00.000000Z"]);
      let notes = 0;
      for (let n = -1; n !== 0; notes += n) {
        n = (await purgeNotifications(c, { retention_days: 200, batch_size: 2 })).deleted ?? 0;
      }
      expect(notes).toBeGreaterThanOrEqual(5);
    } finally {
      await c.done();
    }
  });
});
