import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import type { Member } from "../setup/chat_requests.ts";

/*
 * The telemetry snapshot (docs/api.md "Telemetry"): what it counts, and that it carries nothing a
 * user wrote or is: strings planted in every such place must not appear anywhere in it.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;
let owner: Member;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
  owner = await gen.member(t.pool, { organizationIds: [orgId], owner: true });
});

const snapshot = (who: Member, query = "") =>
  t.call("GET", `/api/v2/telemetry/snapshot${query}`, { token: who.token });

describe("GET /api/v2/telemetry/snapshot", () => {
  it("counts a chat's messages, tokens and cost, and contains no title, message text, URL, label, email or name", async () => {
    const planted = {
      title: "PLANTED-TITLE-4412",
      text: "PLANTED-CONTENT-9931",
      label: "PLANTED-LABEL-2210",
      url: "https://planted-url-7781.example/acme/api/pull/3",
      remote: "git@planted-remote-5520.example:acme/api.git",
      email: "planted-email-3318@example.test",
      name: "PLANTED-NAME-6604",
      username: "planted-user-1187",
      file: "PLANTED-FILE-0093.txt",
    };
    const { rows } = await t.pool.query(
      `INSERT INTO users (username, name, email) VALUES ($1, $2, $3) RETURNING id`,
      [planted.username, planted.name, planted.email],
    );
    const userId = rows[0].id as string;
    await t.pool.query(
      "INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)",
      [orgId, userId],
    );
    const chat = await gen.chat(t.pool, {
      ownerId: userId,
      organizationId: orgId,
      text: planted.text,
      labels: { team: planted.label },
    });
    await t.pool.query("UPDATE chats SET title = $2 WHERE id = $1", [chat.id, planted.title]);
    // As a turn stores it: usage and cost written once, with the message.
    await t.pool.query(
      `INSERT INTO chat_messages (chat_id, role, content, input_tokens, output_tokens,
         total_cost_micros, runtime_ms)
       VALUES ($1, 'assistant', $2, 100, 20, 7, 50)`,
      [chat.id, JSON.stringify([{ type: "text", text: planted.text }])],
    );
    await gen.diffStatus(t.pool, chat.id, {
      url: planted.url,
      git_remote_origin: planted.remote,
      pull_request_title: planted.title,
      pull_request_state: "merged",
      pr_number: 3,
    });
    await gen.chatFile(t.pool, { ownerId: userId, organizationId: orgId, name: planted.file });

    const res = await snapshot(owner);
    expect(res.status).toBe(200);
    for (const [what, value] of Object.entries(planted)) {
      expect(res.text.includes(value), `${what} leaked`).toBe(false);
    }
    expect(res.text).not.toContain("planted");
    const mine = res.json.chats.find((c: { id: string }) => c.id === chat.id);
    expect(mine).toEqual({
      id: chat.id,
      status: "pending",
      mode: null,
      archived: false,
      has_parent: false,
      root_chat_id: chat.id,
      model_config_id: chat.last_model_config_id,
      workspace_bound: false,
      created_at: chat.created_at,
    });
    const summary = res.json.chat_message_summaries.find(
      (s: { chat_id: string }) => s.chat_id === chat.id,
    );
    expect(summary).toMatchObject({
      messages: { user: 1, assistant: 1, tool: 0, system: 0 },
      tokens: { input: 100, output: 20 },
      total_cost_micros: 7,
      runtime_ms: 50,
    });
    expect(res.json.pull_requests.merged).toBeGreaterThanOrEqual(1);
    expect(res.json.model_configs.length).toBeGreaterThanOrEqual(1);
    expect(Object.keys(res.json.model_configs[0]).sort()).toEqual(
      ["context_limit", "enabled", "id", "is_default", "model", "provider"].sort(),
    );
  });

  it("covers the window from since, and refuses members and bad values", async () => {
    const chat = await gen.chat(t.pool, { ownerId: owner.id, organizationId: orgId });
    const later = new Date(Date.now() + 60_000).toISOString();
    const empty = await snapshot(
      owner,
      `?since=${encodeURIComponent(new Date(Date.now() - 1).toISOString())}`,
    );
    expect(empty.json.chats.map((c: { id: string }) => c.id)).not.toContain(chat.id);
    const wide = await snapshot(owner, "?since=2000-01-01T00:00:00Z");
    expect(wide.json.chats.map((c: { id: string }) => c.id)).toContain(chat.id);
    expect(wide.json.truncated).toBe(false);
    const member = await gen.member(t.pool, { organizationIds: [orgId] });
    expect((await snapshot(member)).status).toBe(403);
    for (const q of ["?since=yesterday", `?since=${encodeURIComponent(later)}`]) {
      expect((await snapshot(owner, q)).status, q).toBe(400);
    }
  });
});
