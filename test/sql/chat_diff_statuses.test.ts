import { beforeAll, describe, expect, it } from "vitest";
import type { Pool, PoolClient } from "../../src/db/index.ts";
import {
  claimStaleChatDiffStatuses,
  recordChatDiffStatusRefresh,
  reportChatGitActivity,
} from "../../src/generated/chat_diff_statuses.ts";
import { archiveChat } from "../../src/generated/chats.ts";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import { session } from "../setup/sessions.ts";

/*
 * Pull-request status where it lives (sql/functions/chat_diff_statuses.sql), on the SQL clock
 * (pgchatd.clock_now), and the refresher's claim on two real sessions.
 * test/server/chat_diff_statuses.test.ts checks the route.
 */

let pool: Pool;
let orgId: string;

beforeAll(async () => {
  pool = (await testDb()).pool;
  orgId = (await gen.organization(pool)).id;
});

describe("git activity", () => {
  it("marks the reference stale one second before the SQL clock, and updated_at at it", async () => {
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const ws = await gen.workspace(pool, { organizationId: orgId, ownerId: u.id });
    const agent = (await gen.build(pool, ws.id)).agents[0]!;
    const chat = await gen.chat(pool, {
      ownerId: u.id,
      organizationId: orgId,
      workspace_id: ws.id,
    });
    const client = await pool.connect();
    try {
      await client.query("SELECT set_config('pgchatd.clock_now', '2026-04-01T12:00:00Z', false)");
      const row = await reportChatGitActivity(client, {
        agent_id: agent.id,
        chat_id: null,
        branch: "main",
        remote_origin: "https://github.com/acme/api.git",
        url: null,
      });
      expect(row).toMatchObject({ chat_id: chat.id, stale_at: "2026-04-01T11:59:59.000000Z" });
      const { rows } = await client.query(
        "SELECT updated_at FROM chat_diff_statuses WHERE chat_id = $1",
        [chat.id],
      );
      expect(rows[0].updated_at).toBe("2026-04-01T12:00:00.000000Z");
    } finally {
      await client.query("RESET pgchatd.clock_now");
      client.release();
    }
  });
});

/** A chat bound to an agent of its owner's workspace, and the agent. */
async function agentChat() {
  const u = await gen.user(pool, { organizationIds: [orgId] });
  const ws = await gen.workspace(pool, { organizationId: orgId, ownerId: u.id });
  const agent = (await gen.build(pool, ws.id)).agents[0]!;
  const chat = await gen.chat(pool, { ownerId: u.id, organizationId: orgId, workspace_id: ws.id });
  return { ownerId: u.id, agentId: agent.id, chat };
}

/** One connection whose chat_clock_now() is set by `at`. */
async function clocked() {
  const client = await pool.connect();
  return {
    client,
    at: (t: string) => client.query("SELECT set_config('pgchatd.clock_now', $1, false)", [t]),
    release: async () => {
      await client.query("RESET pgchatd.clock_now");
      client.release();
    },
  };
}

/** Reports activity on a fresh remote (its own forge host), so tests never share rows. */
async function reported(db: PoolClient, host = `${gen.uniqueName("forge")}.test`) {
  const s = await agentChat();
  await reportChatGitActivity(db, {
    agent_id: s.agentId,
    chat_id: null,
    branch: "feature",
    remote_origin: `https://${host}/acme/api.git`,
    url: null,
  });
  return { ...s, host };
}

const rowOf = async (chatId: string) =>
  (
    await pool.query(
      `SELECT stale_at, updated_at, refreshed_at, last_error, pr_number, pull_request_state, url
       FROM chat_diff_statuses WHERE chat_id = $1`,
      [chatId],
    )
  ).rows[0];

const claimIDs = async (db: PoolClient, batch = 1000) =>
  (await claimStaleChatDiffStatuses(db, { batch_size: batch })).map((r) => r.chat_id);

