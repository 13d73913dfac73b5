import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import os from "node:os";
import { Worker } from "node:worker_threads";
import type pg from "pg";
import { connectClient } from "../src/db/pool.ts";
import { insertAPIKey } from "../src/generated/api_keys.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { describeSeed, seedChats } from "../support/seed_chats.ts";
import { int, mark, ms, table } from "./measure.ts";
import { percentile } from "./stats.ts";
import {
  type BenchDatabase,
  cpuWindow,
  maxOf,
  mib,
  now,
  pct,
  quietCheck,
  quietest,
  rssMiBOf,
  scrapeMetrics,
  serverView,
  sleep,
  spawnServer,
  warmupSeconds,
} from "./watch_servers.ts";

/* Part 1 of `npm run bench -- watch` (bench/watch.ts): fan-out latency. */

/** Part 1 shape: each owner is watched by this many streams and owns this many seeded chats. */
const watchersPerOwner = 10;
const chatsPerOwner = 20;
const writerConnections = 8;
const fanoutSeconds = 10;
/** SSE connections each client thread opens at once (a burst of 10,000 would only queue). */
const connectConcurrency = 100;
const floorRuns = 2_000;
/** A delivery slower than this counts as late in the diagnosis of the tail. */
const lateMs = 250;

/** docs/operations.md "Change events": the fan-out's targets on this bench (2 cores). */
const targets = {
  p99At10kMs: 100,
  rssAt10kMiB: 400,
  p50At1kMs: 3,
  p99At1kMs: 20,
  p99At100Ms: 5,
  batchedVsOff: 0.8,
};

// ---------------------------------------------------------------------------------------------
// Part 1: fan-out latency

interface Owner {
  id: string;
  token: string;
  chats: string[];
}

/** Seeds `owners` owners (support/seed_chats.ts, 20 chats each) and gives each an API key. */
async function seedOwners(url: string, owners: number): Promise<Owner[]> {
  const client = await connectClient(url, "bench-watch-seed");
  try {
    // The seed's rows need no change events (no tailer is running yet).
    await client.query("SET pgchatd.events = 'off'");
    const seeded = await seedChats(client, {
      chats: owners * chatsPerOwner,
      owners,
      heavyChats: 0,
      progress: false,
    });
    console.log(
      `dataset: ${describeSeed(seeded)}; seeded in ${(seeded.ms / 1000).toFixed(1)} s ` +
        "(the heavy owner is empty and unused)",
    );
    // The server's runner refreshes stale pull-request statuses from the forge; the seeded ones
    // would be refreshed (and fail: no forge here) during the measurement.
    await client.query("UPDATE chat_diff_statuses SET stale_at = now() + interval '1 day'");
    const users = await client.query<{ id: string }>(
      `SELECT id FROM users WHERE username ~ '^owner-[0-9]+$'
       ORDER BY substr(username, 7)::int`,
    );
    const chats = await client.query<{ id: string; owner_id: string }>(
      "SELECT id, owner_id FROM chats WHERE NOT archived ORDER BY owner_id, id",
    );
    const byOwner = new Map<string, string[]>();
    for (const c of chats.rows) {
      const list = byOwner.get(c.owner_id) ?? [];
      list.push(c.id);
      byOwner.set(c.owner_id, list);
    }
    const out: Owner[] = [];
    for (const u of users.rows) {
      const tok = generateToken();
      await insertAPIKey(client, {
        id: tok.id,
        user_id: u.id,
        hashed_secret: tok.hashedSecret,
        lifetime_seconds: 86_400,
      });
      out.push({ id: u.id, token: tok.token, chats: byOwner.get(u.id) ?? [] });
    }
    return out;
  } finally {
    await client.end();
  }
}

