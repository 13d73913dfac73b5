import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setChatLabelsByID } from "../../src/generated/chats.ts";
import { streamKinds, watchKinds } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { newPool, testDb } from "../setup/db.ts";
import { type TestServer, testServer } from "../setup/server.ts";
import { openSse, type SseClient, type SseEvent } from "../setup/sse.ts";

/*
 * The loss test of the change-event design (docs/operations.md "Change events"): many writers,
 * commits out of id order, the LISTEN connection killed, a client resuming by cursor. Every
 * subscriber must see exactly the log, in cursor order: no gap, no duplicate.
 */

/** A chat stream names status_change `status` (followed by `error`, same id, on failure). */
const streamEventName = (kind: string) => (kind === "status_change" ? "status" : kind);

const writers = 8;
const totalChanges = 1000;
const users = 3;
const chatsPerWriter = 3;
/** Every this many changes a writer holds a transaction open across a pause. */
const longTxEvery = 12;
const deliveryDeadlineMs = 30_000;

/** A small seeded generator (mulberry32): the same mix of writes on every run. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true, or fails with `what` after `timeoutMs`. */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface Owner {
  id: string;
  token: string;
}

interface Chat {
  id: string;
  owner: Owner;
}

let ts: TestServer;
let db: Awaited<ReturnType<typeof testDb>>;
let writerPool: pg.Pool;
const clients: SseClient[] = [];

beforeAll(async () => {
  db = await testDb();
  ts = await testServer();
  writerPool = newPool(db.url, writers + 2);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await ts?.close();
});

/** A watch as the log says it must be: "<cursor> <kind>" after `after`, in cursor order. */
async function watchLog(ownerId: string, after: string) {
  const { rows } = await db.pool.query<{ cursor: string; kind: string }>(
    `SELECT xid::text || '.' || id AS cursor, kind::text
     FROM chat_events
     WHERE owner_id = $1 AND kind::text = ANY($2::text[]) AND (xid, id) > ($3::xid8, $4::bigint)
     ORDER BY xid, id`,
    [ownerId, [...watchKinds], ...after.split(".")],
  );
  return rows.map((r) => `${r.cursor} ${r.kind}`);
}

/** What a chat stream sent before its live events. */
interface Snapshot {
  /** The cursor of its last frame (the queue, the only snapshot frame with an id). */
  floor: string;
  /** How many events it took. */
  length: number;
  /** Messages it sent: their live `message` events are not sent again. */
  messageIds: Set<number>;
}

async function readSnapshot(stream: SseClient): Promise<Snapshot> {
  const end = await stream.next((e) => e.event === "queue_update" && e.id !== "");
  const length = stream.events.indexOf(end) + 1;
  const messages = stream.events.slice(0, length).filter((e) => e.event === "message");
  return {
    floor: end.id,
    length,
    messageIds: new Set(messages.map((e) => (JSON.parse(e.data) as { id: number }).id)),
  };
}

/** A chat stream's live events as the log says they must be, after its snapshot. */
async function streamLog(chatId: string, snapshot: Snapshot) {
  const { rows } = await db.pool.query<{ cursor: string; kind: string; message_id: number | null }>(
    `SELECT xid::text || '.' || id AS cursor, kind::text,
       (payload ->> 'message_id')::bigint AS message_id
     FROM chat_events
     WHERE chat_id = $1 AND kind::text = ANY($2::text[]) AND (xid, id) > ($3::xid8, $4::bigint)
     ORDER BY xid, id`,
    [chatId, [...streamKinds], ...snapshot.floor.split(".")],
  );
  return rows
    .filter((r) => r.message_id === null || !snapshot.messageIds.has(r.message_id))
    .map((r) => `${r.cursor} ${streamEventName(r.kind)}`);
}

/** The live events a chat stream received after its snapshot. */
function streamReceived(stream: SseClient, snapshot: Snapshot) {
  // An `error` block shares its status frame's id; the log has one row for both.
  return received(stream.events.slice(snapshot.length).filter((e) => e.event !== "error"));
}

const received = (events: SseEvent[]) => events.map((e) => `${e.id} ${e.event}`);

