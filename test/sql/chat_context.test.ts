import { createHash } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import type { Pool, PoolClient } from "../../src/db/index.ts";
import {
  addChatContextFiles,
  clearChatContextFiles,
  prepareChatRunContextByID,
  pushWorkspaceAgentContext,
  repinChatContextByID,
} from "../../src/generated/chat_context.ts";
import {
  archiveChat,
  bindChatWorkspace,
  pinChat,
  unarchiveChat,
} from "../../src/generated/chats.ts";
import { patchChat } from "../../src/server/chat_patch.ts";
import { gen } from "../fixtures/index.ts";
import { newPool, testDb } from "../setup/db.ts";
import { listen } from "../setup/listen.ts";
import { blocked, lockedChats, outcome, session } from "../setup/sessions.ts";
import { sqlError } from "../setup/sql.ts";

/*
 * Workspace context pinning where it lives: sql/functions/chat_context.sql and the trigger on
 * workspace_agent_contexts, called directly, with real concurrent connections for the race
 * between pushes, chats binding and re-pinning. test/server/chat_context.test.ts checks the
 * routes.
 */

let pool: Pool;
let dbUrl: string;
let orgId: string;

beforeAll(async () => {
  const db = await testDb();
  pool = db.pool;
  dbUrl = db.url;
  orgId = (await gen.organization(pool)).id;
});

interface Resource {
  source: string;
  kind: "instruction_file" | "skill" | "mcp_config";
  body: string;
  status?: string;
  error?: string | null;
}

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");
/** The documented hashes: per resource over kind, source, status and body; the aggregate over the sorted resource hashes. */
const resourceHash = (r: Resource) =>
  sha256(`${r.kind}\n${r.source}\n${r.status ?? "ok"}\n${r.body}`);
const aggregateHash = (rs: Resource[]) => sha256(rs.map(resourceHash).sort().join(","));

const agentsMd = (v: string): Resource => ({
  source: "AGENTS.md",
  kind: "instruction_file",
  body: `rules ${v}`,
});
const skill = (name: string, v = "1"): Resource => ({
  source: `skills/${name}/SKILL.md`,
  kind: "skill",
  body: `skill ${name} ${v}`,
});

/** A user with a workspace whose latest build has one agent. */
async function setup() {
  const u = await gen.user(pool, { organizationIds: [orgId] });
  const ws = await gen.workspace(pool, { organizationId: orgId, ownerId: u.id });
  const build = await gen.build(pool, ws.id);
  return { ownerId: u.id, workspaceId: ws.id, agentId: build.agents[0]!.id };
}

function push(
  agentId: string,
  resources: Resource[],
  error: string | null = null,
  db: Pool = pool,
) {
  return pushWorkspaceAgentContext(db, { agent_id: agentId, resources, error }).then((r) => r!);
}

async function chatIn(s: { ownerId: string; workspaceId: string }, db: Pool = pool) {
  return gen.chat(db, { ownerId: s.ownerId, organizationId: orgId, workspace_id: s.workspaceId });
}

interface ContextState {
  context_aggregate_hash: string | null;
  context_dirty_since: string | null;
  context_dirty_resources: unknown;
  context_error: string | null;
}

async function contextOf(chatId: string): Promise<ContextState> {
  const { rows } = await pool.query<ContextState>(
    `SELECT context_aggregate_hash, context_dirty_since, context_dirty_resources, context_error
     FROM chats WHERE id = $1`,
    [chatId],
  );
  return rows[0]!;
}

async function pinnedSources(chatId: string) {
  const { rows } = await pool.query<{ source: string; body: string }>(
    "SELECT source, body FROM chat_context_resources WHERE chat_id = $1 ORDER BY source",
    [chatId],
  );
  return rows;
}

/**
 * The audit entries of the context and archive rules. Not the attribution entries every chat
 * and message gets (chat_create, message_send, ...): test/sql/audit_logs.test.ts covers those.
 */
async function auditOf(where: { chatId?: string; agentId?: string }) {
  const { rows } = await pool.query<{
    action: string;
    actor_user_id: string | null;
    actor_agent_id: string | null;
    chat_id: string | null;
    api_key_id: string | null;
  }>(
    `SELECT action, actor_user_id, actor_agent_id, chat_id, api_key_id FROM audit_logs
     WHERE ($1::uuid IS NULL OR chat_id = $1) AND ($2::uuid IS NULL OR agent_id = $2)
       AND action NOT IN ('chat_create', 'message_send', 'message_queue', 'tool_results')
     ORDER BY id`,
    [where.chatId ?? null, where.agentId ?? null],
  );
  return rows;
}

