import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { createGithubForge } from "../../src/forge/github.ts";
import { forgeTokenSealedFor } from "../../src/forge/refresh.ts";
import {
  reportChatGitActivity,
  upsertChatForgeTokenByUserID,
} from "../../src/generated/chat_diff_statuses.ts";
import { archiveChat } from "../../src/generated/chats.ts";
import { startDiffStatusRefresher } from "../../src/jobs/chat_diff_statuses.ts";
import { createSecrets } from "../../src/lib/secrets.ts";
import { type FakeForge, fakeForge } from "../../support/fake_forge.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger } from "../setup/app.ts";
import { newPool, testDb } from "../setup/db.ts";

/*
 * The pull-request status refresher (src/jobs/chat_diff_statuses.ts) end to end: stale references
 * in the database, a GitHub-shaped forge on loopback (support/fake_forge.ts), the outcome and its
 * backoff recorded by chat_diff_status_record_refresh. The backoff arithmetic on a controlled
 * clock is test/sql/chat_diff_statuses.test.ts; here the clock is real, so backoffs are checked
 * by the window they fall in (15 s, 120 s, 5 minutes), which load cannot blur.
 */

let pool: Pool;
let url: string;
let orgId: string;
let fake: FakeForge;
const { logger } = captureLogger();
const secrets = createSecrets(randomBytes(32));

beforeAll(async () => {
  ({ pool, url } = await testDb());
  orgId = (await gen.organization(pool)).id;
  fake = await fakeForge();
});
afterAll(() => fake.close());
beforeEach(() => {
  fake.pulls = [];
  fake.requests = [];
  fake.fail = undefined;
});

/** A refresher that only runs when asked (runOnce), on `db`. */
function refresher(
  db: Pool = pool,
  forge = createGithubForge({ apiUrl: fake.url, host: "github.com", token: "deploy" }),
) {
  return startDiffStatusRefresher({ pool: db, forge, secrets, logger, pollMs: 3_600_000 });
}

/** A chat bound to an agent, with git activity on a branch of its own just reported. */
async function reported(opts: { remote?: string; parentChatId?: string } = {}) {
  const u = await gen.user(pool, { organizationIds: [orgId] });
  const ws = await gen.workspace(pool, { organizationId: orgId, ownerId: u.id });
  const agent = (await gen.build(pool, ws.id)).agents[0]!;
  const chat = await gen.chat(pool, { ownerId: u.id, organizationId: orgId, workspace_id: ws.id });
  const branch = gen.uniqueName("branch");
  await reportChatGitActivity(pool, {
    agent_id: agent.id,
    chat_id: chat.id,
    branch,
    remote_origin: opts.remote ?? "git@github.com:acme/app.git",
    url: null,
  });
  return { ownerId: u.id, agentId: agent.id, chat, branch };
}

/** The row, with its backoff as seconds from now. */
async function rowOf(chatId: string) {
  const { rows } = await pool.query(
    `SELECT d.*, extract(epoch FROM d.stale_at - now())::float8 AS due_in,
       extract(epoch FROM d.stale_at - d.refreshed_at)::float8 AS refreshed_due_in
     FROM chat_diff_statuses d WHERE chat_id = $1`,
    [chatId],
  );
  return rows[0];
}

const listRequests = (branch: string) =>
  fake.requests.filter(
    (r) => r.path.startsWith("/repos/acme/app/pulls?") && r.path.includes(branch),
  );