/** Sequential LISTEN/NOTIFY round trips (ms): NOTIFY sent → notification received. */
async function notifyFloor(url: string): Promise<number[]> {
  const listener = await connectClient(url, "bench-watch-floor-listen");
  const notifier = await connectClient(url, "bench-watch-floor-notify");
  try {
    await listener.query("LISTEN bench_watch_floor");
    let arrived: ((t: number) => void) | undefined;
    listener.on("notification", () => arrived?.(now()));
    const out: number[] = [];
    for (let i = 0; i < floorRuns + 200; i++) {
      const got = new Promise<number>((r) => {
        arrived = r;
      });
      const t = now();
      await notifier.query(`NOTIFY bench_watch_floor, '${i}'`);
      const at = await got;
      if (i >= 200) out.push(at - t);
    }
    return out;
  } finally {
    await Promise.all([listener.end(), notifier.end()]);
  }
}

// The SSE clients, in worker threads so they do not share the writers' event loop. Each frame
// goes through eventsource-parser (the parser the tests' SSE client uses, so frames are read the
// way a browser reads them). A hand-split on "\n\n" would not be cheaper where it matters: this
// load is 10 frames per event (~50,000 in a run, whatever W), while W only adds idle sockets.
// The receive time is taken once per chunk, before parsing it.
const clientSource = `
const { parentPort, workerData } = require("node:worker_threads");
const http = require("node:http");
const { createParser } = require(workerData.parser);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const agent = new http.Agent({ keepAlive: false });
const reqs = [];
let closing = false;
const stats = { failed: 0, dropped: 0, other: 0, statuses: {} };
const watcher = [];
const xids = [];
const times = [];
function open(w) {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (ok) => {
      if (settled) return;
      settled = true;
      if (!ok) stats.failed++;
      resolve();
    };
    const req = http.get(
      {
        host: "127.0.0.1",
        port: workerData.port,
        path: "/api/experimental/chats/watch",
        agent,
        headers: { authorization: "Bearer " + w.token, accept: "text/event-stream" },
      },
      (res) => {
        stats.statuses[res.statusCode] = (stats.statuses[res.statusCode] || 0) + 1;
        if (res.statusCode !== 200) {
          res.resume();
          settle(false);
          return;
        }
        let at = 0;
        const parser = createParser({
          onEvent(m) {
            if (m.event === "title_change" && m.id) {
              watcher.push(w.index);
              xids.push(Number(m.id.slice(0, m.id.indexOf("."))));
              times.push(at);
            } else stats.other++;
          },
          // The server's first block ("id: <cursor>\\n: watching") follows the subscription.
          onComment(c) {
            if (c.includes("watching")) settle(true);
          },
        });
        res.setEncoding("utf8");
        res.on("data", (chunk) => {
          at = now();
          parser.feed(chunk);
        });
        res.on("close", () => {
          if (!closing) stats.dropped++;
          settle(false);
        });
      },
    );
    req.on("error", () => settle(false));
    reqs.push(req);
  });
}
parentPort.on("message", async (msg) => {
  if (msg === "open") {
    const t = now();
    let next = 0;
    const list = workerData.watchers;
    await Promise.all(
      Array.from({ length: workerData.concurrency }, async () => {
        while (next < list.length) await open(list[next++]);
      }),
    );
    parentPort.postMessage({ type: "open", ms: now() - t, failed: stats.failed });
  } else if (msg === "count") {
    parentPort.postMessage({ type: "count", n: xids.length });
  } else if (msg === "collect") {
    const w = Float64Array.from(watcher);
    const x = Float64Array.from(xids);
    const t = Float64Array.from(times);
    parentPort.postMessage(
      { type: "collect", watcher: w, xids: x, times: t, stats },
      [w.buffer, x.buffer, t.buffer],
    );
  } else if (msg === "close") {
    closing = true;
    for (const r of reqs) r.destroy();
    agent.destroy();
    parentPort.postMessage({ type: "close" });
  }
});
`;

interface ClientStats {
  failed: number;
  dropped: number;
  other: number;
  statuses: Record<string, number>;
}

