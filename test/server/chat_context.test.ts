import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";

/*
 * The workspace agent's routes (docs/api.md: PUT /workspaceagents/me/context, POST and DELETE
 * /workspaceagents/me/chat-context) and PUT /chats/{chat}/context, through app.request.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

const chats = "/api/experimental/chats";
const me = "/api/v2/workspaceagents/me";

/** A user with a workspace whose build has one agent: the user's and the agent's tokens. */
async function setup() {
  const u = await gen.user(t.pool, { organizationIds: [orgId] });
  const token = await gen.apiKey(t.pool, u.id);
  const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: u.id });
  const build = await gen.build(t.pool, ws.id);
  return { userId: u.id, token, workspaceId: ws.id, agent: build.agents[0]! };
}

type Setup = Awaited<ReturnType<typeof setup>>;

const asAgent = (s: Setup, method: string, path: string, body?: unknown) =>
  t.call(method, `${me}${path}`, { body, headers: { "coder-agent-token": s.agent.token } });

async function createChat(s: Setup, body: Record<string, unknown> = {}) {
  const res = await t.call("POST", chats, {
    token: s.token,
    body: { content: [{ type: "text", text: "hi" }], workspace_id: s.workspaceId, ...body },
  });
  expect(res.status, res.text).toBe(201);
  return res.json as { id: string; context: Record<string, unknown> };
}

const resources = (v: string) => [
  { source: "AGENTS.md", kind: "instruction_file", body: `rules ${v}` },
  { source: "skills/review/SKILL.md", kind: "skill", body: "review well" },
  {
    source: ".mcp.json",
    kind: "mcp_config",
    body: "{}",
    status: "invalid",
    error: "not JSON enough",
  },
];

describe("PUT /workspaceagents/me/context", () => {
  it("stores the snapshot, marks the chats pinned to older content dirty, and says how many", async () => {
    const s = await setup();
    const first = await asAgent(s, "PUT", "/context", { resources: resources("1") });
    expect(first.status, first.text).toBe(200);
    expect(first.json).toEqual({
      aggregate_hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      marked_dirty: 0,
    });
    const chat = await createChat(s);
    expect(chat.context).toMatchObject({
      aggregate_hash: first.json.aggregate_hash,
      dirty: false,
      error: null,
    });

    const second = await asAgent(s, "PUT", "/context", {
      resources: resources("2"),
      error: "skills dir unreadable",
    });
    expect(second.json.marked_dirty).toBe(1);
    const got = await t.call("GET", `${chats}/${chat.id}`, { token: s.token });
    expect(got.json.context).toMatchObject({
      aggregate_hash: first.json.aggregate_hash,
      dirty: true,
      dirty_since: expect.any(String),
      dirty_resources: [{ source: "AGENTS.md", change: "modified" }],
    });
    const same = await asAgent(s, "PUT", "/context", { resources: resources("2") });
    expect(same.json).toEqual({ aggregate_hash: second.json.aggregate_hash, marked_dirty: 0 });
  });

  it.each([
    [{ resources: [{ source: "a", kind: "prompt", body: "" }] }, "resources.0.kind"],
    [
      { resources: [{ source: "a", kind: "skill", body: "", status: "fine" }] },
      "resources.0.status",
    ],
    [{ resources: [{ source: "", kind: "skill", body: "" }] }, "resources.0.source"],
    [{ resources: [{ source: "a", kind: "skill", body: "x\u0000y" }] }, "resources.0.body"],
    [
      { resources: [{ source: "a", kind: "skill", body: "x".repeat(256 * 1024 + 1) }] },
      "resources.0.body",
    ],
    [
      {
        resources: [
          { source: "a", kind: "skill", body: "" },
          { source: "a", kind: "skill", body: "" },
        ],
      },
      "resources",
    ],
    [
      {
        resources: Array.from({ length: 257 }, (_, i) => ({
          source: `s${i}`,
          kind: "skill",
          body: "",
        })),
      },
      "resources",
    ],
    [{ resources: [], extra: 1 }, "json"],
    [{}, "resources"],
  ])("answers 400 naming the field for %j", async (body, field) => {
    const s = await setup();
    const res = await asAgent(s, "PUT", "/context", body);
    expect(res.status).toBe(400);
    expect(res.json.validations.map((v: { field: string }) => v.field)).toContain(field);
    const { rows } = await t.pool.query(
      "SELECT 1 FROM workspace_agent_contexts WHERE agent_id = $1",
      [s.agent.id],
    );
    expect(rows).toHaveLength(0);
  });

  it("answers 401 to a user's token, a superseded build's agent and no token", async () => {
    const s = await setup();
    expect(
      (await t.call("PUT", `${me}/context`, { token: s.token, body: { resources: [] } })).status,
    ).toBe(401);
    expect((await t.call("PUT", `${me}/context`, { body: { resources: [] } })).status).toBe(401);
    await gen.build(t.pool, s.workspaceId);
    expect((await asAgent(s, "PUT", "/context", { resources: [] })).status).toBe(401);
  });
});

