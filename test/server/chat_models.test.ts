import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";

/*
 * GET /api/experimental/chats/models and GET /by-workspace (API.md "Chat routes").
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

interface Member {
  id: string;
  token: string;
}

interface ListedModel {
  id: string;
  model: string;
  is_default: boolean;
}

interface ListedProvider {
  id: string;
  provider: string;
  models: ListedModel[];
}

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

async function newMember(): Promise<Member> {
  const u = await gen.user(t.pool, { organizationIds: [orgId] });
  return { id: u.id, token: await gen.apiKey(t.pool, u.id) };
}

async function models(who: Member): Promise<ListedProvider[]> {
  const res = await t.call("GET", "/api/experimental/chats/models", { token: who.token });
  expect(res.status, res.text).toBe(200);
  return res.json.providers as ListedProvider[];
}

const allModelIds = (providers: ListedProvider[]) =>
  providers.flatMap((p) => p.models.map((m) => m.id));

describe("GET /api/experimental/chats/models", () => {
  it("lists the seeded local echo model as the default", async () => {
    const me = await newMember();
    const providers = await models(me);
    const local = providers.filter((p) => p.provider === "local");
    expect(local).toHaveLength(1);
    const echo = local[0]!.models.find((m) => m.model === "echo");
    expect(echo).toMatchObject({ model: "echo", is_default: true });
    // One default at a time.
    expect(providers.flatMap((p) => p.models).filter((m) => m.is_default)).toEqual([echo]);
  });

  it("leaves out disabled and deleted model configs and every model of a disabled provider", async () => {
    const me = await newMember();
    const provider = await gen.chatProvider(t.pool);
    const enabled = await gen.modelConfig(t.pool, { providerId: provider.id });
    const disabled = await gen.modelConfig(t.pool, { providerId: provider.id, enabled: false });
    const deleted = await gen.modelConfig(t.pool, { providerId: provider.id });
    await t.pool.query("UPDATE chat_model_configs SET deleted = true WHERE id = $1", [deleted.id]);
    const offProvider = await gen.chatProvider(t.pool, { enabled: false });
    const onOffProvider = await gen.modelConfig(t.pool, { providerId: offProvider.id });

    const providers = await models(me);
    const ids = allModelIds(providers);
    expect(ids).toContain(enabled.id);
    expect(ids).not.toContain(disabled.id);
    expect(ids).not.toContain(deleted.id);
    expect(ids).not.toContain(onOffProvider.id);
    expect(providers.map((p) => p.id)).not.toContain(offProvider.id);
  });

  it("groups models per provider, each provider once with all its enabled models", async () => {
    const me = await newMember();
    const p1 = await gen.chatProvider(t.pool, { provider: "openai" });
    const p2 = await gen.chatProvider(t.pool, { provider: "anthropic" });
    const a = await gen.modelConfig(t.pool, { providerId: p1.id, model: "gpt-a" });
    const b = await gen.modelConfig(t.pool, { providerId: p1.id, model: "gpt-b" });
    const c = await gen.modelConfig(t.pool, { providerId: p2.id, model: "claude-c" });

    const providers = await models(me);
    const ids = providers.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const g1 = providers.find((p) => p.id === p1.id);
    const g2 = providers.find((p) => p.id === p2.id);
    expect(g1?.provider).toBe("openai");
    expect(g1?.models.map((m) => m.id).sort()).toEqual([a.id, b.id].sort());
    expect(g2?.provider).toBe("anthropic");
    expect(g2?.models.map((m) => m.id)).toEqual([c.id]);
    // Each model id is listed exactly once overall.
    const all = allModelIds(providers);
    expect(new Set(all).size).toBe(all.length);
  });

  it("requires authentication", async () => {
    expect((await t.call("GET", "/api/experimental/chats/models")).status).toBe(401);
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
    const me = await newMember();
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
    const me = await newMember();
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
    const me = await newMember();
    const them = await newMember();
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
    const me = await newMember();
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
    const me = await newMember();
    const ws = await workspace(me);
    for (const ids of [["nope"], [ws.id, "nope"], [`${ws.id}x`]]) {
      const res = await byWorkspace(me, ids);
      expect(res.status, ids.join(",")).toBe(400);
    }
  });

  it("answers {} without workspace_ids", async () => {
    const me = await newMember();
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