describe("pushing context", () => {
  it("stores the snapshot and answers the aggregate hash over the sorted content hashes", async () => {
    const s = await setup();
    const resources = [agentsMd("1"), skill("b"), skill("a")];
    const r = await push(s.agentId, resources, "could not read .cursor/rules");
    expect(r).toEqual({ aggregate_hash: aggregateHash(resources), marked_dirty: 0 });
    const { rows } = await pool.query(
      "SELECT aggregate_hash, version, error FROM workspace_agent_contexts WHERE agent_id = $1",
      [s.agentId],
    );
    expect(rows[0]).toEqual({
      aggregate_hash: r.aggregate_hash,
      version: 1,
      error: "could not read .cursor/rules",
    });
    const stored = await pool.query(
      "SELECT source, content_hash, size, status FROM workspace_agent_context_resources WHERE agent_id = $1 ORDER BY source",
      [s.agentId],
    );
    expect(stored.rows).toEqual(
      [...resources]
        .sort((a, b) => a.source.localeCompare(b.source))
        .map((x) => ({
          source: x.source,
          content_hash: resourceHash(x),
          size: Buffer.byteLength(x.body),
          status: "ok",
        })),
    );
    // Order does not matter; a renamed or re-statused resource does.
    expect((await push(s.agentId, [...resources].reverse())).aggregate_hash).toBe(r.aggregate_hash);
    const renamed = [{ ...agentsMd("1"), source: "CLAUDE.md" }, skill("b"), skill("a")];
    expect((await push(s.agentId, renamed)).aggregate_hash).not.toBe(r.aggregate_hash);
  });

  it("marks dirty exactly the bound, unarchived chats that pinned other content, with the changed sources; one already dirty keeps when it became dirty", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1"), skill("old")]);
    const pinned = await chatIn(s);
    const archived = await chatIn(s);
    await pool.query("SELECT chat_archive($1, true)", [archived.id]);
    const alreadyDirty = await chatIn(s);
    await pool.query(
      "UPDATE chats SET context_dirty_since = now() - interval '1 hour' WHERE id = $1",
      [alreadyDirty.id],
    );
    const before = await contextOf(alreadyDirty.id);
    const other = await setup();
    await push(other.agentId, [agentsMd("1")]);
    const elsewhere = await chatIn(other);
    expect((await contextOf(pinned.id)).context_aggregate_hash).toBe(
      aggregateHash([agentsMd("1"), skill("old")]),
    );

    const r = await push(s.agentId, [agentsMd("2"), skill("new")]);
    expect(r.marked_dirty).toBe(2);
    const dirty = await contextOf(pinned.id);
    expect(dirty.context_dirty_since).not.toBeNull();
    expect(dirty.context_dirty_resources).toEqual([
      { source: "AGENTS.md", change: "modified" },
      { source: "skills/new/SKILL.md", change: "added" },
      { source: "skills/old/SKILL.md", change: "removed" },
    ]);
    // The pinned copy is what the chat keeps using until it re-pins.
    expect((await pinnedSources(pinned.id)).map((p) => p.body)).toEqual(["rules 1", "skill old 1"]);
    expect((await contextOf(archived.id)).context_dirty_since).toBeNull();
    expect(await contextOf(alreadyDirty.id)).toMatchObject({
      context_dirty_since: before.context_dirty_since,
      context_dirty_resources: dirty.context_dirty_resources,
    });
    expect((await contextOf(elsewhere.id)).context_dirty_since).toBeNull();
    const { rows } = await pool.query(
      "SELECT kind FROM chat_events WHERE chat_id = $1 AND kind = 'context_dirty'",
      [pinned.id],
    );
    expect(rows).toHaveLength(1);
  });

  it("recomputes a dirty chat's changed sources at every push, keeping when it became dirty", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1"), skill("a")]);
    const chat = await chatIn(s);
    expect((await push(s.agentId, [agentsMd("2"), skill("a")])).marked_dirty).toBe(1);
    const first = await contextOf(chat.id);
    expect(first.context_dirty_resources).toEqual([{ source: "AGENTS.md", change: "modified" }]);
    expect((await push(s.agentId, [agentsMd("2"), skill("a", "2"), skill("b")])).marked_dirty).toBe(
      1,
    );
    expect(await contextOf(chat.id)).toMatchObject({
      context_dirty_since: first.context_dirty_since,
      context_dirty_resources: [
        { source: "AGENTS.md", change: "modified" },
        { source: "skills/a/SKILL.md", change: "modified" },
        { source: "skills/b/SKILL.md", change: "added" },
      ],
    });
    // Back to the pinned AGENTS.md: only the skills differ now.
    await push(s.agentId, [agentsMd("1"), skill("a", "2")]);
    expect((await contextOf(chat.id)).context_dirty_resources).toEqual([
      { source: "skills/a/SKILL.md", change: "modified" },
    ]);
  });

  it("marks a dirty chat clean again when a push restores the content it pinned", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    await push(s.agentId, [agentsMd("2")]);
    expect((await contextOf(chat.id)).context_dirty_since).not.toBeNull();
    const { rows: mark } = await pool.query("SELECT COALESCE(max(id), 0) AS id FROM chat_events");
    const restored = await push(s.agentId, [agentsMd("1")]);
    expect(restored.marked_dirty).toBe(0);
    expect(await contextOf(chat.id)).toMatchObject({
      context_aggregate_hash: aggregateHash([agentsMd("1")]),
      context_dirty_since: null,
      context_dirty_resources: null,
    });
    const { rows } = await pool.query(
      "SELECT action FROM audit_logs WHERE chat_id = $1 AND action LIKE 'context_%' ORDER BY id",
      [chat.id],
    );
    expect(rows.map((r) => r.action)).toEqual([
      "context_hydrate",
      "context_dirty",
      "context_clean",
    ]);
    // Watchers see it: the restoring push logged one `updated` for the chat.
    const { rows: events } = await pool.query(
      "SELECT kind FROM chat_events WHERE chat_id = $1 AND id > $2 ORDER BY xid, id",
      [chat.id, mark[0].id],
    );
    expect(events.map((e) => e.kind)).toEqual(["updated"]);
  });

  it("marks nothing for identical content pushed again, and keeps the version", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    const again = await push(s.agentId, [agentsMd("1")], "now with an error");
    expect(again.marked_dirty).toBe(0);
    expect((await contextOf(chat.id)).context_dirty_since).toBeNull();
    const { rows } = await pool.query(
      "SELECT version, error FROM workspace_agent_contexts WHERE agent_id = $1",
      [s.agentId],
    );
    expect(rows[0]).toEqual({ version: 1, error: "now with an error" });
  });

  it("marks nothing and sends nothing when the push rolls back, and its events reach listeners only with the commit", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    const listener = await listen(dbUrl, "chat_events");
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await pushWorkspaceAgentContext(client, {
        agent_id: s.agentId,
        resources: [agentsMd("rolled back")],
        error: null,
      });
      await client.query("ROLLBACK");
      expect((await contextOf(chat.id)).context_dirty_since).toBeNull();

      await client.query("BEGIN");
      const r = await pushWorkspaceAgentContext(client, {
        agent_id: s.agentId,
        resources: [agentsMd("2")],
        error: null,
      });
      expect(r!.marked_dirty).toBe(1);
      // The trigger-mode NOTIFY carries the transaction id.
      const xid = (await client.query("SELECT pg_current_xact_id()::text AS xid")).rows[0]
        .xid as string;
      // Not committed: others see no marking and no event, and no notification went out.
      expect((await contextOf(chat.id)).context_dirty_since).toBeNull();
      const invisible = await pool.query(
        "SELECT 1 FROM chat_events WHERE chat_id = $1 AND kind = 'context_dirty'",
        [chat.id],
      );
      expect(invisible.rows).toHaveLength(0);
      await pool.query("SELECT pg_notify('chat_events', 'marker')");
      await listener.next((n) => n.payload === "marker");
      expect(listener.received.some((n) => n.payload === xid)).toBe(false);
      await client.query("COMMIT");
      await listener.next((n) => n.payload === xid);
    } finally {
      client.release();
      await listener.close();
    }
    expect((await contextOf(chat.id)).context_dirty_since).not.toBeNull();
    const { rows } = await pool.query(
      "SELECT 1 FROM chat_events WHERE chat_id = $1 AND kind = 'context_dirty'",
      [chat.id],
    );
    expect(rows).toHaveLength(1);
  });

  it("writes an audit entry for the push and for every chat it marked", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const a = await chatIn(s);
    const b = await chatIn(s);
    await push(s.agentId, [agentsMd("2")]);
    const entries = await auditOf({ agentId: s.agentId });
    expect(entries.filter((e) => e.action === "context_push")).toHaveLength(2);
    const dirty = entries.filter((e) => e.action === "context_dirty");
    expect(dirty.map((e) => e.chat_id).sort()).toEqual([a.id, b.id].sort());
    expect(dirty.every((e) => e.actor_agent_id === s.agentId)).toBe(true);
  });
});