describe("POST and DELETE /workspaceagents/me/chat-context", () => {
  const files = [
    { path: "/home/coder/repo/AGENTS.md", content: "be brief" },
    { path: "/home/coder/repo/CLAUDE.md", content: "be kind" },
  ];

  it("adds context files to the agent's one active chat as a model-only message, and clears them", async () => {
    const s = await setup();
    const chat = await createChat(s);
    const added = await asAgent(s, "POST", "/chat-context", { files });
    expect(added.status, added.text).toBe(200);
    expect(added.json).toEqual({ chat_id: chat.id, added: 2 });
    const { rows } = await t.pool.query(
      'SELECT role, visibility, content FROM chat_messages WHERE chat_id = $1 AND content @> \'[{"type": "context-file"}]\'',
      [chat.id],
    );
    expect(rows).toEqual([
      {
        role: "user",
        visibility: "model",
        content: files.map((f) => ({
          type: "context-file",
          context_file_path: f.path,
          context_file_content: f.content,
        })),
      },
    ]);
    // Users do not see it in the history.
    const history = await t.call("GET", `${chats}/${chat.id}/messages`, { token: s.token });
    expect(history.json.messages.map((m: { role: string }) => m.role)).toEqual(["user"]);

    const cleared = await asAgent(s, "DELETE", `/chat-context?chat_id=${chat.id}`);
    expect(cleared.json).toEqual({ chat_id: chat.id, removed: 2 });
    const left = await t.pool.query(
      'SELECT count(*)::int AS n FROM chat_messages WHERE chat_id = $1 AND NOT deleted AND content @> \'[{"type": "context-file"}]\'',
      [chat.id],
    );
    expect(left.rows[0].n).toBe(0);
  });

  it("copies a chat's context files into a subagent chat spawned from it", async () => {
    const s = await setup();
    const parent = await createChat(s);
    await asAgent(s, "POST", "/chat-context", { chat_id: parent.id, files });
    const child = await createChat(s, { parent_chat_id: parent.id, workspace_id: undefined });
    const { rows } = await t.pool.query(
      'SELECT content FROM chat_messages WHERE chat_id = $1 AND content @> \'[{"type": "context-file"}]\'',
      [child.id],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].content.map((p: { context_file_path: string }) => p.context_file_path)).toEqual(
      files.map((f) => f.path),
    );
  });

  it("answers 400 when the agent has no active chat or several and none is named", async () => {
    const s = await setup();
    expect((await asAgent(s, "POST", "/chat-context", { files })).status).toBe(400);
    await createChat(s);
    await createChat(s);
    const res = await asAgent(s, "POST", "/chat-context", { files });
    expect(res.status).toBe(400);
    expect(res.json.message).toBe("The agent has several active chats.");
  });

  it("answers 404 for a chat bound to another agent, and 400 for an archived one", async () => {
    const s = await setup();
    const other = await setup();
    const theirs = await createChat(other);
    expect((await asAgent(s, "POST", "/chat-context", { chat_id: theirs.id, files })).status).toBe(
      404,
    );
    expect((await asAgent(s, "DELETE", `/chat-context?chat_id=${theirs.id}`)).status).toBe(404);
    const mine = await createChat(s);
    await t.call("PATCH", `${chats}/${mine.id}`, { token: s.token, body: { archived: true } });
    expect((await asAgent(s, "POST", "/chat-context", { chat_id: mine.id, files })).status).toBe(
      400,
    );
  });

  it("answers 400 for files that are not a list of 1 to 64 {path, content}", async () => {
    const s = await setup();
    await createChat(s);
    for (const body of [
      { files: [] },
      { files: [{ path: "a" }] },
      { files: Array.from({ length: 65 }, () => files[0]) },
    ]) {
      expect((await asAgent(s, "POST", "/chat-context", body)).status).toBe(400);
    }
  });
});

describe("PUT /chats/{chat}/context", () => {
  it("re-pins the agent's current context and clears dirty", async () => {
    const s = await setup();
    await asAgent(s, "PUT", "/context", { resources: resources("1") });
    const chat = await createChat(s);
    const pushed = await asAgent(s, "PUT", "/context", {
      resources: resources("2"),
      error: "partial",
    });
    const res = await t.call("PUT", `${chats}/${chat.id}/context`, { token: s.token });
    expect(res.status, res.text).toBe(200);
    expect(res.json.context).toEqual({
      aggregate_hash: pushed.json.aggregate_hash,
      dirty: false,
      dirty_since: null,
      dirty_resources: null,
      error: "partial",
    });
  });

  it("records an error, and still answers 200, when the agent has pushed nothing yet", async () => {
    const s = await setup();
    const chat = await createChat(s);
    const res = await t.call("PUT", `${chats}/${chat.id}/context`, { token: s.token });
    expect(res.status).toBe(200);
    expect(res.json.context).toMatchObject({
      aggregate_hash: null,
      error: "The workspace agent has not pushed its context yet.",
    });
  });

  it("answers 400 for a chat without a workspace and 404 for another user's chat", async () => {
    const s = await setup();
    const plain = await t.call("POST", chats, {
      token: s.token,
      body: { content: [{ type: "text", text: "x" }] },
    });
    const res = await t.call("PUT", `${chats}/${plain.json.id}/context`, { token: s.token });
    expect(res.status).toBe(400);
    expect(res.json.message).toBe("The chat is not bound to a workspace agent.");
    const other = await setup();
    const theirs = await createChat(other);
    expect((await t.call("PUT", `${chats}/${theirs.id}/context`, { token: s.token })).status).toBe(
      404,
    );
  });
});
