import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGithubForge } from "../../src/forge/github.ts";
import { forgeTokenSealedFor } from "../../src/forge/refresh.ts";
import { type FakeForge, fakeForge } from "../../support/fake_forge.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";

/*
 * Pull-request status: what a workspace agent reports of its git activity
 * (POST /workspaceagents/me/git-activity), through app.request. The rule is
 * chat_diff_status_report_activity (sql/functions/chat_diff_statuses.sql).
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

const chats = "/api/experimental/chats";
const me = "/api/v2/workspaceagents/me";

/** A user's chat bound to a workspace whose build has one agent. */
async function boundChat() {
  const u = await gen.user(t.pool, { organizationIds: [orgId] });
  const token = await gen.apiKey(t.pool, u.id);
  const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: u.id });
  const agent = (await gen.build(t.pool, ws.id)).agents[0]!;
  const chat = await gen.chat(t.pool, {
    ownerId: u.id,
    organizationId: orgId,
    workspace_id: ws.id,
  });
  return { userId: u.id, token, agent, chat };
}

const report = (agentToken: string, body: unknown) =>
  t.call("POST", `${me}/git-activity`, { body, headers: { "coder-agent-token": agentToken } });

const timestamp = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);

describe("POST /workspaceagents/me/git-activity", () => {
  it("stores the branch and remote for the agent's one active chat, marked stale now, and the chat shows it", async () => {
    const s = await boundChat();
    const before = Date.now();
    const res = await report(s.agent.token, {
      branch: "fix/flaky-test",
      remote_origin: "https://github.com/acme/api.git",
    });
    expect(res.status, res.text).toBe(200);
    expect(res.json).toEqual({
      chat_id: s.chat.id,
      url: null,
      pull_request_state: null,
      pull_request_title: "",
      pull_request_draft: false,
      pr_number: null,
      changes_requested: false,
      additions: 0,
      deletions: 0,
      changed_files: 0,
      git_branch: "fix/flaky-test",
      git_remote_origin: "https://github.com/acme/api.git",
      refreshed_at: null,
      stale_at: timestamp,
    });
    // Stale now: due for the refresher at once.
    expect(Date.parse(res.json.stale_at)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(res.json.stale_at)).toBeGreaterThan(before - 5_000);
    const chat = await t.call("GET", `${chats}/${s.chat.id}`, { token: s.token });
    expect(chat.json.diff_status).toEqual(res.json);
  });

  it("keeps the pull request's fields for the same branch and drops them for another", async () => {
    const s = await boundChat();
    const remote = "git@github.com:acme/api.git";
    await report(s.agent.token, { branch: "a", remote_origin: remote });
    // As a refresh would leave it: the branch's pull request found.
    await t.pool.query(
      `UPDATE chat_diff_statuses SET pull_request_state = 'open', pull_request_title = 'Fix it',
         pr_number = 7, additions = 3, url = 'https://github.com/acme/api/pull/7',
         refreshed_at = now()
       WHERE chat_id = $1`,
      [s.chat.id],
    );
    const same = await report(s.agent.token, { branch: "a", remote_origin: remote });
    expect(same.json).toMatchObject({
      pr_number: 7,
      pull_request_title: "Fix it",
      url: "https://github.com/acme/api/pull/7",
      additions: 3,
    });
    const other = await report(s.agent.token, { branch: "b", remote_origin: remote });
    expect(other.json).toMatchObject({
      git_branch: "b",
      pr_number: null,
      pull_request_state: null,
      pull_request_title: "",
      url: null,
      additions: 0,
      refreshed_at: null,
    });
    const withUrl = await report(s.agent.token, {
      branch: "b",
      remote_origin: remote,
      url: "https://github.com/acme/api/pull/8",
    });
    expect(withUrl.json.url).toBe("https://github.com/acme/api/pull/8");
  });

  it("names a chat with chat_id; another agent's chat or an unknown one is 404, and none active is 400", async () => {
    const s = await boundChat();
    const other = await boundChat();
    const body = { branch: "main", remote_origin: "https://github.com/acme/api.git" };
    expect((await report(s.agent.token, { ...body, chat_id: s.chat.id })).status).toBe(200);
    expect((await report(s.agent.token, { ...body, chat_id: other.chat.id })).status).toBe(404);
    expect((await report(s.agent.token, { ...body, chat_id: randomUUID() })).status).toBe(404);
    await t.call("PATCH", `${chats}/${s.chat.id}`, { token: s.token, body: { archived: true } });
    const none = await report(s.agent.token, body);
    expect(none.status).toBe(400);
    expect(none.json.message).toBe("The agent has no active chat.");
    const archived = await report(s.agent.token, { ...body, chat_id: s.chat.id });
    expect(archived.status).toBe(400);
    const { rows } = await t.pool.query(
      "SELECT count(*)::int AS n FROM chat_diff_statuses WHERE chat_id = $1",
      [other.chat.id],
    );
    expect(rows[0].n).toBe(0);
  });

  it("rejects bad input and other credentials, storing nothing", async () => {
    const s = await boundChat();
    for (const body of [
      {},
      { branch: "", remote_origin: "x" },
      { branch: "main" },
      { branch: "a\nb", remote_origin: "https://github.com/acme/api.git" },
      { branch: "main", remote_origin: "x".repeat(2049) },
      { branch: "main", remote_origin: "x", url: "ftp://example.com/pr/1" },
      { branch: "main", remote_origin: "x", extra: true },
    ]) {
      expect((await report(s.agent.token, body)).status, JSON.stringify(body)).toBe(400);
    }
    const body = { branch: "main", remote_origin: "https://github.com/acme/api.git" };
    expect((await t.call("POST", `${me}/git-activity`, { token: s.token, body })).status).toBe(401);
    expect((await t.call("POST", `${me}/git-activity`, { body })).status).toBe(401);
    const { rows } = await t.pool.query(
      "SELECT count(*)::int AS n FROM chat_diff_statuses WHERE chat_id = $1",
      [s.chat.id],
    );
    expect(rows[0].n).toBe(0);
  });
});

