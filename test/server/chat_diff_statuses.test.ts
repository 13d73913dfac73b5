import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
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