describe("the refresher's claim", () => {
  it("takes stale references with a branch and a remote, pushes stale_at 5 minutes ahead as a crash lock, and leaves updated_at", async () => {
    const c = await clocked();
    try {
      await c.at("2026-05-01T10:00:00Z");
      const r = await reported(c.client);
      await c.at("2026-05-01T10:00:10Z");
      expect(await claimIDs(c.client)).toContain(r.chat.id);
      expect(await rowOf(r.chat.id)).toMatchObject({
        stale_at: "2026-05-01T10:05:10.000000Z",
        updated_at: "2026-05-01T10:00:00.000000Z",
      });
      // A refresher that died holding it: nobody takes it before the lock runs out, then one does.
      await c.at("2026-05-01T10:05:09Z");
      expect(await claimIDs(c.client)).not.toContain(r.chat.id);
      await c.at("2026-05-01T10:05:10Z");
      expect(await claimIDs(c.client)).toContain(r.chat.id);
    } finally {
      await c.release();
    }
  });

  it("never takes archived chats or references without a branch or a remote", async () => {
    const c = await clocked();
    try {
      await c.at("2026-05-02T10:00:00Z");
      const archived = await reported(c.client);
      await archiveChat(pool, {
        id: archived.chat.id,
        owner_id: archived.ownerId,
        api_key_id: null,
      });
      const noBranch = await agentChat();
      await gen.diffStatus(pool, noBranch.chat.id, { git_remote_origin: "https://x.test/a/b" });
      await pool.query(
        "UPDATE chat_diff_statuses SET stale_at = '2000-01-01Z' WHERE chat_id = $1",
        [noBranch.chat.id],
      );
      await c.at("2026-05-02T10:01:00Z");
      const claimed = await claimIDs(c.client);
      expect(claimed).not.toContain(archived.chat.id);
      expect(claimed).not.toContain(noBranch.chat.id);
    } finally {
      await c.release();
    }
  });

  it("leaves an archived chat's reference out until it is unarchived, then claims it at once", async () => {
    const c = await clocked();
    try {
      await c.at("2026-05-03T10:00:00Z");
      const r = await reported(c.client);
      await archiveChat(pool, { id: r.chat.id, owner_id: r.ownerId, api_key_id: null });
      await c.at("2026-05-03T10:10:00Z");
      expect(await claimIDs(c.client)).not.toContain(r.chat.id);
      // Claimed and refreshed, then archived: still never due while archived.
      const { rows } = await pool.query(
        "SELECT chat_archived FROM chat_diff_statuses WHERE chat_id = $1",
        [r.chat.id],
      );
      expect(rows[0].chat_archived).toBe(true);
      await pool.query(
        "UPDATE chat_diff_statuses SET stale_at = '2026-05-03T11:00:00Z' WHERE chat_id = $1",
        [r.chat.id],
      );
      await c.client.query("SELECT chat_set_archived($1, $2, false, NULL)", [r.chat.id, r.ownerId]);
      expect((await rowOf(r.chat.id)).stale_at).toBe("2026-05-03T10:09:59.000000Z");
      expect(await claimIDs(c.client)).toContain(r.chat.id);
    } finally {
      await c.release();
    }
  });

  it("two refreshers claiming at once never take the same row", async () => {
    const c = await clocked();
    const a = await session(pool);
    const b = await session(pool);
    try {
      await c.at("2000-01-01T00:00:00Z");
      const host = `${gen.uniqueName("forge")}.test`;
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push((await reported(c.client, host)).chat.id);
      // Everything else due is claimed away first, so the two see only these ten.
      await c.at("2000-01-01T00:00:01Z");
      await claimIDs(c.client);
      await pool.query(
        "UPDATE chat_diff_statuses SET stale_at = '2000-01-01Z' WHERE chat_id = ANY($1)",
        [ids],
      );
      for (const s of [a, b]) {
        await s.client.query(
          "SELECT set_config('pgchatd.clock_now', '2000-01-01T00:00:02Z', false)",
        );
        await s.client.query("BEGIN");
      }
      const first = await claimIDs(a.client, 6);
      const second = await claimIDs(b.client, 10);
      await a.client.query("COMMIT");
      await b.client.query("COMMIT");
      expect(first).toHaveLength(6);
      expect(second).toHaveLength(4);
      expect(new Set([...first, ...second])).toEqual(new Set(ids));
    } finally {
      for (const s of [a, b]) {
        await s.client.query("RESET pgchatd.clock_now");
        s.release();
      }
      await c.release();
    }
  });
});