/** One client thread and the replies it sends, by type. */
class ClientThread {
  private readonly worker: Worker;
  constructor(port: number, watchers: { index: number; token: string }[]) {
    this.worker = new Worker(clientSource, {
      eval: true,
      workerData: {
        port,
        watchers,
        concurrency: connectConcurrency,
        parser: createRequire(import.meta.url).resolve("eventsource-parser"),
      },
    });
  }
  ask<T>(msg: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: { type: string }) => {
        if (m.type !== msg) return;
        this.worker.off("message", onMessage);
        this.worker.off("error", reject);
        resolve(m as T);
      };
      this.worker.on("message", onMessage);
      this.worker.once("error", reject);
      this.worker.postMessage(msg);
    });
  }
  terminate() {
    return this.worker.terminate();
  }
}

interface Writes {
  xid: number[];
  sent: number[];
  ack: number[];
  owner: number[];
  /** Writes before this index are the warm-up. */
  measuredFrom: number;
  /** Start and end of the measured writes (ms, monotonic). */
  measuredStart: number;
  measuredEnd: number;
}

/**
 * Title updates at `rate` per second from `clients`, for warm-up plus measured seconds: write k is
 * due at start + k / rate (open loop: a writer that falls behind does not sleep until caught up).
 * `onMeasured` runs when the warm-up ends.
 */
async function runWrites(
  clients: pg.Client[],
  targets: { chat: string; owner: number }[],
  rate: number,
  onMeasured: () => void,
): Promise<Writes> {
  const total = Math.round(rate * (warmupSeconds + fanoutSeconds));
  const measuredFrom = Math.round(rate * warmupSeconds);
  const w: Writes = {
    xid: new Array(total),
    sent: new Array(total),
    ack: new Array(total),
    owner: new Array(total),
    measuredFrom,
    measuredStart: 0,
    measuredEnd: 0,
  };
  const start = now() + 10;
  let next = 0;
  // A title never written before: an UPDATE to the same title changes nothing and logs no event.
  const run = randomBytes(4).toString("hex");
  await Promise.all(
    clients.map(async (c) => {
      for (;;) {
        const k = next++;
        if (k >= total) return;
        const wait = start + (k * 1000) / rate - now();
        if (wait > 0) await sleep(wait);
        if (k === measuredFrom) {
          w.measuredStart = now();
          onMeasured();
        }
        const target = targets[k % targets.length]!;
        const sent = now();
        const r = await c.query<{ xid: string }>(
          "UPDATE chats SET title = $1 WHERE id = $2 RETURNING pg_current_xact_id()::text AS xid",
          [`watch bench ${run} ${k}`, target.chat],
        );
        w.ack[k] = now();
        w.sent[k] = sent;
        w.xid[k] = Number(r.rows[0]!.xid);
        w.owner[k] = target.owner;
      }
    }),
  );
  w.measuredEnd = now();
  return w;
}

/**
 * Database transactions so far, once the count has settled: a backend reports its own within a
 * second of going idle, or up to 10 s later when it reported less than a second before (the W
 * streams' openings would otherwise land in the measured window). Settled: under 20 more in a
 * second (the server's safety poll, horizon check and runner poll make a few each second).
 */
async function transactions(admin: pg.Client): Promise<number> {
  const read = async () => {
    const r = await admin.query<{ xacts: string }>(
      `SELECT xact_commit + xact_rollback AS xacts FROM pg_stat_database
       WHERE datname = current_database()`,
    );
    return Number(r.rows[0]!.xacts);
  };
  let last = await read();
  for (let i = 0; i < 12; i++) {
    await sleep(1_000);
    const count = await read();
    if (count - last < 20) return count;
    last = count;
  }
  return last;
}

/**
 * Postgres CPU (ms) by who caused it: the backends of the server (its pool, its LISTEN
 * connections: application_name pgchatd*), of the writers, and the rest (background processes,
 * this bench's own connections).
 */