describe("pinning and hydration", () => {
  it("gives a chat created in a workspace the agent's current context, and records an error when the agent never pushed", async () => {
    const s = await setup();
    const early = await chatIn(s);
    expect(await contextOf(early.id)).toMatchObject({
      context_aggregate_hash: null,
      context_error: "The workspace agent has not pushed its context yet.",
    });
    await push(s.agentId, [agentsMd("1"), skill("x")], "partial: skills/y unreadable");
    const chat = await chatIn(s);
    expect(await contextOf(chat.id)).toMatchObject({
      context_aggregate_hash: aggregateHash([agentsMd("1"), skill("x")]),
      context_dirty_since: null,
      context_error: "partial: skills/y unreadable",
    });
    expect((await pinnedSources(chat.id)).map((p) => p.source)).toEqual([
      "AGENTS.md",
      "skills/x/SKILL.md",
    ]);
    expect((await auditOf({ chatId: chat.id })).map((e) => [e.action, e.actor_user_id])).toEqual([
      ["context_hydrate", s.ownerId],
    ]);
  });

  it("hydrates a chat bound to a workspace later, and keeps the pinned copy when it is unbound", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await gen.chat(pool, { ownerId: s.ownerId, organizationId: orgId });
    const patch = (workspace: string | null) =>
      bindChatWorkspace(pool, { id: chat.id, owner_id: s.ownerId, workspace_id: workspace });
    await patch(s.workspaceId);
    expect((await contextOf(chat.id)).context_aggregate_hash).toBe(aggregateHash([agentsMd("1")]));
    await patch(null);
    expect((await pinnedSources(chat.id)).map((p) => p.body)).toEqual(["rules 1"]);
  });

  it("re-pins the current snapshot on request, clearing dirty; PC400 without an agent, PC404 for another owner", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    await push(s.agentId, [agentsMd("2")]);
    expect((await contextOf(chat.id)).context_dirty_since).not.toBeNull();
    await repinChatContextByID(pool, { chat_id: chat.id, owner_id: s.ownerId });
    expect(await contextOf(chat.id)).toMatchObject({
      context_aggregate_hash: aggregateHash([agentsMd("2")]),
      context_dirty_since: null,
      context_dirty_resources: null,
    });
    expect((await pinnedSources(chat.id)).map((p) => p.body)).toEqual(["rules 2"]);
    const unbound = await gen.chat(pool, { ownerId: s.ownerId, organizationId: orgId });
    expect(
      (
        await sqlError(() =>
          repinChatContextByID(pool, { chat_id: unbound.id, owner_id: s.ownerId }),
        )
      ).code,
    ).toBe("PC400");
    const stranger = await gen.user(pool, { organizationIds: [orgId] });
    expect(
      (
        await sqlError(() =>
          repinChatContextByID(pool, { chat_id: chat.id, owner_id: stranger.id }),
        )
      ).code,
    ).toBe("PC404");
    expect((await auditOf({ chatId: chat.id })).map((e) => e.action)).toEqual([
      "context_hydrate",
      "context_dirty",
      "context_pin",
    ]);
  });

  it("re-binds a chat to a newer build's agent before its next turn and pins that agent's context", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("old agent")]);
    const chat = await chatIn(s);
    const next = await gen.build(pool, s.workspaceId);
    await push(next.agents[0]!.id, [agentsMd("new agent")]);
    await prepareChatRunContextByID(pool, { chat_id: chat.id });
    const { rows } = await pool.query("SELECT build_id, agent_id FROM chats WHERE id = $1", [
      chat.id,
    ]);
    expect(rows[0]).toEqual({ build_id: next.id, agent_id: next.agents[0]!.id });
    expect((await pinnedSources(chat.id)).map((p) => p.body)).toEqual(["rules new agent"]);
    // Already bound and pinned: nothing to do.
    await prepareChatRunContextByID(pool, { chat_id: chat.id });
    expect((await auditOf({ chatId: chat.id })).map((e) => e.action)).toEqual([
      "context_hydrate",
      "context_hydrate",
    ]);
  });

  it("audits archive and unarchive of every chat of a family with the key that asked", async () => {
    const s = await setup();
    const root = await chatIn(s);
    const child = await gen.chat(pool, { ownerId: s.ownerId, parent_chat_id: root.id });
    const patch = (archived: boolean, key: string) =>
      (archived ? archiveChat : unarchiveChat)(pool, {
        id: root.id,
        owner_id: s.ownerId,
        api_key_id: key,
      });
    await patch(true, "archiver01");
    await patch(false, "unarchiv02");
    for (const id of [root.id, child.id]) {
      const actions = (await auditOf({ chatId: id })).filter((e) => e.action.endsWith("archive"));
      expect(actions.map((e) => [e.action, e.actor_user_id, e.api_key_id])).toEqual([
        ["chat_archive", s.ownerId, "archiver01"],
        ["chat_unarchive", s.ownerId, "unarchiv02"],
      ]);
    }
  });
});

