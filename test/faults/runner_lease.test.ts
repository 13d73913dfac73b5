import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import {
  chatState,
  eventually,
  messagesOf,
  settled,
  statusHistory,
  testRunner,
  textOf,
} from "../setup/runner.ts";
import { blocked, session } from "../setup/sessions.ts";

/*
 * A live runner whose turn fails because its connection to the database was cut: its heartbeat
 * keeps renewing the lease, so no recovery pass (its own or another runner's) would ever release
 * it, and the chat stayed `running` for good. The runner gives such leases back itself.
 */

let db: Awaited<ReturnType<typeof testDb>>;
let orgId: string;

beforeAll(async () => {
  db = await testDb();
  orgId = (await gen.organization(db.pool)).id;
});

describe("a runner's turn cut off from the database", () => {
  it("gives the lease back and answers the chat once, when the turn's final write lost its connection", async () => {
    // The default staleness (60 s): nothing but the runner itself may release the lease here.
    const { runner } = await testRunner({ heartbeatMs: 200 });
    const owner = await gen.user(db.pool, { organizationIds: [orgId] });
    const chat = await gen.chat(db.pool, {
      ownerId: owner.id,
      organizationId: orgId,
      text: "/sleep 300",
    });
    await eventually(
      async () => ((await chatState(db.pool, chat.id)).status === "running" ? true : undefined),
      "the turn to start",
    );
    // The chat's row held, so the turn's end (chat_run_finish) waits for it; then its
    // connection is cut, as a database restart does.
    const holder = await session(db.pool);
    try {
      await holder.client.query("BEGIN");
      await holder.client.query("SELECT 1 FROM chats WHERE id = $1 FOR UPDATE", [chat.id]);
      const finishing = await eventually(async () => {
        const { rows } = await db.pool.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
           WHERE application_name = 'pgchatd-test-runner' AND datname = current_database()
             AND wait_event_type = 'Lock'`,
        );
        return rows[0]?.pid;
      }, "the turn's end to wait for the chat's row");
      await blocked(db.pool, finishing);
      await db.pool.query("SELECT pg_terminate_backend($1)", [finishing]);
    } finally {
      await holder.client.query("ROLLBACK");
      holder.release();
    }

    await settled(db.pool, chat.id, "waiting");
    const msgs = await messagesOf(db.pool, chat.id);
    expect(msgs.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", "/sleep 300"],
      ["assistant", "echo: /sleep 300"],
    ]);
    // Released (back to pending) and run again from the stored history.
    expect(await statusHistory(db.pool, chat.id)).toEqual([
      "running",
      "pending",
      "running",
      "waiting",
    ]);
    await runner.idle();
    expect(runner.stats.turns.completed).toBe(1);
  });
});
