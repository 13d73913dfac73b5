import { beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { getChatByIDForOwner, markChatReadByID } from "../../src/generated/chats.ts";
import { gen } from "../fixtures/index.ts";
import { newPool, testDb } from "../setup/db.ts";
import { blocked, lockedChats, outcome, session } from "../setup/sessions.ts";
import { sqlError } from "../setup/sql.ts";

/*
 * The chat rules where they live: SQL functions and triggers, called directly. HTTP tests
 * (test/server/chats.test.ts) check the same rules through the routes.
 */

let pool: Pool;
let url: string;
let orgId: string;

beforeAll(async () => {
  const db = await testDb();
  pool = db.pool;
  url = db.url;
  orgId = (await gen.organization(pool)).id;
});

async function owner() {
  return (await gen.user(pool, { organizationIds: [orgId] })).id;
}

async function row(id: string) {
  const { rows } = await pool.query("SELECT * FROM chats WHERE id = $1", [id]);
  return rows[0];
}

/** Pin orders of the owner's pinned chats, in order. */
async function pins(ownerId: string) {
  const { rows } = await pool.query(
    "SELECT pin_order FROM chats WHERE owner_id = $1 AND pin_order > 0 ORDER BY pin_order",
    [ownerId],
  );
  return rows.map((r) => r.pin_order as number);
}

describe("creation", () => {
  it("inserts a chat with its final status pending and version 1, in one statement", async () => {
    const ownerId = await owner();
    const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
    expect(chat).toMatchObject({ status: "pending", version: 1, client_type: "api" });
    expect(chat.created_at).toBe(chat.updated_at);
  });

  it("derives a child's root from its parent and inherits organization, client type and workspace", async () => {
    const ownerId = await owner();
    const ws = await gen.workspace(pool, { organizationId: orgId, ownerId });
    const b = await gen.build(pool, ws.id, ["main"]);
    const root = await gen.chat(pool, {
      ownerId,
      organizationId: orgId,
      client_type: "ui",
      workspace_id: ws.id,
    });
    expect(root).toMatchObject({ workspace_id: ws.id, build_id: b.id, agent_id: b.agents[0]!.id });
    const child = await gen.chat(pool, { ownerId, parent_chat_id: root.id });
    const grandchild = await gen.chat(pool, { ownerId, parent_chat_id: child.id });
    for (const c of [child, grandchild]) {
      expect(c).toMatchObject({
        root_chat_id: root.id,
        organization_id: orgId,
        client_type: "ui",
        workspace_id: ws.id,
        build_id: b.id,
        agent_id: b.agents[0]!.id,
      });
    }
    expect(grandchild.parent_chat_id).toBe(child.id);
  });

  it("copies the parent's context-file messages into a new child", async () => {
    const ownerId = await owner();
    const root = await gen.chat(pool, { ownerId, organizationId: orgId });
    const contextPart = {
      type: "context-file",
      context_file_path: "AGENTS.md",
      context_file_content: "be brief",
    };
    await gen.chatMessage(pool, root.id, {
      role: "user",
      visibility: "model",
      content: [contextPart],
    });
    await gen.chatMessage(pool, root.id, { role: "assistant", text: "not copied" });
    const child = await gen.chat(pool, { ownerId, parent_chat_id: root.id, text: "task" });
    const { rows } = await pool.query(
      "SELECT role, content FROM chat_messages WHERE chat_id = $1 ORDER BY id",
      [child.id],
    );
    expect(rows).toEqual([
      { role: "user", content: [contextPart] },
      { role: "user", content: [{ type: "text", text: "task" }] },
    ]);
  });

  it("refuses a child of another owner's chat, and a raw insert cannot fake root_chat_id", async () => {
    const a = await owner();
    const b = await owner();
    const root = await gen.chat(pool, { ownerId: a, organizationId: orgId });
    const err = await sqlError(() => gen.chat(pool, { ownerId: b, parent_chat_id: root.id }));
    expect(err.code).toBe("PC400");
    const other = await gen.chat(pool, { ownerId: a, organizationId: orgId });
    const { rows } = await pool.query(
      `INSERT INTO chats (owner_id, organization_id, last_model_config_id, parent_chat_id, root_chat_id)
       SELECT $1, $2, last_model_config_id, $3, $4 FROM chats WHERE id = $3 RETURNING root_chat_id`,
      [a, orgId, root.id, other.id],
    );
    expect(rows[0].root_chat_id).toBe(root.id);
  });

  it("keeps a chat's family and owner immutable", async () => {
    const ownerId = await owner();
    const root = await gen.chat(pool, { ownerId, organizationId: orgId });
    const child = await gen.chat(pool, { ownerId, parent_chat_id: root.id });
    const err = await sqlError(() =>
      pool.query("UPDATE chats SET parent_chat_id = NULL WHERE id = $1", [child.id]),
    );
    expect(err.code).toBe("PC400");
  });
});

describe("version and updated_at", () => {
  it("increments version on every change and not on a no-op update", async () => {
    const ownerId = await owner();
    const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
    await pool.query("UPDATE chats SET title = 'a' WHERE id = $1", [chat.id]);
    await pool.query("UPDATE chats SET last_turn_summary = 'b' WHERE id = $1", [chat.id]);
    await pool.query("UPDATE chats SET title = title WHERE id = $1", [chat.id]);
    expect((await row(chat.id)).version).toBe(3);
  });

  it("moves version for a change of each column a client or the runner may change, and not for a heartbeat alone", async () => {
    const ownerId = await owner();
    const ws = await gen.workspace(pool, { organizationId: orgId, ownerId });
    const build = await gen.build(pool, ws.id);
    const model = await gen.modelConfig(pool);
    const keyId = (await gen.apiKey(pool, ownerId)).split("-")[0];
    const changes: Record<string, string> = {
      status: "status = 'running'",
      archived: "archived = true",
      pin_order: "pin_order = 1",
      updated_at: "updated_at = now() - interval '1 day'",
      worker_id: "worker_id = gen_random_uuid()",
      started_at: "started_at = now()",
      workspace_id: `workspace_id = '${ws.id}'`,
      build_id: `build_id = '${build.id}'`,
      agent_id: `agent_id = '${build.agents[0]!.id}'`,
      last_model_config_id: `last_model_config_id = '${model.id}'`,
      api_key_id: `api_key_id = '${keyId}'`,
      title: "title = 'renamed'",
      title_source: "title_source = 'user'",
      mode: "mode = 'x'",
      plan_mode: "plan_mode = 'plan'",
      client_type: "client_type = 'ui'",
      last_read_message_id: "last_read_message_id = 10",
      context_aggregate_hash: "context_aggregate_hash = 'h'",
      context_dirty_since: "context_dirty_since = now()",
      context_error: "context_error = 'x'",
      mcp_server_ids: "mcp_server_ids = ARRAY[gen_random_uuid()]",
      last_error: `last_error = '{"kind": "generic"}'`,
      last_turn_summary: "last_turn_summary = 'done'",
      labels: `labels = '{"a": "b"}'`,
      context_dirty_resources: `context_dirty_resources = '[]'`,
      dynamic_tools: `dynamic_tools = '[{"name": "t"}]'`,
    };
    for (const [what, set] of Object.entries(changes)) {
      const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
      await pool.query(`UPDATE chats SET ${set} WHERE id = $1`, [chat.id]);
      const moved = (await row(chat.id)).version !== chat.version;
      expect({ what, moved }).toEqual({ what, moved: true });
    }
    const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
    await pool.query("UPDATE chats SET heartbeat_at = now() WHERE id = $1", [chat.id]);
    await pool.query(`UPDATE chats SET dynamic_tools = dynamic_tools WHERE id = $1`, [chat.id]);
    expect((await row(chat.id)).version).toBe(chat.version);
  });

  it("tracks every column of chats but the immutable, derived and heartbeat ones, and reads the dynamic tools only when they are assigned", async () => {
    // The triggers fire only for the columns they list (UPDATE OF): a column added to chats
    // must be listed in one of them, or changing it would move no version and send no event.
    const { rows } = await pool.query<{ trigger: string; columns: string[] }>(`
      SELECT t.tgname AS trigger, array_agg(a.attname::text ORDER BY a.attname) AS columns
      FROM pg_trigger t
      JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr::int2[])
      WHERE t.tgrelid = 'chats'::regclass
        AND t.tgname IN ('chats_500_track_changes', 'chats_500_track_tool_changes')
      GROUP BY t.tgname ORDER BY t.tgname`);
    const { rows: all } = await pool.query<{ attname: string }>(
      "SELECT attname FROM pg_attribute WHERE attrelid = 'chats'::regclass AND attnum > 0 AND NOT attisdropped",
    );
    const untracked = [
      "id",
      "owner_id",
      "organization_id",
      "parent_chat_id",
      "root_chat_id",
      "created_at",
      "version",
      "status_changed_at",
      "heartbeat_at",
      // The runner's record of a turn's prompt (docs/api.md "What the model saw"): no event.
      "last_injected_context",
    ];
    const tracked = all.map((r) => r.attname).filter((c) => !untracked.includes(c));
    expect(rows.map((r) => r.trigger)).toEqual([
      "chats_500_track_changes",
      "chats_500_track_tool_changes",
    ]);
    expect([...rows[0]!.columns, ...rows[1]!.columns].sort()).toEqual(tracked.sort());
    expect(rows[1]!.columns).toEqual(["dynamic_tools"]);
  });

  it("refuses dynamic tools that are not an array or exceed 256 KiB of JSON, checked only when assigned", async () => {
    const ownerId = await owner();
    const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
    const tool = (i: number) => ({
      name: `t${i}`,
      description: "d".repeat(1000),
      input_schema: {},
    });
    const fits = Array.from({ length: 200 }, (_, i) => tool(i));
    await pool.query("UPDATE chats SET dynamic_tools = $2 WHERE id = $1", [
      chat.id,
      JSON.stringify(fits),
    ]);
    const tooLarge = Array.from({ length: 300 }, (_, i) => tool(i));
    for (const value of [tooLarge, { not: "an array" }]) {
      const err = await sqlError(() =>
        pool.query("UPDATE chats SET dynamic_tools = $2 WHERE id = $1", [
          chat.id,
          JSON.stringify(value),
        ]),
      );
      expect(err.code).toBe("PC400");
    }
    const err = await sqlError(() =>
      gen.chat(pool, { ownerId, organizationId: orgId, dynamic_tools: tooLarge }),
    );
    expect(err).toMatchObject({ code: "PC400", message: "Dynamic tools are too large." });
  });

  it("moves updated_at for status, archive, pin, labels and workspace changes only", async () => {
    const ownerId = await owner();
    const ws = await gen.workspace(pool, { organizationId: orgId, ownerId });
    const moves: Record<string, string> = {
      status: "status = 'running'",
      labels: `labels = '{"a": "b"}'`,
      workspace: `workspace_id = '${ws.id}'`,
      pin: "pin_order = 1",
    };
    const stays: Record<string, string> = {
      title: "title = 'renamed'",
      summary: "last_turn_summary = 'done'",
      plan_mode: "plan_mode = 'plan'",
      model: "last_model_config_id = last_model_config_id",
      context: "context_dirty_since = now(), context_error = 'x'",
      read_cursor: "last_read_message_id = 10",
      error: `last_error = '{"kind": "generic"}'`,
    };
    const past = "2020-01-01T00:00:00.000000Z";
    for (const [what, set] of Object.entries({ ...moves, ...stays })) {
      const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
      await pool.query("UPDATE chats SET updated_at = $2 WHERE id = $1", [chat.id, past]);
      await pool.query(`UPDATE chats SET ${set} WHERE id = $1`, [chat.id]);
      const moved = (await row(chat.id)).updated_at !== past;
      expect({ what, moved }).toEqual({ what, moved: what in moves });
    }
  });

  it("moves updated_at for a new user message, not for assistant or model-only messages", async () => {
    const ownerId = await owner();
    const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
    const past = "2020-01-01T00:00:00.000000Z";
    await pool.query("UPDATE chats SET updated_at = $2 WHERE id = $1", [chat.id, past]);
    await gen.chatMessage(pool, chat.id, { role: "assistant" });
    await gen.chatMessage(pool, chat.id, { role: "user", visibility: "model" });
    expect((await row(chat.id)).updated_at).toBe(past);
    await gen.chatMessage(pool, chat.id, { role: "user" });
    expect((await row(chat.id)).updated_at).not.toBe(past);
  });

  it("moves the read cursor to the newest message without moving updated_at, never backwards", async () => {
    const ownerId = await owner();
    const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
    const m = await gen.chatMessage(pool, chat.id, { role: "assistant" });
    const before = await row(chat.id);
    expect((await markChatReadByID(pool, { id: chat.id }))?.last_read_message_id).toBe(m.id);
    const after = await row(chat.id);
    expect(after.last_read_message_id).toBe(m.id);
    expect(after.updated_at).toBe(before.updated_at);
    expect((await getChatByIDForOwner(pool, { id: chat.id, owner_id: ownerId }))?.has_unread).toBe(
      false,
    );
    await pool.query(
      "UPDATE chats SET last_read_message_id = last_read_message_id + 1000 WHERE id = $1",
      [chat.id],
    );
    await markChatReadByID(pool, { id: chat.id });
    expect((await row(chat.id)).last_read_message_id).toBe(m.id + 1000);
  });
});

describe("archive", () => {
  async function family(ownerId: string) {
    const root = await gen.chat(pool, { ownerId, organizationId: orgId });
    const child = await gen.chat(pool, { ownerId, parent_chat_id: root.id });
    const grandchild = await gen.chat(pool, { ownerId, parent_chat_id: child.id });
    return { root, child, grandchild };
  }
  const archived = async (...ids: string[]) =>
    Promise.all(ids.map(async (id) => (await row(id)).archived));

  it("archiving a root archives every descendant, clears its pin and closes the gap", async () => {
    const ownerId = await owner();
    const { root, child, grandchild } = await family(ownerId);
    const other = await gen.chat(pool, { ownerId, organizationId: orgId });
    await pool.query("SELECT chat_pin($1, 1)", [root.id]);
    await pool.query("SELECT chat_pin($1, 1)", [other.id]);
    const { rows } = await pool.query("SELECT chat_archive($1, true) AS id", [root.id]);
    expect(rows.map((r) => r.id).sort()).toEqual([root.id, child.id, grandchild.id].sort());
    expect(await archived(root.id, child.id, grandchild.id)).toEqual([true, true, true]);
    expect((await row(root.id)).pin_order).toBe(0);
    expect((await row(other.id)).pin_order).toBe(1);
  });

  it("unarchiving a root restores the whole family, including individually archived children", async () => {
    const ownerId = await owner();
    const { root, child, grandchild } = await family(ownerId);
    await pool.query("SELECT chat_archive($1, true)", [child.id]);
    await pool.query("SELECT chat_archive($1, true)", [root.id]);
    await pool.query("SELECT chat_archive($1, false)", [root.id]);
    expect(await archived(root.id, child.id, grandchild.id)).toEqual([false, false, false]);
  });

  it("archives a child with its own descendants only", async () => {
    const ownerId = await owner();
    const { root, child, grandchild } = await family(ownerId);
    await pool.query("SELECT chat_archive($1, true)", [child.id]);
    expect(await archived(root.id, child.id, grandchild.id)).toEqual([false, true, true]);
  });

  it("refuses to unarchive a child while its parent is archived", async () => {
    const ownerId = await owner();
    const { root, child, grandchild } = await family(ownerId);
    await pool.query("SELECT chat_archive($1, true)", [root.id]);
    for (const id of [child.id, grandchild.id]) {
      const err = await sqlError(() => pool.query("SELECT chat_archive($1, false)", [id]));
      expect(err).toMatchObject({
        code: "PC400",
        message: expect.stringMatching(/parent is archived/),
      });
    }
  });

  it("rejects archiving an archived chat and unarchiving an unarchived one", async () => {
    const ownerId = await owner();
    const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
    expect(
      (await sqlError(() => pool.query("SELECT chat_archive($1, false)", [chat.id]))).code,
    ).toBe("PC400");
    await pool.query("SELECT chat_archive($1, true)", [chat.id]);
    expect(
      (await sqlError(() => pool.query("SELECT chat_archive($1, true)", [chat.id]))).code,
    ).toBe("PC400");
  });

  it("makes archived chats read-only: no message and no child can be added", async () => {
    const ownerId = await owner();
    const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
    await pool.query("SELECT chat_archive($1, true)", [chat.id]);
    for (const role of ["user", "assistant", "tool", "system"] as const) {
      const err = await sqlError(() => gen.chatMessage(pool, chat.id, { role }));
      expect(err).toMatchObject({ code: "PC400", message: "Chat is archived." });
    }
    expect((await sqlError(() => gen.chat(pool, { ownerId, parent_chat_id: chat.id }))).code).toBe(
      "PC400",
    );
  });

  it("never leaves an unarchived child under an archived root when archive and unarchive race", async () => {
    const ownerId = await owner();
    const a = newPool(url, 4);
    const b = newPool(url, 4);
    for (let round = 0; round < 15; round++) {
      const { root, child } = await family(ownerId);
      await pool.query("SELECT chat_archive($1, true)", [child.id]);
      // The child is archived alone; now unarchive it while the root is being archived.
      await Promise.allSettled([
        a.query("SELECT chat_archive($1, true)", [root.id]),
        b.query("SELECT chat_archive($1, false)", [child.id]),
      ]);
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM chats c JOIN chats p ON p.id = c.parent_chat_id
         WHERE p.archived AND NOT c.archived AND c.owner_id = $1`,
        [ownerId],
      );
      expect(rows[0].n).toBe(0);
    }
  });

  it("never lets a message land in a chat archived concurrently", async () => {
    const ownerId = await owner();
    const a = newPool(url, 4);
    const b = newPool(url, 4);
    for (let round = 0; round < 15; round++) {
      const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
      const [, inserted] = await Promise.allSettled([
        a.query("SELECT chat_archive($1, true)", [chat.id]),
        gen.chatMessage(b, chat.id, { role: "assistant" }),
      ]);
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM chat_messages m JOIN chats c ON c.id = m.chat_id
         WHERE c.id = $1 AND m.role = 'assistant'`,
        [chat.id],
      );
      // Either the message committed first (then the archive followed it) or it was refused.
      expect(rows[0].n).toBe(inserted.status === "fulfilled" ? 1 : 0);
      if (inserted.status === "rejected")
        expect((inserted.reason as { code: string }).code).toBe("PC400");
    }
  });
});

