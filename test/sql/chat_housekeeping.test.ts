import { beforeAll, describe, expect, it } from "vitest";
import type { Pool, PoolClient } from "../../src/db/index.ts";
import {
  autoArchiveChatRoot,
  insertChatAutoArchiveDigest,
  listChatAutoArchiveCandidates,
} from "../../src/generated/chat_housekeeping.ts";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import { blocked, outcome, session } from "../setup/sessions.ts";

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
    "UPDATE chat_housekeeping_config SET auto_archive_days = $1, retention_days = $2",
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
      expect((await autoArchiveChatRoot(c, { chat_id: late.chat.id })).title).toBe("idle");
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
      expect((await autoArchiveChatRoot(c, { chat_id: pinned.chat.id })).title).toBeNull();
      expect((await autoArchiveChatRoot(c, { chat_id: child.id })).title).toBeNull();
      await setAutoArchiveDays(0);
      const idle = await idleSince("2099-01-01T00:00:00Z");
      expect(await candidates(c)).toEqual([]);
      expect((await autoArchiveChatRoot(c, { chat_id: idle.chat.id })).title).toBeNull();
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
      expect((await autoArchiveChatRoot(c, { chat_id: family.chat.id })).title).toBe("family");
      expect((await autoArchiveChatRoot(c, { chat_id: revived.chat.id })).title).toBeNull();
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
      const archive = outcome(autoArchiveChatRoot(archiving.client, { chat_id: r.chat.id }));
      await blocked(pool, archiving.pid);
      await pinning.client.query("COMMIT");
      const result = await archive;
      expect(result.ok && result.value.title).toBeNull();
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

  it("takes at most the batch, idlest first, and the next run continues with the rest", async () => {
    await setAutoArchiveDays(1);
    // Idler than anything else in this file's database, so they come first.
    const a = await idleSince("2098-01-01T00:00:00Z");
    const b = await idleSince("2098-01-02T00:00:00Z");
    const d = await idleSince("2098-01-03T00:00:00Z");
    const c = await clockedAt("2099-03-10T00:05:00Z");
    try {
      const first = await candidates(c, 2);
      expect(first).toEqual([a.chat.id, b.chat.id]);
      for (const id of first) await autoArchiveChatRoot(c, { chat_id: id! });
      expect((await candidates(c, 2))[0]).toBe(d.chat.id);
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
    const { notification_id } = await insertChatAutoArchiveDigest(pool, {
      owner_id: u.id,
      titles,
    });
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
    const { notification_id } = await insertChatAutoArchiveDigest(pool, {
      owner_id: u.id,
      titles: [""],
    });
    const { rows } = await pool.query("SELECT body FROM notifications WHERE id = $1", [
      notification_id,
    ]);
    expect(rows[0].body).toBe(
      "1 chat without activity for 1 day was archived:\n- (untitled)\n\n" +
        "Archived chats are deleted 90 days after they were archived; unarchive one to keep it.",
    );
  });
});
