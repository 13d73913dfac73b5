import { createHash } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import {
  prepareChatRunContextByID,
  repinChatContextByID,
} from "../../src/generated/chat_context.ts";
import { updateChatByID } from "../../src/generated/chats.ts";
import { pushWorkspaceAgentContext } from "../../src/generated/workspace_agent_contexts.ts";
import { gen } from "../fixtures/index.ts";
import { newPool, testDb } from "../setup/db.ts";
import { listen } from "../setup/listen.ts";
import { sqlError } from "../setup/sql.ts";

/*
 * Workspace context pinning where it lives: sql/functions/chat_context.sql and the trigger on
 * workspace_agent_contexts, called directly, with real concurrent connections for the race
 * between pushes, chats binding and re-pinning. test/server/workspace-agents.test.ts checks the
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

async function auditOf(where: { chatId?: string; agentId?: string }) {
  const { rows } = await pool.query<{
    action: string;
    actor_user_id: string | null;
    actor_agent_id: string | null;
    chat_id: string | null;
  }>(
    `SELECT action, actor_user_id, actor_agent_id, chat_id FROM audit_logs
     WHERE ($1::uuid IS NULL OR chat_id = $1) AND ($2::uuid IS NULL OR agent_id = $2) ORDER BY id`,
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

  it("marks dirty exactly the bound chats that pinned other content and are neither archived nor dirty, with the changed sources", async () => {
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
    expect(r.marked_dirty).toBe(1);
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
    expect((await contextOf(alreadyDirty.id)).context_dirty_since).toBe(before.context_dirty_since);
    expect((await contextOf(elsewhere.id)).context_dirty_since).toBeNull();
    const { rows } = await pool.query(
      "SELECT kind FROM chat_events WHERE chat_id = $1 AND kind = 'context_dirty'",
      [pinned.id],
    );
    expect(rows).toHaveLength(1);
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
      updateChatByID(pool, {
        id: chat.id,
        owner_id: s.ownerId,
        title: null,
        archived: null,
        pin_order: null,
        labels: null,
        set_workspace: true,
        workspace_id: workspace,
        set_plan_mode: false,
        plan_mode: null,
      });
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

  it("audits archive and unarchive of every chat of a family", async () => {
    const s = await setup();
    const root = await chatIn(s);
    const child = await gen.chat(pool, { ownerId: s.ownerId, parent_chat_id: root.id });
    const patch = (archived: boolean) =>
      updateChatByID(pool, {
        id: root.id,
        owner_id: s.ownerId,
        title: null,
        archived,
        pin_order: null,
        labels: null,
        set_workspace: false,
        workspace_id: null,
        set_plan_mode: false,
        plan_mode: null,
      });
    await patch(true);
    await patch(false);
    for (const id of [root.id, child.id]) {
      const actions = (await auditOf({ chatId: id })).filter((e) => e.action.startsWith("chat_"));
      expect(actions.map((e) => [e.action, e.actor_user_id])).toEqual([
        ["chat_archive", s.ownerId],
        ["chat_unarchive", s.ownerId],
      ]);
    }
  });
});

/** Resolves once the backend `pid` waits for a lock (its statement is blocked by another). */
async function blocked(pid: number) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await pool.query(
      "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
      [pid],
    );
    if (rows[0]?.wait_event_type === "Lock") return;
    if (Date.now() > deadline) throw new Error(`backend ${pid} never waited for a lock`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A connection of its own, its backend pid, and a way to hand it back. */
async function session() {
  const client = await pool.connect();
  const pid = (await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
  return { client, pid, release: () => client.release() };
}

describe("a push and a pin at the same moment", () => {
  it("a push during a re-pin waits for it, then marks the chat it pinned", async () => {
    const s = await setup();
    await push(s.agentId, [agentsMd("1")]);
    const chat = await chatIn(s);
    await push(s.agentId, [agentsMd("2")]);
    const pinning = await session();
    const pushing = await session();
    try {
      await pinning.client.query("BEGIN");
      await repinChatContextByID(pinning.client, { chat_id: chat.id, owner_id: s.ownerId });
      const pushed = pushWorkspaceAgentContext(pushing.client, {
        agent_id: s.agentId,
        resources: [agentsMd("3")],
        error: null,
      });
      await blocked(pushing.pid);
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
    const pushing = await session();
    const creating = await session();
    const repinning = await session();
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
      await blocked(creating.pid);
      await blocked(repinning.pid);
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