async function postgresCpuByRole(admin: pg.Client, byPid: Map<number, number>) {
  const r = await admin.query<{ pid: number; application_name: string }>(
    "SELECT pid, application_name FROM pg_stat_activity",
  );
  const app = new Map(r.rows.map((x) => [x.pid, x.application_name]));
  const out = { server: 0, writers: 0, other: 0 };
  for (const [pid, ms] of byPid) {
    const name = app.get(pid) ?? "";
    if (name.startsWith("pgchatd")) out.server += ms;
    else if (name === "bench-watch-writer") out.writers += ms;
    else out.other += ms;
  }
  return out;
}

/** BENCH_PG_STATEMENTS=1: the statements that took the most time since the last call. */
async function printTopStatements(admin: pg.Client, label: string) {
  const r = await admin.query<{ calls: number; ms: string; plan: string; query: string }>(
    `SELECT calls, round((total_exec_time / NULLIF(calls, 0))::numeric, 3) AS ms,
       round((total_plan_time / NULLIF(plans, 0))::numeric, 3) AS plan,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
     FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 15`,
  );
  console.log(`\n${label}: costliest statements (calls, execution and planning ms per call)`);
  for (const x of r.rows) {
    console.log(
      `${String(x.calls).padStart(7)} ${String(x.ms).padStart(7)} ${String(x.plan).padStart(7)}  ${x.query}`,
    );
  }
  await admin.query("SELECT pg_stat_statements_reset()");
}

interface FanOutResult {
  watchers: number;
  owners: number;
  chats: number;
  openMs: number;
  openFailed: number;
  writeRate: number;
  writes: number;
  expected: number;
  received: number;
  lost: number;
  duplicates: number;
  misdelivered: number;
  unmatched: number;
  dropped: number;
  lat: number[];
  /** Latencies by the second of the measured window their write committed in. */
  bySecond: number[][];
  /**
   * Measured events with a delivery over lateMs: `whole` when even the event's first delivery
   * was late (it was read or rendered late), else only some streams got it late (socket writes
   * or client threads).
   */
  late: { whole: number; partial: number };
  latFromSent: number[];
  writeLat: number[];
  rssIdle: number;
  rssOpen: number;
  /** GET /metrics with the W streams open, before the writes: median ms. */
  metricsMs: number;
  /** The server's V8 heap in use and its memory outside the heap (MiB), with the W streams open. */
  heapUsed: number;
  external: number;
  view: ReturnType<typeof serverView>;
  cpu: ReturnType<ReturnType<typeof cpuWindow>["end"]>;
  /** Postgres CPU (ms) over the measured window, by who caused it. */
  pgCpu: { server: number; writers: number; other: number };
  /** The server's database transactions per write (warm-up included). */
  serverXactsPerEvent: number;
}