describe("archive and creation in one family, on two sessions", () => {
  async function family(ownerId: string) {
    const root = await gen.chat(pool, { ownerId, organizationId: orgId });
    const child = await gen.chat(pool, { ownerId, parent_chat_id: root.id });
    return { root, child };
  }

  it("archiving a root waits for a grandchild being created, then archives it too", async () => {
    const ownerId = await owner();
    const { root, child } = await family(ownerId);
    const creating = await session(pool);
    const archiving = await session(pool);
    let grandchild: { id: string } | undefined;
    try {
      await creating.client.query("BEGIN");
      grandchild = await gen.chat(creating.client, { ownerId, parent_chat_id: child.id });
      const archive = outcome(
        archiving.client.query("SELECT chat_archive($1, true) AS id", [root.id]),
      );
      await blocked(pool, archiving.pid);
      await creating.client.query("COMMIT");
      const archived = await archive;
      expect(archived.ok).toBe(true);
    } finally {
      creating.release();
      archiving.release();
    }
    for (const id of [root.id, child.id, grandchild!.id]) {
      expect({ id, archived: (await row(id)).archived }).toEqual({ id, archived: true });
    }
  });

  it("refuses a grandchild whose root is being archived, once the archive commits", async () => {
    const ownerId = await owner();
    const { root, child } = await family(ownerId);
    const archiving = await session(pool);
    const creating = await session(pool);
    try {
      await archiving.client.query("BEGIN");
      await archiving.client.query("SELECT chat_archive($1, true)", [root.id]);
      const creation = outcome(gen.chat(creating.client, { ownerId, parent_chat_id: child.id }));
      await blocked(pool, creating.pid);
      await archiving.client.query("COMMIT");
      expect(await creation).toMatchObject({ ok: false, code: "PC400" });
    } finally {
      archiving.release();
      creating.release();
    }
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM chats WHERE parent_chat_id = $1",
      [child.id],
    );
    expect(rows[0].n).toBe(0);
  });
});