describe("a push and a pin at the same moment", () => {
  it("a push during a re-pin waits for it, then marks the chat it pinned", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    await push(s.agentId, [agentsMd("2")]);
    const pinning = await session(pool);
    const pushing = await session(pool);
    try {
      await pinning.client.query("BEGIN");
      await repinChatContextByID(pinning.client, { chat_id: chat.id, owner_id: s.ownerId });
      const pushed = pushWorkspaceAgentContext(pushing.client, {
        agent_id: s.agentId,
        resources: [agentsMd("3")],
        error: null,
      });
      await blocked(pool, pushing.pid);
      await pinning.client.query("COMMIT");
      expect((await pushed)!.marked_dirty).toBe(1);
    } finally {
      pinning.release();
      pushing.release();
    }
    expect(await contextOf(chat.id)).toMatchObject({
      context_aggregate_hash: aggregateHash([agentsMd("2")]),
      context_dirty_resources: [{ source: "AGENTS.md", change: "modified" }],
    });
    expect((await contextOf(chat.id)).context_dirty_since).not.toBeNull();
  });

  it("a chat created or re-pinned during a push waits for it, then pins the pushed content", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const existing = await chatIn(s);
    await push(s.agentId, [agentsMd("2")]);
    const pushing = await session(pool);
    const creating = await session(pool);
    const repinning = await session(pool);
    let created: { id: string } | undefined;
    try {
      await pushing.client.query("BEGIN");
      await pushWorkspaceAgentContext(pushing.client, {
        agent_id: s.agentId,
        resources: [agentsMd("3")],
        error: null,
      });
      const creation = chatIn(s, creating.client as unknown as Pool).then((c) => {
        created = c;
      });
      const repin = repinChatContextByID(repinning.client, {
        chat_id: existing.id,
        owner_id: s.ownerId,
      });
      await blocked(pool, creating.pid);
      await blocked(pool, repinning.pid);
      await pushing.client.query("COMMIT");
      await Promise.all([creation, repin]);
    } finally {
      pushing.release();
      creating.release();
      repinning.release();
    }
    for (const id of [created!.id, existing.id]) {
      expect(await contextOf(id), id).toMatchObject({
        context_aggregate_hash: aggregateHash([agentsMd("3")]),
        context_dirty_since: null,
      });
    }
  });
});

describe("a push and the chats of its agent changing at the same moment", () => {
  it("a subagent created while a push holds the snapshot waits for it, without a deadlock, and pins the pushed content", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const parent = await chatIn(s);
    const pushing = await session(pool);
    const creating = await session(pool);
    let child: { ok: boolean } | undefined;
    try {
      // The push's first step alone: the snapshot row, as the push function locks it.
      await pushing.client.query("BEGIN");
      await pushing.client.query(
        "SELECT 1 FROM workspace_agent_contexts WHERE agent_id = $1 FOR UPDATE",
        [s.agentId],
      );
      const creation = outcome(
        gen.chat(creating.client, { ownerId: s.ownerId, parent_chat_id: parent.id }),
      );
      await blocked(pool, creating.pid);
      // The rest of the push: its trigger updates the bound chats, the parent among them.
      const pushed = await outcome(
        pushWorkspaceAgentContext(pushing.client, {
          agent_id: s.agentId,
          resources: [agentsMd("2")],
          error: null,
        }),
      );
      expect(pushed).toMatchObject({ ok: true });
      await pushing.client.query("COMMIT");
      child = await creation;
      expect(child).toMatchObject({ ok: true });
    } finally {
      pushing.release();
      creating.release();
    }
    const { rows } = await pool.query("SELECT id FROM chats WHERE parent_chat_id = $1", [
      parent.id,
    ]);
    expect(await contextOf(rows[0].id)).toMatchObject({
      context_aggregate_hash: aggregateHash([agentsMd("2")]),
      context_dirty_since: null,
    });
    expect((await contextOf(parent.id)).context_dirty_since).not.toBeNull();
  });

  it("a push waiting for the lowest of its agent's chats holds none of the others", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    // The first chat created must not have the lowest id: a push locking in another order (the
    // index's, which follows creation) would then hold it while waiting for the lowest.
    const created: string[] = [];
    while (created.length < 4 || created[0] === [...created].sort()[0])
      created.push((await chatIn(s)).id);
    const ids = [...created].sort();
    const holder = await session(pool);
    const pushing = await session(pool);
    try {
      await holder.client.query("BEGIN");
      await holder.client.query("SELECT 1 FROM chats WHERE id = $1 FOR NO KEY UPDATE", [ids[0]]);
      const pushed = outcome(
        pushWorkspaceAgentContext(pushing.client, {
          agent_id: s.agentId,
          resources: [agentsMd("2")],
          error: null,
        }),
      );
      await blocked(pool, pushing.pid);
      expect(await lockedChats(pool, ids.slice(1))).toEqual([]);
      await holder.client.query("COMMIT");
      expect(await pushed).toMatchObject({ ok: true, value: { marked_dirty: ids.length } });
    } finally {
      holder.release();
      pushing.release();
    }
  });

  it("pushes racing with archives, unarchives, pins and subagent creation in the agent's families never deadlock", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("0")]);
    const roots: string[] = [];
    for (let i = 0; i < 3; i++) {
      const root = await chatIn(s);
      roots.push(root.id);
      for (let j = 0; j < 3; j++)
        await gen.chat(pool, { ownerId: s.ownerId, parent_chat_id: root.id });
    }
    const racers = Array.from({ length: 5 }, () => newPool(dbUrl, 1));
    const errors: string[] = [];
    const expected = new Set(["PC400"]);
    const note = (r: { ok: boolean; code?: string; message?: string }) => {
      if (!r.ok && !expected.has(r.code!)) errors.push(`${r.code} ${r.message}`);
    };
    const rounds = 20;
    await Promise.all([
      ...[0, 1].map(async (w) => {
        for (let i = 0; i < rounds; i++)
          note(await outcome(push(s.agentId, [agentsMd(`${w}.${i}`)], null, racers[w]!)));
      }),
      (async () => {
        for (let i = 0; i < rounds; i++) {
          const root = roots[i % roots.length]!;
          const archived = (await pool.query("SELECT archived FROM chats WHERE id = $1", [root]))
            .rows[0].archived;
          note(await outcome(racers[2]!.query("SELECT chat_archive($1, $2)", [root, !archived])));
        }
      })(),
      (async () => {
        for (let i = 0; i < rounds; i++)
          note(
            await outcome(
              racers[3]!.query("SELECT chat_pin($1, $2)", [roots[i % roots.length], i % 2]),
            ),
          );
      })(),
      (async () => {
        for (let i = 0; i < rounds; i++)
          note(
            await outcome(
              gen.chat(racers[4]!, {
                ownerId: s.ownerId,
                parent_chat_id: roots[i % roots.length]!,
              }),
            ),
          );
      })(),
    ]);
    expect(errors).toEqual([]);
  });
});

