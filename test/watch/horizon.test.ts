import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient } from "../../src/db/pool.ts";
import { gen } from "../fixtures/index.ts";
import { emptyDatabase } from "../setup/db.ts";
import { eventually } from "../setup/runner.ts";
import { type TestServer, testServer } from "../setup/server.ts";
import { openSse, type SseClient, type SseEvent } from "../setup/sse.ts";

/*
 * Open transactions and the read horizon (docs/operations.md "Long transactions"), on a real
 * server with a real watch stream: an open write transaction of this database holds delivery back
 * but loses nothing, and /metrics and the log name it; one of another database on the same server
 * holds nothing back. Each test counts only the events of the chat it changes.
 */

let srv: TestServer;
let orgId: string;
const clients: SseClient[] = [];

beforeAll(async () => {
  srv = await testServer({ heldBackWarnMs: 300, safetyPollMs: 100 });
  orgId = (await gen.organization(srv.pool)).id;
});

afterAll(async () => {
  for (const c of clients) c.close();
  await srv?.close();
});

async function watcher() {
  const u = await gen.user(srv.pool, { organizationIds: [orgId] });
  const token = await gen.apiKey(srv.pool, u.id);
  const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
  const sse = await openSse(`${srv.url}/api/experimental/chats/watch`, {
    authorization: `Bearer ${token}`,
  });
  clients.push(sse);
  return { chat, sse };
}

const titleChangeOf = (chatId: string, title: string) => (e: SseEvent) => {
  if (e.event !== "title_change") return false;
  const data = JSON.parse(e.data) as { chat: { id: string; title: string } };
  return data.chat.id === chatId && data.chat.title === title;
};

async function metrics() {
  return (await fetch(`${srv.url}/metrics`)).text();
}

/** The value of the held-back gauge in /metrics. */
async function heldBackSeconds() {
  const m = /^pgchatd_events_held_back_seconds (\S+)$/m.exec(await metrics());
  return Number(m?.[1]);
}

describe("open transactions and the read horizon", () => {
  it("pgchatd's own connections end a transaction left idle for 10 s, so none of theirs holds streams back for longer", async () => {
    const client = await connectClient(srv.dbUrl);
    try {
      for (const db of [srv.pool, client]) {
        const { rows } = await db.query("SHOW idle_in_transaction_session_timeout");
        expect(rows[0].idle_in_transaction_session_timeout).toBe("10s");
      }
    } finally {
      await client.end();
    }
  });

  it("an open write transaction in this database holds delivery back but loses nothing, and /metrics and the log name it", async () => {
    const { chat, sse } = await watcher();
    const blocker = await connectClient(srv.dbUrl, "pgchatd-test-blocker");
    try {
      await blocker.query("BEGIN");
      await blocker.query("SELECT pg_current_xact_id()");
      const pid = (await blocker.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
      const db = (await blocker.query("SELECT current_database() AS db")).rows[0].db as string;
      await srv.pool.query("UPDATE chats SET title = 'held' WHERE id = $1", [chat.id]);

      const series = `pgchatd_events_horizon_blocker{pid="${pid}",database="${db}",application="pgchatd-test-blocker"} 1`;
      await eventually(
        async () => ((await metrics()).includes(series) ? true : undefined),
        "/metrics names the open transaction",
      );
      await eventually(
        async () => ((await heldBackSeconds()) > 0 ? true : undefined),
        "/metrics reports how long delivery has waited",
      );
      const warning = await eventually(
        () =>
          srv.logLines.find(
            (l) => l.includes("held back by an open transaction") && l.includes(`"pid":${pid}`),
          ),
        "a warning naming the open transaction",
      );
      expect(JSON.parse(warning)).toMatchObject({
        level: 40,
        blocker: { pid, database: db, application: "pgchatd-test-blocker" },
      });
      // Held back, not lost: nothing yet, and the change arrives once the transaction ends.
      expect(sse.events.filter(titleChangeOf(chat.id, "held"))).toEqual([]);
      await blocker.query("COMMIT");
      await sse.waitFor(1, titleChangeOf(chat.id, "held"));
      await eventually(
        async () =>
          (await heldBackSeconds()) === 0 && !(await metrics()).includes(series) ? true : undefined,
        "/metrics clears once the transaction ended",
      );
      expect(sse.events.filter(titleChangeOf(chat.id, "held"))).toHaveLength(1);
    } finally {
      await blocker.end();
    }
  });

  it("an open write transaction in another database on the same server holds nothing back and loses nothing", async () => {
    const { chat, sse } = await watcher();
    const other = await connectClient((await emptyDatabase()).url, "pgchatd-test-other-database");
    try {
      await other.query("BEGIN");
      await other.query("SELECT pg_current_xact_id()");
      for (const title of ["one", "two"]) {
        await srv.pool.query("UPDATE chats SET title = $2 WHERE id = $1", [chat.id, title]);
        // Delivered while the other database's transaction is still open.
        await sse.waitFor(1, titleChangeOf(chat.id, title));
      }
      expect(await heldBackSeconds()).toBe(0);
      await other.query("COMMIT");
      await srv.pool.query("UPDATE chats SET title = 'three' WHERE id = $1", [chat.id]);
      await sse.waitFor(1, titleChangeOf(chat.id, "three"));
      const titles = sse.events
        .filter((e) => e.event === "title_change")
        .map((e) => (JSON.parse(e.data) as { chat: { id: string; title: string } }).chat)
        .filter((c) => c.id === chat.id)
        .map((c) => c.title);
      expect(titles).toEqual(["one", "two", "three"]);
    } finally {
      await other.end();
    }
  });
});

describe("wake-ups of the tailer", () => {
  it("a commit's NOTIFY makes the tailer read only until it has read that transaction, and a poke during a read adds none", async () => {
    // No safety poll during the test: every read counted is one a wake-up asked for.
    const quiet = await testServer({ safetyPollMs: 600_000 });
    try {
      const u = await gen.user(quiet.pool, { organizationIds: [orgId] });
      const token = await gen.apiKey(quiet.pool, u.id);
      const chat = await gen.chat(quiet.pool, { ownerId: u.id, organizationId: orgId });
      const sse = await openSse(`${quiet.url}/api/experimental/chats/watch`, {
        authorization: `Bearer ${token}`,
      });
      clients.push(sse);
      await quiet.pool.query("UPDATE chats SET title = 'once' WHERE id = $1", [chat.id]);
      const event = await sse.next(titleChangeOf(chat.id, "once"));
      const xid = BigInt(event.id.split(".")[0]!);
      const { tailer } = quiet.watch;
      await tailer.idle();
      const before = tailer.reads.total;

      tailer.wake(true, xid);
      await tailer.idle();
      expect(tailer.reads.total).toBe(before);

      // A later transaction, without the retry ladder an empty read would start.
      tailer.wake(false, xid + 1n);
      tailer.nudge();
      await tailer.idle();
      expect(tailer.reads.total).toBe(before + 1);
    } finally {
      await quiet.close();
    }
  });
});