describe("lock order: several chat rows are locked in id order", () => {
  /** A family of a root and children of which at least one has a smaller id than the root. */
  async function familyWithLowerChild(ownerId: string) {
    const root = await gen.chat(pool, { ownerId, organizationId: orgId });
    const children: { id: string }[] = [];
    while (!children.some((c) => c.id < root.id) || children.length < 2)
      children.push(await gen.chat(pool, { ownerId, parent_chat_id: root.id }));
    return { root, children };
  }

  it("an archive waiting for the lowest row of its family holds none of the others", async () => {
    const ownerId = await owner();
    const { root, children } = await familyWithLowerChild(ownerId);
    const ids = [root.id, ...children.map((c) => c.id)].sort();
    const holder = await session(pool);
    const archiving = await session(pool);
    try {
      await holder.client.query("BEGIN");
      await holder.client.query("SELECT 1 FROM chats WHERE id = $1 FOR NO KEY UPDATE", [ids[0]]);
      const archive = outcome(archiving.client.query("SELECT chat_archive($1, true)", [root.id]));
      await blocked(pool, archiving.pid);
      expect(await lockedChats(pool, ids.slice(1))).toEqual([]);
      await holder.client.query("COMMIT");
      expect((await archive).ok).toBe(true);
    } finally {
      holder.release();
      archiving.release();
    }
  });

  it("a pin move waiting for the lowest of the rows it renumbers holds none of the others", async () => {
    const ownerId = await owner();
    const chats: { id: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await gen.chat(pool, { ownerId, organizationId: orgId });
      await pool.query("SELECT chat_pin($1, 1)", [c.id]);
      chats.push(c);
    }
    const ids = chats.map((c) => c.id).sort();
    // Move the highest id to the top: every pin is renumbered, the lowest id too.
    const moved = ids[ids.length - 1]!;
    const holder = await session(pool);
    const pinning = await session(pool);
    try {
      await holder.client.query("BEGIN");
      await holder.client.query("SELECT 1 FROM chats WHERE id = $1 FOR NO KEY UPDATE", [ids[0]]);
      const pin = outcome(pinning.client.query("SELECT chat_pin($1, 1)", [moved]));
      await blocked(pool, pinning.pid);
      expect(await lockedChats(pool, ids.slice(1))).toEqual([]);
      await holder.client.query("COMMIT");
      expect((await pin).ok).toBe(true);
    } finally {
      holder.release();
      pinning.release();
    }
    expect(await pins(ownerId)).toEqual([1, 2, 3, 4]);
    expect((await row(moved)).pin_order).toBe(1);
  });

  it("archive, unarchive, pin and unpin of one owner's families racing on separate connections never deadlock", async () => {
    const ownerId = await owner();
    const roots: string[] = [];
    for (let i = 0; i < 4; i++) roots.push((await familyWithLowerChild(ownerId)).root.id);
    const racers = Array.from({ length: 4 }, () => newPool(url, 1));
    const errors: string[] = [];
    await Promise.all(
      racers.map(async (db, w) => {
        for (let i = 0; i < 25; i++) {
          const root = roots[(w + i) % roots.length]!;
          const r = await row(root);
          const call = r.archived
            ? db.query("SELECT chat_archive($1, false)", [root])
            : i % 3 === 0
              ? db.query("SELECT chat_archive($1, true)", [root])
              : db.query("SELECT chat_pin($1, $2)", [root, i % 2]);
          const result = await outcome(call);
          // Racing requests may find the state changed under them (PC400: already archived):
          // that is the rule working. A deadlock (40P01) never is.
          if (!result.ok && result.code !== "PC400")
            errors.push(`${result.code} ${result.message}`);
        }
      }),
    );
    expect(errors).toEqual([]);
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM chats c JOIN chats p ON p.id = c.parent_chat_id
       WHERE p.archived AND NOT c.archived AND c.owner_id = $1`,
      [ownerId],
    );
    expect(rows[0].n).toBe(0);
    const dense = await pins(ownerId);
    expect(dense).toEqual(dense.map((_, i) => i + 1));
  });
});

describe("pins", () => {
  it("appends, moves with clamping, and unpins, keeping positions dense", async () => {
    const ownerId = await owner();
    const chats = await Promise.all(
      [1, 2, 3, 4].map(() => gen.chat(pool, { ownerId, organizationId: orgId })),
    );
    const ids = chats.map((c) => c.id);
    for (const id of ids) await pool.query("SELECT chat_pin($1, 99)", [id]);
    const order = async () => {
      const { rows } = await pool.query(
        "SELECT id FROM chats WHERE owner_id = $1 AND pin_order > 0 ORDER BY pin_order",
        [ownerId],
      );
      return rows.map((r) => ids.indexOf(r.id));
    };
    expect(await order()).toEqual([0, 1, 2, 3]);
    await pool.query("SELECT chat_pin($1, 1)", [ids[3]]);
    expect(await order()).toEqual([3, 0, 1, 2]);
    await pool.query("SELECT chat_pin($1, 1000)", [ids[3]]);
    expect(await order()).toEqual([0, 1, 2, 3]);
    await pool.query("SELECT chat_pin($1, 0)", [ids[1]]);
    expect(await order()).toEqual([0, 2, 3]);
    expect(await pins(ownerId)).toEqual([1, 2, 3]);
    await pool.query("SELECT chat_pin($1, 0)", [ids[1]]);
    expect(await pins(ownerId)).toEqual([1, 2, 3]);
  });

  it("pins only unarchived roots", async () => {
    const ownerId = await owner();
    const root = await gen.chat(pool, { ownerId, organizationId: orgId });
    const child = await gen.chat(pool, { ownerId, parent_chat_id: root.id });
    expect(
      (await sqlError(() => pool.query("SELECT chat_pin($1, 1)", [child.id]))).message,
    ).toMatch(/root/);
    const archivedChat = await gen.chat(pool, { ownerId, organizationId: orgId });
    await pool.query("SELECT chat_archive($1, true)", [archivedChat.id]);
    expect(
      (await sqlError(() => pool.query("SELECT chat_pin($1, 1)", [archivedChat.id]))).code,
    ).toBe("PC400");
    // The CHECK holds even for a raw update.
    const err = await sqlError(() =>
      pool.query("UPDATE chats SET pin_order = 5 WHERE id = $1", [child.id]),
    );
    expect(err.code).toBe("23514");
  });

  it("keeps pin_order a dense permutation when 50 pin, move and unpin requests race", async () => {
    const ownerId = await owner();
    const chats = await Promise.all(
      Array.from({ length: 12 }, () => gen.chat(pool, { ownerId, organizationId: orgId })),
    );
    const racers = newPool(url, 25);
    const ops = Array.from({ length: 50 }, (_, i) => {
      const chat = chats[(i * 7) % chats.length]!;
      const position = i % 5 === 0 ? 0 : (i * 3) % 9;
      return racers.query("SELECT chat_pin($1, $2)", [chat.id, position]);
    });
    const results = await Promise.allSettled(ops);
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
    const positions = await pins(ownerId);
    expect(positions).toEqual(Array.from({ length: positions.length }, (_, i) => i + 1));
  });
});