describe("bindings, first pushes and unarchives racing with pushes", () => {
  const bind = (
    db: Pool | PoolClient,
    chatId: string,
    ownerId: string,
    workspaceId: string | null,
  ) => bindChatWorkspace(db, { id: chatId, owner_id: ownerId, workspace_id: workspaceId });
  async function bindingOf(chatId: string) {
    const { rows } = await pool.query(
      "SELECT workspace_id, build_id, agent_id FROM chats WHERE id = $1",
      [chatId],
    );
    return rows[0] as {
      workspace_id: string | null;
      build_id: string | null;
      agent_id: string | null;
    };
  }

  it("a PATCH of the workspace binds the build it resolved and locked for; a build landing while it waits is bound at the next turn", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await gen.chat(pool, { ownerId: s.ownerId, organizationId: orgId });
    const first = await bindingOf((await chatIn(s)).id);
    const holder = await session(pool);
    const binding = await session(pool);
    let newer: { id: string; agents: { id: string }[] } | undefined;
    try {
      await holder.client.query("BEGIN");
      await holder.client.query(
        "SELECT 1 FROM workspace_agent_contexts WHERE agent_id = $1 FOR UPDATE",
        [s.agentId],
      );
      const bound = outcome(bind(binding.client, chat.id, s.ownerId, s.workspaceId));
      await blocked(pool, binding.pid);
      // The new build waits for the binding (it holds the workspace's row FOR SHARE), so the
      // binding binds the build it resolved.
      const landing = gen.build(pool, s.workspaceId);
      await holder.client.query("COMMIT");
      expect(await bound).toMatchObject({ ok: true });
      newer = await landing;
      await push(newer.agents[0]!.id, [agentsMd("new build")]);
    } finally {
      holder.release();
      binding.release();
    }
    expect(await bindingOf(chat.id)).toEqual(first);
    await prepareChatRunContextByID(pool, { chat_id: chat.id });
    expect(await bindingOf(chat.id)).toMatchObject({
      build_id: newer!.id,
      agent_id: newer!.agents[0]!.id,
    });
    expect((await contextOf(chat.id)).context_aggregate_hash).toBe(
      aggregateHash([agentsMd("new build")]),
    );
  });

  it("a PATCH of a pin and a workspace together waits for the agent's snapshot before it locks any chat row", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const pinned = await chatIn(s);
    await pinChat(pool, { id: pinned.id, owner_id: s.ownerId, pin_order: 1 });
    const chat = await gen.chat(pool, { ownerId: s.ownerId, organizationId: orgId });
    // One connection, so its backend is the one the PATCH's transaction runs on.
    const patching = newPool(dbUrl, 1);
    const holder = await session(pool);
    try {
      const pid = (await patching.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
      // A push in progress: it holds the snapshot and locks the agent's chats next.
      await holder.client.query("BEGIN");
      await holder.client.query(
        "SELECT 1 FROM workspace_agent_contexts WHERE agent_id = $1 FOR UPDATE",
        [s.agentId],
      );
      const patched = outcome(
        patchChat(
          patching,
          s.ownerId,
          chat.id,
          { pin_order: 1, workspace_id: s.workspaceId },
          null,
        ),
      );
      await blocked(pool, pid);
      // Pinning first would hold both rows while the binding waits: a push locking the pinned
      // chat next would then wait for the PATCH, and the PATCH for the push.
      expect(await lockedChats(pool, [chat.id, pinned.id])).toEqual([]);
      await holder.client.query("COMMIT");
      expect(await patched).toMatchObject({ ok: true });
    } finally {
      holder.release();
      await patching.end();
    }
    const { rows } = await pool.query(
      "SELECT id, pin_order, agent_id FROM chats WHERE id = ANY ($1) ORDER BY pin_order",
      [[chat.id, pinned.id]],
    );
    expect(rows).toEqual([
      { id: pinned.id, pin_order: 1, agent_id: s.agentId },
      { id: chat.id, pin_order: 2, agent_id: s.agentId },
    ]);
  });

  it("a PATCH of a pin and a workspace binds the build that landed while it waited for the pin lock, taking that agent's snapshot before any chat row", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const pinned = await chatIn(s);
    await pinChat(pool, { id: pinned.id, owner_id: s.ownerId, pin_order: 1 });
    const chat = await gen.chat(pool, { ownerId: s.ownerId, organizationId: orgId });
    const patching = newPool(dbUrl, 1);
    const pins = await session(pool);
    const pushing = await session(pool);
    try {
      const pid = (await patching.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
      // Another pin change of the owner holds the pin lock; the PATCH waits for it.
      await pins.client.query("BEGIN");
      await pins.client.query("SELECT chat_lock_pins($1)", [s.ownerId]);
      const patched = outcome(
        patchChat(
          patching,
          s.ownerId,
          chat.id,
          { pin_order: 1, workspace_id: s.workspaceId },
          null,
        ),
      );
      await blocked(pool, pid);
      // A new build lands meanwhile, and a push of its agent is in progress.
      const newer = await gen.build(pool, s.workspaceId);
      const agent = newer.agents[0]!.id;
      await push(agent, [agentsMd("new build")]);
      await pushing.client.query("BEGIN");
      await pushing.client.query(
        "SELECT 1 FROM workspace_agent_contexts WHERE agent_id = $1 FOR UPDATE",
        [agent],
      );
      await pins.client.query("COMMIT");
      await blocked(pool, pid);
      // Resolving the build before the pin lock bound an agent it had not locked: it waited for
      // that agent's snapshot holding the chat rows, which the push locks next.
      expect(await lockedChats(pool, [chat.id, pinned.id])).toEqual([]);
      await pushing.client.query("COMMIT");
      expect(await patched).toMatchObject({ ok: true });
      expect(await bindingOf(chat.id)).toMatchObject({ build_id: newer.id, agent_id: agent });
    } finally {
      pins.release();
      pushing.release();
      await patching.end();
    }
  });

  it('an agent\'s first push clears "has not pushed yet" from the chats bound to it with nothing pinned', async () => {
    const s = await setup();
    const chat = await chatIn(s);
    expect((await contextOf(chat.id)).context_error).toBe(
      "The workspace agent has not pushed its context yet.",
    );
    await push(s.agentId, [agentsMd("1")]);
    expect(await contextOf(chat.id)).toMatchObject({
      context_aggregate_hash: null,
      context_error: null,
    });
  });

  it("a binding of a chat deleted while it waited answers PC404", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await gen.chat(pool, { ownerId: s.ownerId, organizationId: orgId });
    const deleting = await session(pool);
    const binding = await session(pool);
    try {
      await deleting.client.query("BEGIN");
      await deleting.client.query("DELETE FROM chats WHERE id = $1", [chat.id]);
      const bound = outcome(bind(binding.client, chat.id, s.ownerId, s.workspaceId));
      await blocked(pool, binding.pid);
      await deleting.client.query("COMMIT");
      expect(await bound).toMatchObject({ ok: false, code: "PC404" });
    } finally {
      deleting.release();
      binding.release();
    }
  });

  it("an unarchive waits for the binding of one of its family's chats, then compares that chat with its new agent", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const other = await setup();
    await push(other.agentId, [agentsMd("other")]);
    const root = await chatIn(s);
    const child = await gen.chat(pool, { ownerId: s.ownerId, parent_chat_id: root.id });
    await archiveChat(pool, { id: root.id, owner_id: s.ownerId, api_key_id: null });
    // The other workspace is the owner's too, in the same organization.
    await pool.query("UPDATE workspaces SET owner_id = $1 WHERE id = $2", [
      s.ownerId,
      other.workspaceId,
    ]);
    const binding = await session(pool);
    const unarchiving = await session(pool);
    try {
      await binding.client.query("BEGIN");
      await bind(binding.client, child.id, s.ownerId, other.workspaceId);
      const unarchived = outcome(
        unarchiveChat(unarchiving.client, { id: root.id, owner_id: s.ownerId, api_key_id: null }),
      );
      await blocked(pool, unarchiving.pid);
      // It waits on the family lock, before it reads the family's agents: not on a chat row,
      // after having locked the agents it read (the binding changes one of them).
      const { rows } = await pool.query(
        "SELECT locktype FROM pg_locks WHERE pid = $1 AND NOT granted",
        [unarchiving.pid],
      );
      expect(rows.map((r) => r.locktype)).toEqual(["advisory"]);
      await binding.client.query("COMMIT");
      expect(await unarchived).toMatchObject({ ok: true });
    } finally {
      binding.release();
      unarchiving.release();
    }
    expect(await bindingOf(child.id)).toMatchObject({ agent_id: other.agentId });
    expect(await contextOf(child.id)).toMatchObject({
      context_aggregate_hash: aggregateHash([agentsMd("other")]),
      context_dirty_since: null,
    });
  });

  it("a chat re-bound to a new build's agent before its first push is compared with that push", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    const next = await gen.build(pool, s.workspaceId);
    await prepareChatRunContextByID(pool, { chat_id: chat.id });
    expect(await contextOf(chat.id)).toMatchObject({
      context_aggregate_hash: aggregateHash([agentsMd("1")]),
      context_error: "The workspace agent has not pushed its context yet.",
    });
    const first = await push(next.agents[0]!.id, [agentsMd("2"), skill("s")]);
    expect(first.marked_dirty).toBe(1);
    expect(await contextOf(chat.id)).toMatchObject({
      context_dirty_resources: [
        { source: "AGENTS.md", change: "modified" },
        { source: "skills/s/SKILL.md", change: "added" },
      ],
      context_error: null,
    });
  });

  it("a binding waits for an agent's first push in progress, then pins what it pushed", async () => {
    const s = await setup();
    const other = await setup();
    await push(other.agentId, [agentsMd("elsewhere")]);
    const chat = await chatIn(other);
    const pushing = await session(pool);
    const binding = await session(pool);
    try {
      await pushing.client.query("BEGIN");
      await pushWorkspaceAgentContext(pushing.client, {
        agent_id: s.agentId,
        resources: [agentsMd("first")],
        error: null,
      });
      // The chat's owner binds it to s's workspace (same owner for the test: reuse other's user).
      await pool.query("UPDATE workspaces SET owner_id = $2 WHERE id = $1", [
        s.workspaceId,
        other.ownerId,
      ]);
      const bound = outcome(bind(binding.client, chat.id, other.ownerId, s.workspaceId));
      await blocked(pool, binding.pid);
      await pushing.client.query("COMMIT");
      expect(await bound).toMatchObject({ ok: true });
    } finally {
      pushing.release();
      binding.release();
    }
    expect(await contextOf(chat.id)).toMatchObject({
      context_aggregate_hash: aggregateHash([agentsMd("first")]),
      context_dirty_since: null,
      context_error: null,
    });
  });

  it("a turn's preparation waiting for a PATCH of the workspace leaves the binding the PATCH made", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    const ws2 = await gen.workspace(pool, { organizationId: orgId, ownerId: s.ownerId });
    const build2 = await gen.build(pool, ws2.id);
    await push(build2.agents[0]!.id, [agentsMd("workspace 2")]);
    for (const target of [ws2.id, null]) {
      // A newer build of the chat's workspace: the turn would re-bind the chat to it.
      await gen.build(pool, s.workspaceId);
      const patching = await session(pool);
      const preparing = await session(pool);
      try {
        await patching.client.query("BEGIN");
        await bind(patching.client, chat.id, s.ownerId, target);
        const prepared = outcome(prepareChatRunContextByID(preparing.client, { chat_id: chat.id }));
        await blocked(pool, preparing.pid);
        await patching.client.query("COMMIT");
        expect(await prepared).toMatchObject({ ok: true });
      } finally {
        patching.release();
        preparing.release();
      }
      expect(await bindingOf(chat.id)).toEqual(
        target
          ? { workspace_id: ws2.id, build_id: build2.id, agent_id: build2.agents[0]!.id }
          : { workspace_id: null, build_id: null, agent_id: null },
      );
      if (target) await bind(pool, chat.id, s.ownerId, s.workspaceId);
    }
  });

  it("a turn's hydration waiting for a re-pin of the chat leaves the pin alone", async () => {
    const s = await setup();
    const chat = await chatIn(s); // bound before the agent's first push: nothing pinned
    await push(s.agentId, [agentsMd("1"), skill("s")]);
    const repinning = await session(pool);
    const preparing = await session(pool);
    try {
      await repinning.client.query("BEGIN");
      await repinChatContextByID(repinning.client, { chat_id: chat.id, owner_id: s.ownerId });
      const prepared = outcome(prepareChatRunContextByID(preparing.client, { chat_id: chat.id }));
      await blocked(pool, preparing.pid);
      await repinning.client.query("COMMIT");
      expect(await prepared).toMatchObject({ ok: true });
    } finally {
      repinning.release();
      preparing.release();
    }
    expect((await pinnedSources(chat.id)).map((r) => r.source)).toEqual([
      "AGENTS.md",
      "skills/s/SKILL.md",
    ]);
    expect((await contextOf(chat.id)).context_aggregate_hash).toBe(
      aggregateHash([agentsMd("1"), skill("s")]),
    );
  });

  it("an unarchived chat is compared with the pushes it missed while archived", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    await pool.query("SELECT chat_archive($1, true)", [chat.id]);
    expect((await push(s.agentId, [agentsMd("2")])).marked_dirty).toBe(0);
    await pool.query("SELECT chat_archive($1, false)", [chat.id]);
    expect(await contextOf(chat.id)).toMatchObject({
      context_dirty_resources: [{ source: "AGENTS.md", change: "modified" }],
    });
    expect((await contextOf(chat.id)).context_dirty_since).not.toBeNull();
  });

  it("a chat unarchived while a push waits is compared once, without a deadlock, however pins race", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    let lo = await chatIn(s);
    let hi = await chatIn(s);
    if (lo.id > hi.id) [lo, hi] = [hi, lo];
    await pool.query("SELECT chat_pin($1, 1)", [hi.id]);
    await pool.query("SELECT chat_archive($1, true)", [lo.id]);
    const holding = await session(pool);
    const pushing = await session(pool);
    const unarchiving = await session(pool);
    const pinning = await session(pool);
    try {
      await holding.client.query("BEGIN");
      await holding.client.query("SELECT 1 FROM chats WHERE id = $1 FOR NO KEY UPDATE", [hi.id]);
      const pushed = outcome(
        pushWorkspaceAgentContext(pushing.client, {
          agent_id: s.agentId,
          resources: [agentsMd("2")],
          error: null,
        }),
      );
      await blocked(pool, pushing.pid);
      const unarchived = outcome(
        unarchiving.client.query("SELECT chat_archive($1, false)", [lo.id]),
      );
      const pinned = outcome(pinning.client.query("SELECT chat_pin($1, 1)", [lo.id]));
      await holding.client.query("COMMIT");
      const results = await Promise.all([pushed, unarchived, pinned]);
      expect(results.filter((r) => !r.ok && r.code !== "PC400")).toEqual([]);
      expect(results[0]).toMatchObject({ ok: true });
      expect(results[1]).toMatchObject({ ok: true });
    } finally {
      for (const c of [holding, pushing, unarchiving, pinning]) c.release();
    }
    for (const c of [lo, hi])
      expect((await contextOf(c.id)).context_dirty_resources, c.id).toEqual([
        { source: "AGENTS.md", change: "modified" },
      ]);
  });
});