describe("a refresh's outcome", () => {
  /** A reference claimed at 10:00:30 whose activity was reported at 10:00:00. */
  async function claimedAt(c: Awaited<ReturnType<typeof clocked>>, day: string) {
    await c.at(`${day}T10:00:00Z`);
    const r = await reported(c.client);
    await c.at(`${day}T10:00:30Z`);
    const [row] = (await claimStaleChatDiffStatuses(c.client, { batch_size: 1000 })).filter(
      (x) => x.chat_id === r.chat.id,
    );
    const record = (
      outcome: string,
      more: { pr?: unknown; error?: string; until?: string; tokenUserId?: string } = {},
    ) =>
      recordChatDiffStatusRefresh(c.client, {
        chat_id: r.chat.id,
        git_branch: row!.git_branch!,
        git_remote_origin: row!.git_remote_origin!,
        updated_at: row!.updated_at!,
        outcome,
        pr: more.pr ?? null,
        error: more.error ?? null,
        until: more.until ?? null,
        token_user_id: more.tokenUserId ?? null,
      });
    return { ...r, record };
  }

  it("found: stores the pull request, refreshed now, next refresh in 120 s, and is a diff_status_change event", async () => {
    const c = await clocked();
    try {
      const r = await claimedAt(c, "2026-06-01");
      const events = async () =>
        (
          await pool.query(
            "SELECT count(*)::int AS n FROM chat_events WHERE chat_id = $1 AND kind = 'diff_status_change'",
            [r.chat.id],
          )
        ).rows[0].n;
      const afterClaim = await events();
      const applied = await r.record("found", {
        pr: { url: "https://x.test/acme/api/pull/9", state: "open", title: "Fix", number: 9 },
      });
      expect(applied.applied).toBe(true);
      expect(await rowOf(r.chat.id)).toEqual({
        stale_at: "2026-06-01T10:02:30.000000Z",
        updated_at: "2026-06-01T10:00:30.000000Z",
        refreshed_at: "2026-06-01T10:00:30.000000Z",
        last_error: null,
        pr_number: 9,
        pull_request_state: "open",
        url: "https://x.test/acme/api/pull/9",
      });
      expect(await events()).toBe(afterClaim + 1);
    } finally {
      await c.release();
    }
  });

  it("the claim and a backoff are no event", async () => {
    const c = await clocked();
    try {
      await c.at("2026-06-02T10:00:00Z");
      const r = await reported(c.client);
      const count = async () =>
        (
          await pool.query(
            "SELECT count(*)::int AS n FROM chat_events WHERE chat_id = $1 AND kind = 'diff_status_change'",
            [r.chat.id],
          )
        ).rows[0].n;
      const before = await count();
      await c.at("2026-06-02T10:00:30Z");
      await claimIDs(c.client);
      expect(await count()).toBe(before);
    } finally {
      await c.release();
    }
  });

  it("no pull request within 2 minutes of the push: retry in 15 s; later: the 5-minute lock stands", async () => {
    const c = await clocked();
    try {
      const fresh = await claimedAt(c, "2026-06-03");
      await fresh.record("no_pr");
      expect((await rowOf(fresh.chat.id)).stale_at).toBe("2026-06-03T10:00:45.000000Z");

      await c.at("2026-06-04T10:00:00Z");
      const old = await reported(c.client);
      await c.at("2026-06-04T10:03:00Z");
      const [row] = (await claimStaleChatDiffStatuses(c.client, { batch_size: 1000 })).filter(
        (x) => x.chat_id === old.chat.id,
      );
      await recordChatDiffStatusRefresh(c.client, {
        chat_id: old.chat.id,
        git_branch: row!.git_branch!,
        git_remote_origin: row!.git_remote_origin!,
        updated_at: row!.updated_at!,
        outcome: "no_pr",
        pr: null,
        error: null,
        until: null,
        token_user_id: null,
      });
      expect(await rowOf(old.chat.id)).toMatchObject({
        stale_at: "2026-06-04T10:08:00.000000Z",
        updated_at: "2026-06-04T10:00:00.000000Z",
      });
    } finally {
      await c.release();
    }
  });

  it("an error retries in 120 s and is kept; updated_at does not move", async () => {
    const c = await clocked();
    try {
      const r = await claimedAt(c, "2026-06-05");
      await r.record("error", { error: "HTTP 502: bad gateway" });
      expect(await rowOf(r.chat.id)).toMatchObject({
        stale_at: "2026-06-05T10:02:30.000000Z",
        updated_at: "2026-06-05T10:00:00.000000Z",
        last_error: "HTTP 502: bad gateway",
      });
    } finally {
      await c.release();
    }
  });

  it("rate limited: every row of that forge waits until its reset, other forges do not", async () => {
    const c = await clocked();
    try {
      const r = await claimedAt(c, "2026-06-06");
      const sameForge = await reported(c.client, r.host);
      const otherForge = await reported(c.client);
      await r.record("rate_limited", { until: "2026-06-06T11:00:00Z", error: "HTTP 429" });
      expect((await rowOf(r.chat.id)).stale_at).toBe("2026-06-06T11:00:00.000000Z");
      await c.at("2026-06-06T10:30:00Z");
      const during = await claimIDs(c.client);
      expect(during).not.toContain(sameForge.chat.id);
      expect(during).toContain(otherForge.chat.id);
      await c.at("2026-06-06T11:00:00Z");
      expect(await claimIDs(c.client)).toContain(sameForge.chat.id);
    } finally {
      await c.release();
    }
  });

  it("rate limited on a user's own token: only that user's references on the forge wait", async () => {
    const c = await clocked();
    try {
      const r = await claimedAt(c, "2026-06-08");
      await pool.query(
        "INSERT INTO chat_forge_tokens (user_id, token_ciphertext) VALUES ($1, '\\x00')",
        [r.ownerId],
      );
      const deployment = await reported(c.client, r.host);
      await r.record("rate_limited", {
        until: "2026-06-08T11:00:00Z",
        error: "HTTP 429",
        tokenUserId: r.ownerId,
      });
      await c.at("2026-06-08T10:30:00Z");
      expect(await claimIDs(c.client)).toContain(deployment.chat.id);
      await pool.query(
        "UPDATE chat_diff_statuses SET stale_at = '2026-06-08T10:00:00Z' WHERE chat_id = $1",
        [r.chat.id],
      );
      expect(await claimIDs(c.client)).not.toContain(r.chat.id);
      // Without their own token the user's chats share the deployment's (unlimited) token.
      await pool.query("DELETE FROM chat_forge_tokens WHERE user_id = $1", [r.ownerId]);
      expect(await claimIDs(c.client)).toContain(r.chat.id);
    } finally {
      await c.release();
    }
  });

  it("a merged pull request is final: next refreshed in a day, unless the agent reports first", async () => {
    const c = await clocked();
    try {
      const r = await claimedAt(c, "2026-06-09");
      await r.record("found", {
        pr: { url: "https://x.test/a/b/pull/1", state: "merged", number: 1 },
      });
      expect((await rowOf(r.chat.id)).stale_at).toBe("2026-06-10T10:00:30.000000Z");
    } finally {
      await c.release();
    }
  });

  it("is not applied once the chat is archived, and a record without the claimed reference is refused", async () => {
    const c = await clocked();
    try {
      const r = await claimedAt(c, "2026-06-10");
      await archiveChat(pool, { id: r.chat.id, owner_id: r.ownerId, api_key_id: null });
      const applied = await r.record("found", { pr: { number: 4, state: "open" } });
      expect(applied.applied).toBe(false);
      expect((await rowOf(r.chat.id)).pr_number).toBeNull();
      const bad = (sql: string) =>
        expect(c.client.query(sql, [r.chat.id])).rejects.toMatchObject({ code: "22023" });
      await bad(
        "SELECT chat_diff_status_record_refresh($1, NULL, 'x', now(), 'no_pr', NULL, NULL, NULL, NULL)",
      );
      await bad(
        "SELECT chat_diff_status_record_refresh($1, 'b', 'x', now(), 'found', NULL, NULL, NULL, NULL)",
      );
      await bad(
        "SELECT chat_diff_status_record_refresh($1, 'b', 'x', now(), 'rate_limited', NULL, NULL, NULL, NULL)",
      );
      await bad(
        "SELECT chat_diff_status_record_refresh($1, 'b', 'x', now(), 'maybe', NULL, NULL, NULL, NULL)",
      );
    } finally {
      await c.release();
    }
  });

  it("is not applied to a reference the agent changed after the claim", async () => {
    const c = await clocked();
    try {
      const r = await claimedAt(c, "2026-06-07");
      await c.at("2026-06-07T10:00:40Z");
      await reportChatGitActivity(c.client, {
        agent_id: r.agentId,
        chat_id: r.chat.id,
        branch: "other",
        remote_origin: `https://${r.host}/acme/api.git`,
        url: null,
      });
      const applied = await r.record("found", { pr: { number: 1, state: "open" } });
      expect(applied.applied).toBe(false);
      expect(await rowOf(r.chat.id)).toMatchObject({ pr_number: null, refreshed_at: null });
    } finally {
      await c.release();
    }
  });
});