/**
 * The id a reconnecting EventSource sends: that of the last event it dispatched. Not
 * `lastEventId()`, which also takes `id:` lines from raw chunks: cut off in the middle of a frame,
 * it can name an event whose data never arrived, and resuming after that one would skip it.
 */
function resumeId(c: SseClient): string {
  return c.events.at(-1)?.id ?? c.lastEventId();
}

/**
 * The cursor of a watch stream's first block (id-only): where its subscriber started. Not the
 * last id seen, which may already be that of a live event after it.
 */
async function watchFloor(c: SseClient): Promise<string> {
  await until(() => c.ids.length > 0, "the watch stream's first cursor");
  return c.ids[0]!;
}

async function openWatch(owner: Owner, lastEventId?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${owner.token}` };
  if (lastEventId) headers["last-event-id"] = lastEventId;
  const c = await openSse(`${ts.url}/api/experimental/chats/watch`, headers);
  expect(c.status).toBe(200);
  clients.push(c);
  return c;
}

async function api(owner: Owner, method: string, path: string, body?: unknown) {
  const res = await fetch(`${ts.url}/api/experimental/chats${path}`, {
    method,
    headers: { authorization: `Bearer ${owner.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res;
}

/** The backends of this database's LISTEN connection (one, except while it reconnects). */
async function listenPids(): Promise<number[]> {
  const { rows } = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
     WHERE application_name = 'pgchatd-listen' AND datname = current_database()`,
  );
  return rows.map((r) => r.pid);
}

describe("change events under load", () => {
  it("delivers every event exactly once, in cursor order, to every subscriber through out-of-order commits, two LISTEN kills and a resume", async () => {
    const org = await gen.organization(db.pool);
    const owners: Owner[] = [];
    for (let i = 0; i < users; i++) {
      const u = await gen.user(db.pool, { organizationIds: [org.id] });
      owners.push({ id: u.id, token: await gen.apiKey(db.pool, u.id) });
    }
    // Each writer has its own chats (owners mixed), so writers rarely wait on row locks; only
    // the streamed chat is written by two writers, so its messages too commit out of order.
    const chatsOf: Chat[][] = [];
    for (let w = 0; w < writers; w++) {
      const mine: Chat[] = [];
      for (let j = 0; j < chatsPerWriter; j++) {
        const owner = owners[(w + j) % users]!;
        const row = await gen.chat(db.pool, { ownerId: owner.id, organizationId: org.id });
        mine.push({ id: row.id, owner });
      }
      chatsOf.push(mine);
    }
    const streamChat = chatsOf[0]![0]!;

    // Subscribers: one watch per owner, and a stream of one chat.
    const watches = await Promise.all(owners.map((o) => openWatch(o)));
    const floors = await Promise.all(watches.map(watchFloor));
    const stream = await openSse(`${ts.url}/api/experimental/chats/${streamChat.id}/stream`, {
      authorization: `Bearer ${streamChat.owner.token}`,
    });
    clients.push(stream);
    expect(stream.status).toBe(200);
    const snapshot = await readSnapshot(stream);

    // The burst. `changes` counts what the writers have done so far.
    let claimed = 0;
    let changes = 0;
    let outOfOrderCommits = 0;
    // Set when the burst fails: the other writers stop instead of writing into the next test.
    let abort = false;
    const claim = (n: number) => {
      if (abort || claimed + n > totalChanges) return false;
      claimed += n;
      return true;
    };
    const done = (n: number) => {
      changes += n;
    };
    const reached = (n: number) => until(() => changes >= n, `${n} changes`, 20_000);

    type Op = (c: pg.PoolClient, chat: Chat, n: number) => Promise<void>;
    const text = (s: string) => JSON.stringify([{ type: "text", text: s }]);
    const sqlOps: Op[] = [
      (c, chat, n) =>
        c.query("UPDATE chats SET title = $2 WHERE id = $1", [chat.id, `t${n}`]).then(() => {}),
      (c, chat, n) =>
        setChatLabelsByID(c, {
          id: chat.id,
          owner_id: chat.owner.id,
          labels: { n: String(n) },
        }).then(() => {}),
      (c, chat, n) => gen.chatMessage(c, chat.id, { text: `m${n}` }).then(() => {}),
      (c, chat) =>
        c
          .query(
            `UPDATE chats SET status = CASE WHEN status = 'running' THEN 'waiting'
               ELSE 'running' END::chat_status WHERE id = $1`,
            [chat.id],
          )
          .then(() => {}),
      (c, chat, n) => gen.diffStatus(c, chat.id, { additions: n }),
      async (c, chat, n) => {
        // Sent to a busy chat it queues (queue_update), to an idle one it is admitted (message,
        // status_change); a queued one is taken back at once so the queue never fills.
        const sent = await c.query<{ queued_message_id: string | null }>(
          "SELECT * FROM chat_send_message($1, $2, $3::jsonb, NULL, 'queue', NULL)",
          [chat.id, chat.owner.id, text(`q${n}`)],
        );
        const queued = sent.rows[0]?.queued_message_id;
        if (queued) await c.query("DELETE FROM chat_queued_messages WHERE id = $1", [queued]);
      },
    ];
    const httpOps: ((chat: Chat, n: number) => Promise<void>)[] = [
      (chat, n) => api(chat.owner, "PATCH", `/${chat.id}`, { title: `h${n}` }).then(() => {}),
      (chat, n) =>
        api(chat.owner, "PATCH", `/${chat.id}`, { labels: { h: String(n) } }).then(() => {}),
      async (chat) => {
        await api(chat.owner, "PATCH", `/${chat.id}`, { archived: true });
        await api(chat.owner, "PATCH", `/${chat.id}`, { archived: false });
      },
    ];

    async function writer(w: number) {
      const c = await writerPool.connect();
      try {
        const random = prng(w + 1);
        const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!;
        for (let k = 0; ; k++) {
          // Writers 0 and 1 often write the streamed chat, so its stream sees every stream kind.
          const chat = w < 2 && random() < 0.5 ? streamChat : pick(chatsOf[w]!);
          const n = w * 10_000 + k;
          if (k % longTxEvery === w % longTxEvery) {
            // A long transaction: its first event's id is drawn now, it commits ~200-500 ms
            // later, after other writers committed events with higher ids.
            if (!claim(2)) return;
            const other = w < 2 && random() < 0.5 ? streamChat : pick(chatsOf[w]!);
            await c.query("BEGIN");
            await pick(sqlOps)(c, chat, n);
            const first = await c.query<{ id: number }>(
              "SELECT min(id) AS id FROM chat_events WHERE xid = pg_current_xact_id()",
            );
            await sleep(200 + random() * 300);
            await pick(sqlOps)(c, other, n);
            const committed = await db.pool.query<{ id: number }>(
              "SELECT max(id) AS id FROM chat_events",
            );
            if (committed.rows[0]!.id > first.rows[0]!.id) outOfOrderCommits++;
            await c.query("COMMIT");
            done(2);
          } else {
            if (!claim(1)) return;
            // The shared chat is never archived: the other writer's next write would fail.
            if (random() < 0.25)
              await pick(chat === streamChat ? httpOps.slice(0, 2) : httpOps)(chat, n);
            else await pick(sqlOps)(c, chat, n);
            done(1);
          }
        }
      } catch (err) {
        await c.query("ROLLBACK").catch(() => {});
        throw err;
      } finally {
        c.release();
      }
    }

    // The LISTEN connection is killed twice; each time it must come back (the listener reconnects).
    async function killListen() {
      const before = await listenPids();
      expect(before).toHaveLength(1);
      const { rows } = await db.pool.query<{ killed: boolean }>(
        "SELECT pg_terminate_backend($1) AS killed",
        [before[0]],
      );
      expect(rows[0]!.killed).toBe(true);
      await until(
        async () => (await listenPids()).some((pid) => !before.includes(pid)),
        "the LISTEN connection to come back",
        15_000,
      );
    }
    let kills = 0;
    const killer = (async () => {
      await reached(totalChanges * 0.2);
      await killListen();
      kills++;
      await reached(totalChanges * 0.6);
      await killListen();
      kills++;
    })();

    // One watch client goes away mid-burst and comes back with its Last-Event-ID.
    const resumer = 1;
    const firstConnection = watches[resumer]!;
    let missedWhileAway = 0;
    const resumer$ = (async () => {
      await reached(totalChanges * 0.35);
      firstConnection.close();
      await firstConnection.ended;
      await reached(totalChanges * 0.45);
      const lastEventId = resumeId(firstConnection);
      missedWhileAway = (await watchLog(owners[resumer]!.id, lastEventId)).length;
      return openWatch(owners[resumer]!, lastEventId);
    })();

    const started = Date.now();
    const writing = Array.from({ length: writers }, (_, w) => writer(w));
    const [second] = await Promise.all([resumer$, killer, ...writing]).finally(async () => {
      abort = true;
      await Promise.allSettled(writing);
    });
    const burstMs = Date.now() - started;

    expect(changes).toBe(totalChanges);
    expect(kills).toBe(2);
    expect(outOfOrderCommits).toBeGreaterThan(0);
    expect(missedWhileAway).toBeGreaterThan(0);
    const logged = await db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM chat_events WHERE (xid, id) > ($1::xid8, $2::bigint)",
      floors[0]!.split("."),
    );
    expect(logged.rows[0]!.n).toBeGreaterThanOrEqual(totalChanges);

    // Every subscriber: exactly the log after where it started, as "<cursor> <event>".
    const expectations: { what: string; got: () => string[]; want: string[] }[] = [];
    for (const [i, o] of owners.entries()) {
      expectations.push({
        what: `watch of owner ${i}${i === resumer ? " (resumed)" : ""}`,
        got: () =>
          i === resumer
            ? [...received(firstConnection.events), ...received(second.events)]
            : received(watches[i]!.events),
        want: await watchLog(o.id, floors[i]!),
      });
    }
    expectations.push({
      what: "stream of one chat",
      got: () => streamReceived(stream, snapshot),
      want: await streamLog(streamChat.id, snapshot),
    });
    for (const e of expectations) expect(e.want.length, e.what).toBeGreaterThan(20);

    // Done when every subscriber has as many events as the log; then they must be the same.
    await until(
      () => expectations.every((e) => e.got().length >= e.want.length),
      "every subscriber to receive its events",
      deliveryDeadlineMs,
    ).catch(() => {});
    for (const e of expectations) expect(e.got(), e.what).toEqual(e.want);
    console.log(
      `loss test: ${changes} changes, ${logged.rows[0]!.n} events, ${outOfOrderCommits} ` +
        `out-of-order commits, ${missedWhileAway} events missed while away, burst ${burstMs} ms`,
    );
  });

  it("delivers a chat stream's message event even when a message with a higher id came before it in cursor order", async () => {
    const org = await gen.organization(db.pool);
    const u = await gen.user(db.pool, { organizationIds: [org.id] });
    const owner = { id: u.id, token: await gen.apiKey(db.pool, u.id) };
    const chat = await gen.chat(db.pool, { ownerId: u.id, organizationId: org.id });
    const elsewhere = await gen.chat(db.pool, { ownerId: u.id, organizationId: org.id });
    const stream = await openSse(`${ts.url}/api/experimental/chats/${chat.id}/stream`, {
      authorization: `Bearer ${owner.token}`,
    });
    clients.push(stream);
    const snapshot = await readSnapshot(stream);

    // `early` has its xid first (it wrote elsewhere), `late` inserts a message and commits, then
    // `early` inserts one: its message id is higher, its cursor lower. Both are in the log.
    const early = await writerPool.connect();
    const late = await writerPool.connect();
    try {
      await early.query("BEGIN");
      await early.query("UPDATE chats SET title = 'first' WHERE id = $1", [elsewhere.id]);
      const lower = await gen.chatMessage(late, chat.id, { text: "committed first" });
      const higher = await gen.chatMessage(early, chat.id, { text: "committed second" });
      await early.query("COMMIT");
      expect(higher.id).toBeGreaterThan(lower.id);
    } finally {
      early.release();
      late.release();
    }

    const want = await streamLog(chat.id, snapshot);
    expect(want).toHaveLength(2);
    const got = () => streamReceived(stream, snapshot);
    await until(() => got().length >= want.length, "both message events", 5_000).catch(() => {});
    expect(got()).toEqual(want);
  });
});