describe("pushes racing with binding and re-pinning", () => {
  it("never leaves a chat pinned to older content without marking it dirty", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("0")]);
    const chats: string[] = [(await chatIn(s)).id];
    const rounds = 40;
    // Separate connections, as separate requests would have.
    const pools = Array.from({ length: 6 }, () => newPool(dbUrl, 1));
    const pusher = (db: Pool, w: number) => async () => {
      for (let i = 0; i < rounds; i++)
        await push(s.agentId, [agentsMd(`${w}.${i}`), skill("s", String(i % 3))], null, db);
    };
    const binder = (db: Pool) => async () => {
      for (let i = 0; i < rounds; i++) chats.push((await chatIn(s, db)).id);
    };
    const repinner = (db: Pool) => async () => {
      for (let i = 0; i < rounds; i++) {
        const id = chats[Math.floor(Math.random() * chats.length)]!;
        await repinChatContextByID(db, { chat_id: id, owner_id: s.ownerId });
      }
    };
    await Promise.all([
      pusher(pools[0]!, 0)(),
      pusher(pools[1]!, 1)(),
      binder(pools[2]!)(),
      binder(pools[3]!)(),
      repinner(pools[4]!)(),
      repinner(pools[5]!)(),
    ]);
    const { rows: current } = await pool.query<{ aggregate_hash: string }>(
      "SELECT aggregate_hash FROM workspace_agent_contexts WHERE agent_id = $1",
      [s.agentId],
    );
    const { rows } = await pool.query<{ id: string; pinned: string; dirty: boolean; copy: string }>(
      `SELECT c.id, c.context_aggregate_hash AS pinned, c.context_dirty_since IS NOT NULL AS dirty,
         encode(sha256(convert_to(COALESCE(string_agg(r.content_hash, ',' ORDER BY r.content_hash), ''), 'UTF8')), 'hex') AS copy
       FROM chats c LEFT JOIN chat_context_resources r ON r.chat_id = c.id
       WHERE c.id = ANY($1::uuid[]) GROUP BY c.id`,
      [chats],
    );
    expect(rows).toHaveLength(rounds * 2 + 1);
    for (const r of rows) {
      // Pinned to the current content, or marked dirty: never stale and clean.
      expect(r.pinned === current[0]!.aggregate_hash || r.dirty, `chat ${r.id}`).toBe(true);
      // And the copy is the content the hash names.
      expect(r.copy, `chat ${r.id}`).toBe(r.pinned);
    }
  });
});

