import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { createPool } from "../../src/db/pool.ts";
import { type AssembledServer, assembleServer } from "../../src/processes/serve.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger, testApp } from "../setup/app.ts";
import { listen } from "../setup/listen.ts";
import { settled } from "../setup/runner.ts";
import { openSse } from "../setup/sse.ts";

/*
 * A server process and its runner listen on one connection (src/watch/index.ts, Runner's
 * `listener`): every commit's NOTIFY wakes one backend and one socket of the process, not two.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let pool: Pool;
let server: AssembledServer;

beforeAll(async () => {
  t = await testApp();
  pool = t.pool;
  const { logger } = captureLogger();
  server = await assembleServer({
    pool,
    databaseUrl: t.db.url,
    logger,
    host: "127.0.0.1",
    port: 0,
    events: { mode: "trigger" },
    // The runner's poll is far off: only a notification can wake it within the test.
    runner: { pollMs: 600_000 },
    shutdownTimeoutMs: 1_000,
  });
});

afterAll(async () => {
  await server?.close();
});

const listening = async () =>
  (
    await pool.query<{ application_name: string }>(
      `SELECT application_name FROM pg_stat_activity
       WHERE datname = current_database()
         AND application_name IN ('pgchatd-listen', 'pgchatd-runner')`,
    )
  ).rows.map((r) => r.application_name);

describe("the LISTEN connection of a server with a runner", () => {
  it("is one connection, and a chat made pending by another process wakes the runner through it", async () => {
    expect(await listening()).toEqual(["pgchatd-listen"]);
    const u = await gen.member(pool, { organizationIds: [(await gen.organization(pool)).id] });
    // Created through another app (no runner of its own, no poke of this server's): the
    // trigger's NOTIFY chat_pending is all that reaches the server.
    const created = await t.call("POST", "/api/experimental/chats", {
      token: u.token,
      body: { content: [{ type: "text", text: "wake me" }] },
    });
    expect(created.status).toBe(201);
    const chatId = (created.json as { id: string }).id;
    await settled(pool, chatId, "waiting");
  });

  it("keeps delivering change events to streams after the runner stopped and left it", async () => {
    const org = await gen.organization(pool);
    const u = await gen.member(pool, { organizationIds: [org.id] });
    const chat = await gen.chat(pool, { ownerId: u.id, organizationId: org.id });
    await server.runner!.stop();
    const sse = await openSse(`${server.url}/api/experimental/chats/watch`, {
      authorization: `Bearer ${u.token}`,
    });
    try {
      // Written by another connection, so only the NOTIFY tells this server.
      await pool.query("UPDATE chats SET title = 'after the runner' WHERE id = $1", [chat.id]);
      const ev = await sse.next((e) => e.event === "title_change");
      expect(JSON.parse(ev.data).chat.title).toBe("after the runner");
    } finally {
      sse.close();
    }
    expect(await listening()).toEqual(["pgchatd-listen"]);
  });

  it("wakes its own runner in-process for a chat its own request made pending, with no NOTIFY", async () => {
    // Chats earlier tests left pending would be its first claims.
    await pool.query("UPDATE chats SET status = 'waiting' WHERE status = 'pending'");
    const workerId = crypto.randomUUID();
    // As `pgchatd serve` opens it: the runner's id on every session of the pool.
    const ownPool = createPool({ connectionString: t.db.url, max: 4, runnerId: workerId });
    const own = await assembleServer({
      pool: ownPool,
      databaseUrl: t.db.url,
      logger: captureLogger().logger,
      host: "127.0.0.1",
      port: 0,
      events: { mode: "batched" },
      runner: { workerId, pollMs: 600_000 },
      shutdownTimeoutMs: 1_000,
    });
    const wakes = await listen(t.db.url, "chat_pending");
    try {
      const u = await gen.member(pool, { organizationIds: [(await gen.organization(pool)).id] });
      const res = await fetch(`${own.url}/api/experimental/chats`, {
        method: "POST",
        headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" },
        body: JSON.stringify({ content: [{ type: "text", text: "mine" }] }),
      });
      expect(res.status).toBe(201);
      const chatId = ((await res.json()) as { id: string }).id;
      await settled(pool, chatId, "waiting");
      await pool.query("SELECT pg_notify('chat_pending', 'marker')");
      await wakes.next((n) => n.payload === "marker");
      expect(wakes.received.map((n) => n.payload)).toEqual(["marker"]);
      expect(own.runner!.stats.turns.completed).toBe(1);
    } finally {
      await wakes.close();
      await own.close();
      await ownPool.end();
    }
  });
});