async function fanOutOnce(
  db: BenchDatabase,
  allOwners: Owner[],
  watchers: number,
  rate: number,
): Promise<FanOutResult> {
  const ownerCount = Math.ceil(watchers / watchersPerOwner);
  const owners = allOwners.slice(0, ownerCount);
  const watchersOf = owners.map((_, o) =>
    Math.min(watchersPerOwner, watchers - o * watchersPerOwner),
  );
  // Round robin over owners, then over each owner's chats: consecutive writes go to different
  // owners, and one chat is written again only after every other watched chat.
  const targets: { chat: string; owner: number }[] = [];
  for (let i = 0; i < chatsPerOwner; i++) {
    owners.forEach((o, oi) => {
      if (o.chats[i]) targets.push({ chat: o.chats[i]!, owner: oi });
    });
  }

  const server = await spawnServer(db.url, "trigger");
  const threads: ClientThread[] = [];
  const writers: pg.Client[] = [];
  const admin = await connectClient(db.url, "bench-watch-admin");
  try {
    await sleep(1000);
    const rssIdle = rssMiBOf(server.pid);
    const port = Number(new URL(server.url).port);
    const all = Array.from({ length: watchers }, (_, i) => ({
      index: i,
      token: owners[Math.floor(i / watchersPerOwner)]!.token,
    }));
    const threadCount = watchers >= 1_000 ? 2 : 1;
    for (let t = 0; t < threadCount; t++) {
      threads.push(
        new ClientThread(
          port,
          all.filter((_, i) => i % threadCount === t),
        ),
      );
    }
    const t0 = now();
    const opened = await Promise.all(
      threads.map((t) => t.ask<{ ms: number; failed: number }>("open")),
    );
    const openMs = now() - t0;
    const openFailed = opened.reduce((a, o) => a + o.failed, 0);
    await sleep(1000);
    const rssOpen = rssMiBOf(server.pid);
    // What a Prometheus scrape costs with W streams open (the median of 5, sequential).
    const scrapes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = now();
      await scrapeMetrics(server.url);
      scrapes.push(now() - t);
    }
    const metricsMs = percentile(scrapes, 50);
    if (process.env.BENCH_SERVER_HEAPSNAPSHOT) {
      process.kill(server.pid, "SIGUSR2");
      await sleep(Number(process.env.BENCH_SERVER_HEAPSNAPSHOT));
    }

    for (let i = 0; i < writerConnections; i++) {
      writers.push(await connectClient(db.url, "bench-watch-writer"));
    }
    // Scraped before the writes, not at the measured window's start: a scrape walks every open
    // handle and file descriptor of the server, which is not free at 10,000 streams. So the
    // event-loop delay and GC cover the warm-up too.
    const metricsAtStart = await scrapeMetrics(server.url);
    const xactsBefore = await transactions(admin);
    let window: ReturnType<typeof cpuWindow> | undefined;
    const writes = await runWrites(writers, targets, rate, () => {
      window = cpuWindow(server.pid, db.postmasterPid);
    });
    const cpu = window!.end();
    const pgCpu = await postgresCpuByRole(admin, cpu.postgresByPid);
    const view = serverView(metricsAtStart, await scrapeMetrics(server.url));
    if (process.env.BENCH_PG_STATEMENTS) await printTopStatements(admin, `W=${int(watchers)}`);
    // Less the writes themselves (autocommit: one each); this bench's own reads are a few.
    const serverXacts = (await transactions(admin)) - xactsBefore - writes.xid.length;

    // Drain: wait until every delivery arrived, or nothing arrived for 3 s.
    const expected = writes.owner.reduce((a, o) => a + watchersOf[o]!, 0);
    let last = -1;
    let lastChange = now();
    for (;;) {
      const counts = await Promise.all(threads.map((t) => t.ask<{ n: number }>("count")));
      const n = counts.reduce((a, c) => a + c.n, 0);
      if (n >= expected) break;
      if (n !== last) {
        last = n;
        lastChange = now();
      } else if (now() - lastChange > 3_000) break;
      await sleep(100);
    }

    const byXid = new Map<number, number>();
    for (let k = 0; k < writes.xid.length; k++) byXid.set(writes.xid[k]!, k);
    const seen = new Set<number>();
    const lat: number[] = [];
    const bySecond: number[][] = Array.from({ length: fanoutSeconds + 1 }, () => []);
    const firstLat = new Float64Array(writes.xid.length).fill(Number.POSITIVE_INFINITY);
    const lastLat = new Float64Array(writes.xid.length);
    const latFromSent: number[] = [];
    let duplicates = 0;
    let misdelivered = 0;
    let unmatched = 0;
    let dropped = 0;
    for (const t of threads) {
      const c = await t.ask<{
        watcher: Float64Array;
        xids: Float64Array;
        times: Float64Array;
        stats: ClientStats;
      }>("collect");
      dropped += c.stats.dropped;
      unmatched += c.stats.other;
      for (let i = 0; i < c.xids.length; i++) {
        const k = byXid.get(c.xids[i]!);
        const w = c.watcher[i]!;
        if (k === undefined) {
          unmatched++;
          continue;
        }
        if (Math.floor(w / watchersPerOwner) !== writes.owner[k]) {
          misdelivered++;
          continue;
        }
        const key = k * watchers + w;
        if (seen.has(key)) {
          duplicates++;
          continue;
        }
        seen.add(key);
        if (k >= writes.measuredFrom) {
          lat.push(c.times[i]! - writes.ack[k]!);
          const second = Math.floor((writes.ack[k]! - writes.measuredStart) / 1000);
          bySecond[Math.min(fanoutSeconds, Math.max(0, second))]!.push(
            c.times[i]! - writes.ack[k]!,
          );
          latFromSent.push(c.times[i]! - writes.sent[k]!);
          firstLat[k] = Math.min(firstLat[k]!, c.times[i]! - writes.ack[k]!);
          lastLat[k] = Math.max(lastLat[k]!, c.times[i]! - writes.ack[k]!);
        }
      }
    }
    const measuredWrites = writes.xid.length - writes.measuredFrom;
    const late = { whole: 0, partial: 0 };
    for (let k = writes.measuredFrom; k < writes.xid.length; k++) {
      if (lastLat[k]! > lateMs) late[firstLat[k]! > lateMs ? "whole" : "partial"]++;
    }
    return {
      watchers,
      owners: ownerCount,
      chats: targets.length,
      openMs,
      openFailed,
      writeRate: (measuredWrites / (writes.measuredEnd - writes.measuredStart)) * 1000,
      writes: writes.xid.length,
      expected,
      received: seen.size,
      lost: expected - seen.size,
      duplicates,
      misdelivered,
      unmatched,
      dropped,
      lat,
      bySecond,
      late,
      latFromSent,
      writeLat: writes.ack
        .slice(writes.measuredFrom)
        .map((a, i) => a - writes.sent[i + writes.measuredFrom]!),
      rssIdle,
      rssOpen,
      metricsMs,
      heapUsed: (metricsAtStart.get("nodejs_heap_size_used_bytes") ?? Number.NaN) / 2 ** 20,
      external: (metricsAtStart.get("nodejs_external_memory_bytes") ?? Number.NaN) / 2 ** 20,
      view,
      cpu,
      pgCpu,
      serverXactsPerEvent: serverXacts / writes.xid.length,
    };
  } finally {
    await admin.end();
    await Promise.all(writers.map((w) => w.end()));
    for (const t of threads) await t.ask("close").catch(() => {});
    await Promise.all(threads.map((t) => t.terminate()));
    await server.stop();
    if (server.logged.length) {
      console.log(
        `WARNING: at W=${watchers} the server logged ${server.logged.length} lines; the last:\n  ` +
          server.logged.slice(-5).join("\n  "),
      );
    }
  }
}