describe("context files in a long history", () => {
  /** chat_messages rows the statements of `fn` read, in one transaction (its own statistics). */
  async function messagesRead(fn: (client: PoolClient) => Promise<unknown>) {
    const client = await pool.connect();
    const counters = async () =>
      (
        await client.query(
          `SELECT seq_scan, seq_tup_read, COALESCE(idx_tup_fetch, 0) AS idx_tup_fetch
           FROM pg_stat_xact_user_tables WHERE relname = 'chat_messages'`,
        )
      ).rows[0] as { seq_scan: number; seq_tup_read: number; idx_tup_fetch: number };
    try {
      await client.query("BEGIN");
      const before = await counters();
      await fn(client);
      const after = await counters();
      await client.query("COMMIT");
      return {
        seqScans: after.seq_scan - before.seq_scan,
        fetched:
          after.idx_tup_fetch - before.idx_tup_fetch + after.seq_tup_read - before.seq_tup_read,
      };
    } finally {
      client.release();
    }
  }

  /** A chat bound to an agent, with `history` ordinary messages and two context-file messages. */
  async function longChat(history: number) {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    for (const path of ["AGENTS.md", "docs/rules.md"])
      await addChatContextFiles(pool, {
        agent_id: s.agentId,
        chat_id: chat.id,
        files: [{ path, content: `rules in ${path}` }],
      });
    await pool.query(
      `INSERT INTO chat_messages (chat_id, role, content)
       SELECT $1, 'assistant', jsonb_build_array(jsonb_build_object('type', 'text', 'text', 'm' || i))
       FROM generate_series(1, $2::integer) i`,
      [chat.id, history],
    );
    await pool.query("ANALYZE chat_messages");
    return { ...s, chatId: chat.id };
  }

  it("copying them to a subagent reads the parent's context-file messages only, however long its history", async () => {
    // chat_create alone (the fixture also reads the new chat back).
    const copy = async (history: number) => {
      const c = await longChat(history);
      return messagesRead((client) =>
        client.query(
          "SELECT chat_create($1, NULL, NULL, NULL, $2, NULL, NULL, NULL, NULL, NULL, NULL, $3, NULL)",
          [c.ownerId, c.chatId, JSON.stringify([{ type: "text", text: "subagent" }])],
        ),
      );
    };
    // The long one first: with the table that large, no plan reads it whole for a short chat.
    const long = await copy(2000);
    expect(long.seqScans).toBe(0);
    expect(await copy(10)).toEqual(long);
  });

  it("clearing them reads the chat's context-file messages only, however long its history", async () => {
    const clear = async (history: number) => {
      const c = await longChat(history);
      let removed: number | null | undefined;
      const read = await messagesRead(async (client) => {
        removed = (await clearChatContextFiles(client, { agent_id: c.agentId, chat_id: c.chatId }))!
          .removed;
      });
      expect(removed).toBe(2);
      return read;
    };
    const long = await clear(2000);
    expect(long.seqScans).toBe(0);
    expect(await clear(10)).toEqual(long);
  });
});