describe("pull requests as users see them", () => {
  let fake: FakeForge;
  let f: Awaited<ReturnType<typeof testApp>>;
  /** Long enough never to be reached on a busy machine when the forge answers at once. */
  const inlineMs = 10_000;

  beforeAll(async () => {
    fake = await fakeForge();
    f = await testApp({
      forge: { forge: createGithubForge({ apiUrl: fake.url, host: "github.com" }), inlineMs },
    });
  });
  afterAll(() => fake.close());

  const reportOn = (agentToken: string, branch: string) =>
    f.call("POST", `${me}/git-activity`, {
      body: { branch, remote_origin: "https://github.com/acme/api.git" },
      headers: { "coder-agent-token": agentToken },
    });

  it("GET /{chat} resolves a reference the refresher has not reached yet, inline", async () => {
    const s = await boundChat();
    const branch = gen.uniqueName("inline");
    fake.pulls.push({ owner: "acme", repo: "api", branch, number: 12, title: "Inline" });
    await reportOn(s.agent.token, branch);
    const res = await f.call("GET", `${chats}/${s.chat.id}`, { token: s.token });
    expect(res.status).toBe(200);
    expect(res.json.diff_status).toMatchObject({
      pr_number: 12,
      pull_request_title: "Inline",
      pull_request_state: "open",
      url: "https://github.com/acme/api/pull/12",
      refreshed_at: timestamp,
    });
    // Fresh now: the next GET asks the forge nothing.
    const asked = fake.requests.length;
    await f.call("GET", `${chats}/${s.chat.id}`, { token: s.token });
    expect(fake.requests.length).toBe(asked);
  });

  it("GET /{chat} answers without waiting for a forge that has not answered, whose answer is stored when it comes", async () => {
    const bounded = await testApp({
      forge: { forge: createGithubForge({ apiUrl: fake.url, host: "github.com" }), inlineMs: 50 },
    });
    const s = await boundChat();
    const branch = gen.uniqueName("slow");
    fake.pulls.push({ owner: "acme", repo: "api", branch, number: 13 });
    await reportOn(s.agent.token, branch);
    const release = fake.hold();
    try {
      const res = await bounded.call("GET", `${chats}/${s.chat.id}`, { token: s.token });
      // The forge holds every answer until release(): this response did not wait for it.
      expect(res.status).toBe(200);
      expect(res.json.diff_status).toMatchObject({ git_branch: branch, pr_number: null });
    } finally {
      release();
    }
    for (;;) {
      const { rows } = await f.pool.query(
        "SELECT pr_number FROM chat_diff_statuses WHERE chat_id = $1",
        [s.chat.id],
      );
      if (rows[0].pr_number === 13) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  it("GET /insights/pull-requests counts the caller's pull requests by state and pages their chats newest first", async () => {
    const u = await gen.user(f.pool, { organizationIds: [orgId] });
    const token = await gen.apiKey(f.pool, u.id);
    const states = [
      { pull_request_state: "open", pull_request_draft: true },
      { pull_request_state: "open", pull_request_draft: false },
      { pull_request_state: "open", pull_request_draft: false },
      { pull_request_state: "merged", pull_request_draft: false },
      { pull_request_state: "closed", pull_request_draft: false },
    ];
    const ids: string[] = [];
    for (const [i, st] of states.entries()) {
      const c = await gen.chat(f.pool, { ownerId: u.id, organizationId: orgId });
      await gen.diffStatus(f.pool, c.id, { ...st, pr_number: i + 1 });
      ids.push(c.id);
    }
    // No pull request yet, and someone else's: neither counts.
    const pending = await gen.chat(f.pool, { ownerId: u.id, organizationId: orgId });
    await gen.diffStatus(f.pool, pending.id, { git_branch: "wip" });
    const s = await boundChat();
    await gen.diffStatus(f.pool, s.chat.id, { pull_request_state: "open", pr_number: 1 });

    const all = await f.call("GET", `${chats}/insights/pull-requests`, { token });
    expect(all.status).toBe(200);
    expect(all.json.counts).toEqual({ total: 5, open: 2, merged: 1, closed: 1, draft: 1 });
    expect(all.json.chats.map((c: { chat_id: string }) => c.chat_id)).toEqual([...ids].reverse());
    expect(all.json.chats[0].diff_status).toMatchObject({ chat_id: ids[4], pr_number: 5 });

    const page = await f.call("GET", `${chats}/insights/pull-requests?limit=2&offset=1`, { token });
    expect(page.json.chats.map((c: { chat_id: string }) => c.chat_id)).toEqual([ids[3], ids[2]]);
    expect(page.json.counts.total).toBe(5);
    for (const q of ["limit=0", "limit=201", "offset=-1", "limit=x"]) {
      const bad = await f.call("GET", `${chats}/insights/pull-requests?${q}`, { token });
      expect(bad.status, q).toBe(400);
    }
  });

  it("a user's own forge token is stored sealed, reported only as has_token, and removable; replacing it lifts its rate limit", async () => {
    const u = await gen.user(f.pool, { organizationIds: [orgId] });
    const token = await gen.apiKey(f.pool, u.id);
    const path = `${chats}/github-token`;
    expect((await f.call("GET", path, { token })).json).toEqual({ has_token: false });
    const put = await f.call("PUT", path, { token, body: { token: "ghp_owner_secret_123" } });
    expect(put.status).toBe(204);
    expect((await f.call("GET", path, { token })).json).toEqual({ has_token: true });
    const { rows } = await f.pool.query(
      "SELECT token_ciphertext FROM chat_forge_tokens WHERE user_id = $1",
      [u.id],
    );
    expect(rows[0].token_ciphertext.includes(Buffer.from("ghp_owner_secret_123"))).toBe(false);
    expect(await f.secrets.decrypt(rows[0].token_ciphertext, forgeTokenSealedFor(u.id))).toBe(
      "ghp_owner_secret_123",
    );
    expect(f.logLines.join("")).not.toContain("ghp_owner_secret_123");
    for (const body of [{}, { token: "" }, { token: "has space" }, { token: "x", more: 1 }]) {
      expect((await f.call("PUT", path, { token, body })).status, JSON.stringify(body)).toBe(400);
    }
    // A rate limit the old token met does not hold the new one back, nor the deployment's.
    const parked = () =>
      f.pool
        .query("SELECT count(*)::int AS n FROM chat_forge_backoffs WHERE token_user_id = $1", [
          u.id,
        ])
        .then((r) => r.rows[0].n);
    const park = () =>
      f.pool.query(
        "INSERT INTO chat_forge_backoffs (host, token_user_id, until) VALUES ('github.com', $1, now() + interval '1 hour')",
        [u.id],
      );
    await park();
    await f.call("PUT", path, { token, body: { token: "ghp_owner_secret_456" } });
    expect(await parked()).toBe(0);
    await park();
    expect((await f.call("DELETE", path, { token })).status).toBe(204);
    expect(await parked()).toBe(0);
    expect((await f.call("GET", path, { token })).json).toEqual({ has_token: false });
    expect((await f.call("GET", path)).status).toBe(401);
  });
});