export async function fanOut(db: BenchDatabase, watcherCounts: number[], rate: number) {
  console.log("\n### Part 1: fan-out latency (commit → SSE frame received)");
  const maxOwners = Math.ceil(Math.max(...watcherCounts) / watchersPerOwner);
  const owners = await seedOwners(db.url, maxOwners);
  await quietCheck("part 1");
  if (process.env.BENCH_PG_STATEMENTS) {
    const c = await connectClient(db.url, "bench-watch-admin");
    await c.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    await c.query("SELECT pg_stat_statements_reset()");
    await c.end();
  }
  const floor = await notifyFloor(db.url);
  const floorP50 = percentile(floor, 50);
  console.log(
    `floor: bare LISTEN/NOTIFY round trip on this database (${int(floorRuns)} sequential, NOTIFY ` +
      `sent → received): p50 ${ms(floorP50)} ms, p99 ${ms(percentile(floor, 99))} ms`,
  );
  console.log(
    `load: ${rate} title updates/s from ${writerConnections} pg connections (autocommit UPDATE, ` +
      `the NOTIFY from the trigger) for ${warmupSeconds} s warm-up + ${fanoutSeconds} s measured; ` +
      `${watchersPerOwner} watchers per owner, so every event fans out to ${watchersPerOwner} streams`,
  );

  const results: (FanOutResult & { attempts: number })[] = [];
  for (const w of watcherCounts) {
    process.stderr.write(`part 1: ${int(w)} watchers ...\n`);
    await quietCheck(`part 1, ${int(w)} watchers`, false);
    results.push(
      await quietest(`part 1, ${int(w)} watchers`, () => fanOutOnce(db, owners, w, rate)),
    );
  }

  const target = (w: number, p50: number, p99: number) =>
    w >= 10_000
      ? `p99 ≤ ${targets.p99At10kMs} ms (10k) ${mark(p99 <= targets.p99At10kMs)}`
      : w === 1_000
        ? `p50 ≤ ${targets.p50At1kMs} ${mark(p50 <= targets.p50At1kMs)}, p99 ≤ ` +
          `${targets.p99At1kMs} ms (1k) ${mark(p99 <= targets.p99At1kMs)}`
        : w <= 100
          ? `p99 ≤ ${targets.p99At100Ms} ms (100) ${mark(p99 <= targets.p99At100Ms)}`
          : "";
  const latRows: string[][] = [
    [
      "watchers",
      "owners × watchers",
      "chats written",
      "writes/s",
      "deliveries (measured)",
      "commit→recv p50 / p99 / max",
      "target",
      "p50 / floor p50",
      "send→recv p50 / p99",
      "write p50 / p99",
    ],
  ];
  const lossRows: string[][] = [
    [
      "watchers",
      "expected (all writes)",
      "received",
      "lost",
      "duplicates",
      "misdelivered",
      "unmatched frames",
      "streams dropped",
      "open failed",
    ],
  ];
  const resRows: string[][] = [
    [
      "watchers",
      "open W streams",
      "server RSS idle",
      "with streams",
      "peak writing",
      "per stream",
      "V8 heap used / external",
      "server CPU",
      "Postgres CPU",
      "bench CPU",
      "machine busy",
      "outside",
      "loop delay max / p99",
      "GC major / all",
      "GET /metrics",
    ],
  ];
  const costRows: string[][] = [
    [
      "watchers",
      "events",
      "deliveries",
      "Postgres CPU / 1,000 events",
      "of it: the server's reads",
      "the writes",
      "other",
      "server xacts / event",
      "server CPU / 1,000 deliveries",
    ],
  ];
  for (const r of results) {
    const events = r.writeRate * (r.cpu.wallMs / 1000);
    const deliveries = r.lat.length;
    const perK = (cpuMs: number, n: number) => `${ms((cpuMs / n) * 1000)} ms`;
    const pgAll = r.pgCpu.server + r.pgCpu.writers + r.pgCpu.other;
    costRows.push([
      int(r.watchers),
      int(events),
      int(deliveries),
      perK(pgAll, events),
      perK(r.pgCpu.server, events),
      perK(r.pgCpu.writers, events),
      perK(r.pgCpu.other, events),
      r.serverXactsPerEvent.toFixed(2),
      perK((r.cpu.server / 100) * r.cpu.wallMs, deliveries),
    ]);
  }
  for (const r of results) {
    const p99 = percentile(r.lat, 99);
    const p50 = percentile(r.lat, 50);
    latRows.push([
      int(r.watchers),
      `${int(r.owners)} × ${watchersPerOwner}`,
      int(r.chats),
      int(r.writeRate),
      int(r.lat.length),
      `${ms(p50)} / ${ms(p99)} / ${ms(maxOf(r.lat))}`,
      target(r.watchers, p50, p99),
      `${(percentile(r.lat, 50) / floorP50).toFixed(1)}×`,
      `${ms(percentile(r.latFromSent, 50))} / ${ms(percentile(r.latFromSent, 99))}`,
      `${ms(percentile(r.writeLat, 50))} / ${ms(percentile(r.writeLat, 99))}`,
    ]);
    lossRows.push([
      int(r.watchers),
      int(r.expected),
      int(r.received),
      `${int(r.lost)} ${mark(r.lost === 0)}`,
      int(r.duplicates),
      `${int(r.misdelivered)} ${mark(r.misdelivered === 0)}`,
      int(r.unmatched),
      int(r.dropped),
      int(r.openFailed),
    ]);
    resRows.push([
      int(r.watchers),
      `${(r.openMs / 1000).toFixed(1)} s`,
      mib(r.rssIdle),
      r.watchers >= 10_000
        ? `${mib(r.rssOpen)} ${mark(r.rssOpen <= targets.rssAt10kMiB)}`
        : mib(r.rssOpen),
      r.watchers >= 10_000
        ? `${mib(r.cpu.peakRss)} ${mark(r.cpu.peakRss <= targets.rssAt10kMiB)}`
        : mib(r.cpu.peakRss),
      `${(((r.rssOpen - r.rssIdle) * 1024) / r.watchers).toFixed(0)} KiB`,
      `${mib(r.heapUsed)} / ${mib(r.external)}`,
      pct(r.cpu.server),
      pct(r.cpu.postgres),
      pct(r.cpu.bench),
      pct(r.cpu.machine),
      `${pct(r.cpu.outside)}${r.attempts > 1 ? ` (best of ${r.attempts})` : ""}`,
      `${ms(r.view.loopMaxMs)} / ${ms(r.view.loopP99Ms)} ms`,
      `${int(r.view.gcMajorMs)} / ${int(r.view.gcAllMs)} ms`,
      `${ms(r.metricsMs)} ms`,
    ]);
  }
  console.log(
    "\nLatency, ms (commit = the writer's COMMIT acknowledgement; send = before the UPDATE was " +
      "sent; write = the UPDATE's own round trip)",
  );
  console.log(table(latRows));
  console.log(
    "\ncommit→recv p99 / max (ms) by second of the run: a stall shows as one bad second, a " +
      "steady cost as all of them",
  );
  for (const r of results) {
    const cells = r.bySecond
      .filter((xs) => xs.length > 0)
      .map((xs) => `${ms(percentile(xs, 99))}/${ms(maxOf(xs))}`);
    console.log(`${int(r.watchers).padStart(6)}: ${cells.join("  ")}`);
  }
  console.log(
    `events with a delivery over ${lateMs} ms: ` +
      results
        .map(
          (r) =>
            `W=${int(r.watchers)}: ${r.late.whole + r.late.partial} (${r.late.whole} late to ` +
            `every stream: read or rendered late; ${r.late.partial} late to some: writes or clients)`,
        )
        .join("; "),
  );
  console.log("\nDelivery (warm-up writes included; lost and misdelivered must be 0)");
  console.log(table(lossRows));
  console.log(
    `\nResources during the measured ${fanoutSeconds} s (CPU in % of one core; machine: % of all ` +
      `${os.cpus().length} cores; bench = the clients and writers; outside = everything else; loop ` +
      "delay and GC: the server's own prom-client metrics over warm-up and window)",
  );
  console.log(table(resRows));
  console.log(
    "\nCost per event (measured window): Postgres CPU split by the backends that used it (the " +
      "server's pool and LISTEN connections; the writers' UPDATEs with their triggers and NOTIFY; " +
      "background processes and this bench); server xacts: the server's database transactions " +
      "per write (tailer reads, renders, runner, warm-up included)",
  );
  console.log(table(costRows));
}