describe("the refresher", () => {
  it("stores the branch's pull request with every field, refreshed now, next refresh in 120 s", async () => {
    const r = await reported();
    fake.pulls.push({
      owner: "acme",
      repo: "app",
      branch: r.branch,
      number: 77,
      title: "Speed up the list",
      draft: false,
      additions: 40,
      deletions: 2,
      changed_files: 3,
      reviews: [{ user: 1, state: "CHANGES_REQUESTED" }],
    });
    const job = refresher();
    try {
      expect(await job.runOnce()).toBeGreaterThanOrEqual(1);
    } finally {
      await job.stop();
    }
    const row = await rowOf(r.chat.id);
    expect(row).toMatchObject({
      url: "https://github.com/acme/app/pull/77",
      pull_request_state: "open",
      pull_request_title: "Speed up the list",
      pull_request_draft: false,
      pr_number: 77,
      additions: 40,
      deletions: 2,
      changed_files: 3,
      changes_requested: true,
      git_branch: r.branch,
      git_remote_origin: "git@github.com:acme/app.git",
      last_error: null,
      refreshed_due_in: 120,
    });
    expect(row.updated_at).toBe(row.refreshed_at);
  });

  it("retries a branch pushed moments ago without a pull request in 15 s, and leaves an older one the 5-minute lock", async () => {
    const fresh = await reported();
    const old = await reported();
    await pool.query(
      "UPDATE chat_diff_statuses SET updated_at = now() - interval '3 minutes' WHERE chat_id = $1",
      [old.chat.id],
    );
    const before = await rowOf(old.chat.id);
    const job = refresher();
    try {
      await job.runOnce();
    } finally {
      await job.stop();
    }
    const f = await rowOf(fresh.chat.id);
    const o = await rowOf(old.chat.id);
    expect(f.due_in).toBeGreaterThan(0);
    expect(f.due_in).toBeLessThanOrEqual(15);
    expect(o.due_in).toBeGreaterThan(240);
    expect(o.due_in).toBeLessThanOrEqual(300);
    expect([f.refreshed_at, o.refreshed_at, f.pr_number, o.pr_number]).toEqual([
      null,
      null,
      null,
      null,
    ]);
    expect(o.updated_at).toBe(before.updated_at);
    expect(listRequests(fresh.branch)).toHaveLength(1);
  });

  it("ends forge 401, 404 and 5xx in the 120 s backoff with the error recorded and updated_at kept", async () => {
    for (const [status, message] of [
      [401, "Bad credentials"],
      [404, "Not Found"],
      [503, "Unavailable"],
    ] as const) {
      const r = await reported();
      const before = await rowOf(r.chat.id);
      fake.fail = { status, message };
      const job = refresher();
      try {
        await job.runOnce();
      } finally {
        await job.stop();
      }
      const row = await rowOf(r.chat.id);
      expect(row.last_error, String(status)).toBe(`forge answered ${status}: ${message}`);
      expect(row.due_in).toBeGreaterThan(60);
      expect(row.due_in).toBeLessThanOrEqual(120);
      expect(row.updated_at).toBe(before.updated_at);
      expect(row.pr_number).toBeNull();
    }
  });

  it("parks every reference of a rate-limited forge until its reset, and claims none of them meanwhile", async () => {
    const ghe = createGithubForge({ apiUrl: fake.url, host: "ghe.test" });
    const a = await reported({ remote: "https://ghe.test/acme/app.git" });
    const b = await reported({ remote: "https://ghe.test/acme/app.git" });
    try {
      fake.fail = { status: 429, headers: { "retry-after": "600" } };
      const job = refresher(pool, ghe);
      try {
        await job.runOnce();
        // Made stale again, they still wait for the forge: nothing asks it before its reset.
        await pool.query(
          "UPDATE chat_diff_statuses SET stale_at = now() - interval '1 second' WHERE chat_id = ANY($1)",
          [[a.chat.id, b.chat.id]],
        );
        fake.requests = [];
        await job.runOnce();
        expect(fake.requests).toEqual([]);
      } finally {
        await job.stop();
      }
      const { rows } = await pool.query(
        "SELECT host, extract(epoch FROM until - now())::float8 AS wait FROM chat_forge_backoffs",
      );
      expect(rows).toHaveLength(1);
      expect(rows[0].host).toBe("ghe.test");
      expect(rows[0].wait).toBeGreaterThan(500);
      expect(rows[0].wait).toBeLessThanOrEqual(600);
      expect((await rowOf(a.chat.id)).last_error ?? (await rowOf(b.chat.id)).last_error).toBe(
        "forge rate limited (429)",
      );
      // Another forge's references are refreshed as usual.
      const elsewhere = await reported();
      fake.fail = undefined;
      const github = refresher();
      try {
        await github.runOnce();
      } finally {
        await github.stop();
      }
      expect(listRequests(elsewhere.branch)).toHaveLength(1);
    } finally {
      await pool.query("DELETE FROM chat_forge_backoffs");
    }
  });

  it("never refreshes an archived chat's reference", async () => {
    const r = await reported();
    await archiveChat(pool, { id: r.chat.id, owner_id: r.ownerId, api_key_id: null });
    const job = refresher();
    try {
      await job.runOnce();
    } finally {
      await job.stop();
    }
    expect(listRequests(r.branch)).toEqual([]);
    expect((await rowOf(r.chat.id)).due_in).toBeLessThan(0);
  });

  it("asks the forge with the owner's own token for their chats, else the deployment's", async () => {
    const mine = await reported();
    const theirs = await reported();
    await upsertChatForgeTokenByUserID(pool, {
      user_id: mine.ownerId,
      token_ciphertext: await secrets.encrypt("owner-token", forgeTokenSealedFor(mine.ownerId)),
    });
    const job = refresher();
    try {
      await job.runOnce();
    } finally {
      await job.stop();
    }
    expect(listRequests(mine.branch).map((r) => r.authorization)).toEqual(["Bearer owner-token"]);
    expect(listRequests(theirs.branch).map((r) => r.authorization)).toEqual(["Bearer deploy"]);
  });

  it("drops an answer about a reference the agent replaced during the refresh", async () => {
    const r = await reported();
    fake.pulls.push({ owner: "acme", repo: "app", branch: r.branch, number: 5 });
    const release = fake.hold();
    const job = refresher();
    try {
      const running = job.runOnce();
      while (listRequests(r.branch).length === 0) await new Promise((x) => setTimeout(x, 10));
      await reportChatGitActivity(pool, {
        agent_id: r.agentId,
        chat_id: r.chat.id,
        branch: "next",
        remote_origin: "git@github.com:acme/app.git",
        url: null,
      });
      release();
      await running;
    } finally {
      release();
      await job.stop();
    }
    const row = await rowOf(r.chat.id);
    expect(row).toMatchObject({ git_branch: "next", pr_number: null, refreshed_at: null });
    expect(row.due_in).toBeLessThan(0);
  });

  it("two refreshers on their own connections refresh each of 100 references exactly once", async () => {
    const other = newPool(url, 4);
    const branches: string[] = [];
    for (let i = 0; i < 100; i++) {
      const r = await reported();
      branches.push(r.branch);
      fake.pulls.push({ owner: "acme", repo: "app", branch: r.branch, number: 1000 + i });
    }
    const a = refresher(pool);
    const b = refresher(other);
    try {
      await Promise.all([a.runOnce(), b.runOnce()]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
    for (const branch of branches) expect(listRequests(branch), branch).toHaveLength(1);
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM chat_diff_statuses WHERE git_branch = ANY($1) AND pr_number >= 1000",
      [branches],
    );
    expect(rows[0].n).toBe(100);
  });
});

describe("diff_status_change events", () => {
  it("go to the chat whose pull request changed and to its root, and never for a refresh that changed nothing", async () => {
    const r = await reported();
    const child = await gen.chat(pool, { ownerId: r.ownerId, parent_chat_id: r.chat.id });
    const { rows: before } = await pool.query("SELECT coalesce(max(id), 0) AS id FROM chat_events");
    await gen.diffStatus(pool, child.id, { pr_number: 3, pull_request_state: "open" });
    await pool.query(
      "UPDATE chat_diff_statuses SET pull_request_title = 'renamed' WHERE chat_id = $1",
      [child.id],
    );
    // A claim's or backoff's stale_at, and a refresh that found the same pull request, are not
    // changes.
    await pool.query(
      `UPDATE chat_diff_statuses SET stale_at = now() + interval '1 hour', last_error = 'x',
         refreshed_at = now(), updated_at = now()
       WHERE chat_id = $1`,
      [child.id],
    );
    const { rows } = await pool.query(
      "SELECT chat_id, kind FROM chat_events WHERE id > $1 AND kind = 'diff_status_change' ORDER BY id",
      [before[0].id],
    );
    const ids = rows.map((e) => e.chat_id);
    expect(ids.filter((id) => id === child.id)).toHaveLength(2);
    expect(ids.filter((id) => id === r.chat.id)).toHaveLength(2);
    expect(ids).toHaveLength(4);
  });
});
