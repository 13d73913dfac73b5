import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";

/*
 * POST /, GET /{chat} and PATCH /{chat}. List, files, models and by-workspace have their own
 * files; the SQL-level rules are in test/sql/chats.test.ts.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

const base = "/api/experimental/chats";
const text = (s: string) => [{ type: "text", text: s }];

interface Member {
  id: string;
  token: string;
}

const member = (): Promise<Member> => gen.member(t.pool, { organizationIds: [orgId] });

async function create(token: string, body: Record<string, unknown>) {
  return t.call("POST", base, { token, body: { content: text("hi"), ...body } });
}

describe("POST /chats", () => {
  it("creates a pending api chat in the caller's first organization with the first user message", async () => {
    const u = await member();
    const res = await create(u.token, { content: text("Fix the   flaky test\nplease") });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({
      owner_id: u.id,
      organization_id: orgId,
      status: "pending",
      client_type: "api",
      title: "Fix the flaky test please",
      archived: false,
      pin_order: 0,
      labels: {},
      has_unread: false,
      children: [],
      files: [],
      version: 1,
      context: {
        aggregate_hash: null,
        dirty: false,
        dirty_since: null,
        dirty_resources: null,
        error: null,
      },
    });
    const { rows } = await t.pool.query(
      "SELECT role, visibility, content, created_by, api_key_id FROM chat_messages WHERE chat_id = $1",
      [res.json.id],
    );
    expect(rows).toEqual([
      {
        role: "user",
        visibility: "both",
        content: text("Fix the   flaky test\nplease"),
        created_by: u.id,
        api_key_id: u.token.split("-")[0],
      },
    ]);
  });

  it("stores the system prompt as a model-only system message before the user message", async () => {
    const u = await member();
    const res = await create(u.token, { system_prompt: "You are terse.", client_type: "ui" });
    expect(res.json.client_type).toBe("ui");
    const { rows } = await t.pool.query(
      "SELECT role, visibility, content FROM chat_messages WHERE chat_id = $1 ORDER BY id",
      [res.json.id],
    );
    expect(rows.map((r) => [r.role, r.visibility])).toEqual([
      ["system", "model"],
      ["user", "both"],
    ]);
    expect(rows[0].content).toEqual(text("You are terse."));
  });

  it("stores labels and dynamic tools, and validates them", async () => {
    const u = await member();
    const tool = { name: "read_file", description: "reads", input_schema: { type: "object" } };
    const ok = await create(u.token, {
      labels: { "github.repo": "acme/x" },
      unsafe_dynamic_tools: [tool],
    });
    expect(ok.status).toBe(201);
    expect(ok.json.labels).toEqual({ "github.repo": "acme/x" });
    const { rows } = await t.pool.query("SELECT dynamic_tools FROM chats WHERE id = $1", [
      ok.json.id,
    ]);
    expect(rows[0].dynamic_tools).toEqual([tool]);

    const tooMany = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, "v"]));
    const bad: Record<string, unknown>[] = [
      { labels: { "bad key": "v" } },
      { labels: { k: "" } },
      { labels: { k: "v".repeat(257) } },
      { labels: tooMany },
      { unsafe_dynamic_tools: [tool, tool] },
      { unsafe_dynamic_tools: [{ ...tool, name: "" }] },
      { unsafe_dynamic_tools: Array.from({ length: 251 }, (_, i) => ({ ...tool, name: `t${i}` })) },
      // 100 tools, but 300 KB of descriptions: over the 256 KiB a chat's tools may take.
      {
        unsafe_dynamic_tools: Array.from({ length: 100 }, (_, i) => ({
          ...tool,
          name: `t${i}`,
          description: "d".repeat(3_000),
        })),
      },
      { system_prompt: "x".repeat(10_001) },
      { content: [] },
      { content: [{ type: "image", url: "x" }] },
      { client_type: "cli" },
      { surprise: true },
    ];
    for (const body of bad) {
      const res = await create(u.token, body);
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expect(res.json.validations.length).toBeGreaterThan(0);
    }
    const { rows: count } = await t.pool.query(
      "SELECT count(*)::int AS n FROM chats WHERE owner_id = $1",
      [u.id],
    );
    expect(count[0].n).toBe(1);
  });

  it("accepts exactly 250 dynamic tools and a 10000-character system prompt", async () => {
    const u = await member();
    const tools = Array.from({ length: 250 }, (_, i) => ({
      name: `t${i}`,
      description: "",
      input_schema: {},
    }));
    const res = await create(u.token, {
      unsafe_dynamic_tools: tools,
      system_prompt: "x".repeat(10_000),
    });
    expect(res.status).toBe(201);
  });

  it("answers 403 for an organization the caller is not a member of", async () => {
    const u = await member();
    const other = await gen.organization(t.pool);
    expect((await create(u.token, { organization_id: other.id })).status).toBe(403);
    const loner = await gen.user(t.pool);
    const token = await gen.apiKey(t.pool, loner.id);
    expect((await create(token, {})).status).toBe(403);
  });

  it("binds a workspace to its latest build's first agent, and rejects one from another organization", async () => {
    const u = await member();
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: u.id });
    await gen.build(t.pool, ws.id, ["old"]);
    const latest = await gen.build(t.pool, ws.id, ["first", "second"]);
    const res = await create(u.token, { workspace_id: ws.id });
    expect(res.json).toMatchObject({
      workspace_id: ws.id,
      build_id: latest.id,
      agent_id: latest.agents[0]!.id,
    });

    const otherOrg = await gen.organization(t.pool);
    await gen.organizationMember(t.pool, otherOrg.id, u.id);
    const foreign = await gen.workspace(t.pool, { organizationId: otherOrg.id, ownerId: u.id });
    const rejected = await create(u.token, { workspace_id: foreign.id, organization_id: orgId });
    expect(rejected.status).toBe(400);
    expect(rejected.json.message).toMatch(/another organization/);
    const someoneElses = await gen.workspace(t.pool, {
      organizationId: orgId,
      ownerId: (await member()).id,
    });
    expect((await create(u.token, { workspace_id: someoneElses.id })).status).toBe(400);
  });

  it("answers 400 for an unknown or disabled model config", async () => {
    const u = await member();
    const unknown = await create(u.token, {
      model_config_id: "00000000-0000-4000-8000-000000000000",
    });
    expect(unknown.status).toBe(400);
    const disabled = await gen.modelConfig(t.pool, { enabled: false });
    expect((await create(u.token, { model_config_id: disabled.id })).status).toBe(400);
    const offProvider = await gen.modelConfig(t.pool, {
      providerId: (await gen.chatProvider(t.pool, { enabled: false })).id,
    });
    expect((await create(u.token, { model_config_id: offProvider.id })).status).toBe(400);
    const usable = await gen.modelConfig(t.pool);
    const res = await create(u.token, { model_config_id: usable.id });
    expect(res.json.last_model_config_id).toBe(usable.id);
  });

  it("creates a subagent chat that inherits client type, organization, workspace and model", async () => {
    const u = await member();
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: u.id });
    const b = await gen.build(t.pool, ws.id, ["main"]);
    const model = await gen.modelConfig(t.pool);
    const parent = await create(u.token, {
      client_type: "ui",
      workspace_id: ws.id,
      model_config_id: model.id,
    });
    const child = await create(u.token, { parent_chat_id: parent.json.id });
    expect(child.status).toBe(201);
    expect(child.json).toMatchObject({
      parent_chat_id: parent.json.id,
      root_chat_id: parent.json.id,
      client_type: "ui",
      organization_id: orgId,
      workspace_id: ws.id,
      agent_id: b.agents[0]!.id,
      last_model_config_id: model.id,
      children: [],
    });
    const root = await t.call("GET", `${base}/${parent.json.id}`, { token: u.token });
    expect(root.json.children.map((c: { id: string }) => c.id)).toEqual([child.json.id]);
  });

  it("refuses a parent that is archived or belongs to someone else (400)", async () => {
    const u = await member();
    const stranger = await member();
    const theirs = await create(stranger.token, {});
    expect((await create(u.token, { parent_chat_id: theirs.json.id })).status).toBe(400);
    const mine = await create(u.token, {});
    await t.call("PATCH", `${base}/${mine.json.id}`, { token: u.token, body: { archived: true } });
    const res = await create(u.token, { parent_chat_id: mine.json.id });
    expect(res.status).toBe(400);
    expect(res.json.message).toBe("Chat is archived.");
  });
});

describe("GET /chats/{chat}", () => {
  it("answers 404 for another user's chat and 400 for a non-UUID id", async () => {
    const owner = await member();
    const other = await member();
    const chat = await create(owner.token, {});
    expect((await t.call("GET", `${base}/${chat.json.id}`, { token: other.token })).status).toBe(
      404,
    );
    expect(
      (
        await t.call("PATCH", `${base}/${chat.json.id}`, {
          token: other.token,
          body: { title: "x" },
        })
      ).status,
    ).toBe(404);
    expect((await t.call("GET", `${base}/not-a-uuid`, { token: owner.token })).status).toBe(400);
  });

  it("shows no last_injected_context for a chat whose last turn carried none, also as stored by earlier versions", async () => {
    const u = await member();
    const chat = await gen.chat(t.pool, { ownerId: u.id, organizationId: orgId });
    const shown = async () =>
      (await t.call("GET", `${base}/${chat.id}`, { token: u.token })).json.last_injected_context;
    expect(await shown()).toBeNull();
    // Turns before null meant "nothing" stored an empty record.
    await t.pool.query(
      `UPDATE chats SET last_injected_context = '{"resources": [], "context_files": []}' WHERE id = $1`,
      [chat.id],
    );
    expect(await shown()).toBeNull();
    const carried = {
      resources: [],
      context_files: [{ path: "a.md", sha256: "x", bytes: 1, message_id: 1 }],
    };
    await t.pool.query("UPDATE chats SET last_injected_context = $2 WHERE id = $1", [
      chat.id,
      JSON.stringify(carried),
    ]);
    expect(await shown()).toEqual(carried);
  });

  it("shows an archived root's archived children and hides them from an unarchived root", async () => {
    const u = await member();
    const root = await create(u.token, {});
    const child = await create(u.token, { parent_chat_id: root.json.id });
    await t.call("PATCH", `${base}/${child.json.id}`, { token: u.token, body: { archived: true } });
    expect(
      (await t.call("GET", `${base}/${root.json.id}`, { token: u.token })).json.children,
    ).toEqual([]);
    await t.call("PATCH", `${base}/${root.json.id}`, { token: u.token, body: { archived: true } });
    const archived = await t.call("GET", `${base}/${root.json.id}`, { token: u.token });
    expect(archived.json.children.map((c: { id: string }) => c.id)).toEqual([child.json.id]);
  });
});

describe("PATCH /chats/{chat}", () => {
  const patch = (token: string, id: string, body: unknown) =>
    t.call("PATCH", `${base}/${id}`, { token, body });
  const get = async (token: string, id: string) =>
    (await t.call("GET", `${base}/${id}`, { token })).json;

  it("renames without moving updated_at, and bumps version", async () => {
    const u = await member();
    const chat = await create(u.token, {});
    const res = await patch(u.token, chat.json.id, { title: "Renamed" });
    expect(res.status).toBe(204);
    expect(res.text).toBe("");
    const after = await get(u.token, chat.json.id);
    expect(after).toMatchObject({ title: "Renamed", updated_at: chat.json.updated_at, version: 2 });
  });

  it("replaces labels with the given map, clears them with {}, and leaves them when absent", async () => {
    const u = await member();
    const chat = await create(u.token, { labels: { a: "1", b: "2" } });
    await patch(u.token, chat.json.id, { labels: { c: "3" } });
    expect((await get(u.token, chat.json.id)).labels).toEqual({ c: "3" });
    await patch(u.token, chat.json.id, { title: "t" });
    expect((await get(u.token, chat.json.id)).labels).toEqual({ c: "3" });
    await patch(u.token, chat.json.id, { labels: {} });
    expect((await get(u.token, chat.json.id)).labels).toEqual({});
    expect((await patch(u.token, chat.json.id, { labels: { "-bad": "x" } })).status).toBe(400);
  });

  it("pins, moves and unpins through pin_order; children cannot be pinned (400)", async () => {
    const u = await member();
    const a = (await create(u.token, {})).json.id;
    const b = (await create(u.token, {})).json.id;
    await patch(u.token, a, { pin_order: 5 });
    await patch(u.token, b, { pin_order: 1 });
    expect([(await get(u.token, a)).pin_order, (await get(u.token, b)).pin_order]).toEqual([1, 2]);
    await patch(u.token, b, { pin_order: 1 });
    expect([(await get(u.token, a)).pin_order, (await get(u.token, b)).pin_order]).toEqual([2, 1]);
    await patch(u.token, b, { pin_order: 0 });
    expect([(await get(u.token, a)).pin_order, (await get(u.token, b)).pin_order]).toEqual([1, 0]);
    const child = (await create(u.token, { parent_chat_id: a })).json.id;
    const res = await patch(u.token, child, { pin_order: 1 });
    expect(res.status).toBe(400);
    expect(res.json.message).toMatch(/root/);
    expect((await patch(u.token, a, { pin_order: -1 })).status).toBe(400);
  });

  it("archives and unarchives with the 400s of the archive rules", async () => {
    const u = await member();
    const root = (await create(u.token, {})).json.id;
    const child = (await create(u.token, { parent_chat_id: root })).json.id;
    await patch(u.token, root, { pin_order: 1 });
    expect((await patch(u.token, root, { archived: true })).status).toBe(204);
    expect(await get(u.token, child)).toMatchObject({ archived: true });
    expect(await get(u.token, root)).toMatchObject({ archived: true, pin_order: 0 });
    const again = await patch(u.token, root, { archived: true });
    expect(again).toMatchObject({ status: 400, json: { message: "Chat is already archived." } });
    expect((await patch(u.token, child, { archived: false })).status).toBe(400);
    expect((await patch(u.token, root, { pin_order: 1 })).status).toBe(400);
    expect((await patch(u.token, root, { archived: false })).status).toBe(204);
    expect(await get(u.token, child)).toMatchObject({ archived: false });
    const notArchived = await patch(u.token, root, { archived: false });
    expect(notArchived).toMatchObject({ status: 400, json: { message: "Chat is not archived." } });
  });

  it("applies a PATCH all or nothing: a failing pin undoes the title in the same request", async () => {
    const u = await member();
    const root = (await create(u.token, {})).json.id;
    const child = (await create(u.token, { parent_chat_id: root })).json.id;
    const res = await patch(u.token, child, { title: "new", pin_order: 1 });
    expect(res.status).toBe(400);
    expect((await get(u.token, child)).title).toBe("hi");
    // Unarchive then pin in one request works: archive state changes before the pin.
    await patch(u.token, root, { archived: true });
    expect((await patch(u.token, root, { archived: false, pin_order: 1 })).status).toBe(204);
    expect((await get(u.token, root)).pin_order).toBe(1);
  });

  it("binds and unbinds a workspace, moving updated_at; plan_mode does not move it", async () => {
    const u = await member();
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: u.id });
    const b = await gen.build(t.pool, ws.id, ["main"]);
    const chat = (await create(u.token, {})).json;
    await t.pool.query("UPDATE chats SET updated_at = '2020-01-01Z' WHERE id = $1", [chat.id]);
    await patch(u.token, chat.id, { plan_mode: "plan" });
    const planned = await get(u.token, chat.id);
    expect(planned).toMatchObject({ plan_mode: "plan", updated_at: "2020-01-01T00:00:00.000000Z" });
    await patch(u.token, chat.id, { workspace_id: ws.id });
    const bound = await get(u.token, chat.id);
    expect(bound).toMatchObject({ workspace_id: ws.id, build_id: b.id, agent_id: b.agents[0]!.id });
    expect(bound.updated_at).not.toBe(planned.updated_at);
    await patch(u.token, chat.id, { workspace_id: null, plan_mode: null });
    expect(await get(u.token, chat.id)).toMatchObject({
      workspace_id: null,
      build_id: null,
      agent_id: null,
      plan_mode: null,
    });
    expect((await patch(u.token, chat.id, { plan_mode: "yolo" })).status).toBe(400);
    const foreign = await gen.workspace(t.pool, {
      organizationId: orgId,
      ownerId: (await member()).id,
    });
    expect((await patch(u.token, chat.id, { workspace_id: foreign.id })).status).toBe(400);
  });

  it("rejects unknown fields and wrong types with 400", async () => {
    const u = await member();
    const chat = (await create(u.token, {})).json.id;
    for (const body of [
      { titel: "x" },
      { archived: "yes" },
      { pin_order: 1.5 },
      { title: "x".repeat(257) },
    ]) {
      expect((await patch(u.token, chat, body)).status).toBe(400);
    }
  });
});

describe("GET /api/experimental/chats/by-workspace", () => {
  async function workspace(owner: Member) {
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId: owner.id });
    await gen.build(t.pool, ws.id, ["main"]);
    return ws;
  }

  async function chatIn(owner: Member, workspaceId: string, updatedAt: string) {
    const c = await gen.chat(t.pool, {
      ownerId: owner.id,
      organizationId: orgId,
      workspace_id: workspaceId,
    });
    await t.pool.query("UPDATE chats SET updated_at = $2::timestamptz WHERE id = $1", [
      c.id,
      updatedAt,
    ]);
    return c;
  }

  function byWorkspace(who: Member, ids?: string[]) {
    const qs = ids === undefined ? "" : `?${new URLSearchParams({ workspace_ids: ids.join(",") })}`;
    return t.call("GET", `/api/experimental/chats/by-workspace${qs}`, { token: who.token });
  }

  it("maps each workspace to the caller's latest-updated unarchived root chat in it", async () => {
    const me = await member();
    const w1 = await workspace(me);
    const w2 = await workspace(me);
    const empty = await workspace(me);
    await chatIn(me, w1.id, "2024-01-01T00:00:00Z");
    const latest = await chatIn(me, w1.id, "2024-01-03T00:00:00Z");
    await chatIn(me, w1.id, "2024-01-02T00:00:00Z");
    const only = await chatIn(me, w2.id, "2020-01-01T00:00:00Z");

    const res = await byWorkspace(me, [w1.id, w2.id, empty.id]);
    expect(res.status, res.text).toBe(200);
    expect(res.json).toEqual({ [w1.id]: latest.id, [w2.id]: only.id });
  });

  it("skips archived chats and child chats, however recently updated", async () => {
    const me = await member();
    const ws = await workspace(me);
    const root = await chatIn(me, ws.id, "2024-01-01T00:00:00Z");
    const child = await gen.chat(t.pool, { ownerId: me.id, parent_chat_id: root.id });
    expect(child.workspace_id).toBe(ws.id); // a child inherits the workspace binding
    await t.pool.query("UPDATE chats SET updated_at = '2030-01-01' WHERE id = $1", [child.id]);
    const archived = await chatIn(me, ws.id, "2024-06-01T00:00:00Z");
    await t.pool.query("SELECT chat_archive($1, true)", [archived.id]);
    await t.pool.query("UPDATE chats SET updated_at = '2031-01-01' WHERE id = $1", [archived.id]);

    const res = await byWorkspace(me, [ws.id]);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ [ws.id]: root.id });

    // With the only root archived, the workspace has no entry.
    await t.pool.query("SELECT chat_archive($1, true)", [root.id]);
    expect((await byWorkspace(me, [ws.id])).json).toEqual({});
  });

  it("never returns another user's chat", async () => {
    const me = await member();
    const them = await member();
    const mine = await workspace(me);
    const theirs = await workspace(them);
    const myChat = await chatIn(me, mine.id, "2024-01-01T00:00:00Z");
    const theirChat = await chatIn(them, theirs.id, "2024-01-01T00:00:00Z");
    // Even a newer chat of theirs that points at my workspace (written directly, bypassing the
    // binding rules) is not mine.
    const intruder = await chatIn(them, theirs.id, "2030-01-01T00:00:00Z");
    await t.pool.query(
      "UPDATE chats SET workspace_id = $2, updated_at = '2030-01-01' WHERE id = $1",
      [intruder.id, mine.id],
    );

    expect((await byWorkspace(me, [mine.id, theirs.id])).json).toEqual({ [mine.id]: myChat.id });
    expect((await byWorkspace(them, [theirs.id])).json).toEqual({ [theirs.id]: theirChat.id });
    expect((await byWorkspace(them, [mine.id])).json).toEqual({ [mine.id]: intruder.id });
  });

  it("accepts up to 25 workspace ids and rejects 26 (400)", async () => {
    const me = await member();
    const ws = await workspace(me);
    const c = await chatIn(me, ws.id, "2024-01-01T00:00:00Z");
    const fillers = Array.from(
      { length: 24 },
      (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    );

    const ok = await byWorkspace(me, [ws.id, ...fillers]);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json).toEqual({ [ws.id]: c.id });

    const tooMany = await byWorkspace(me, [
      ws.id,
      ...fillers,
      "00000000-0000-4000-8000-999999999999",
    ]);
    expect(tooMany.status).toBe(400);
    expect(tooMany.json.message).toEqual(expect.any(String));
  });

  it("rejects an id that is not a uuid (400)", async () => {
    const me = await member();
    const ws = await workspace(me);
    for (const ids of [["nope"], [ws.id, "nope"], [`${ws.id}x`]]) {
      const res = await byWorkspace(me, ids);
      expect(res.status, ids.join(",")).toBe(400);
    }
  });

  it("answers {} without workspace_ids", async () => {
    const me = await member();
    const ws = await workspace(me);
    await chatIn(me, ws.id, "2024-01-01T00:00:00Z");
    const res = await byWorkspace(me);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({});
    const blank = await byWorkspace(me, []);
    expect(blank.status).toBe(200);
    expect(blank.json).toEqual({});
  });
});
