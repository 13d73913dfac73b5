/*
 * Change events under load (docs/operations.md "Change events", docs/api.md "Streams"): how fast a
 * committed change reaches many watch streams, and what each NOTIFY mode costs the writers. Prints
 * numbers next to the design's targets; never passes or fails.
 *
 *   npm run bench -- watch                  W = 100 and 1,000 watchers, 500 events/s
 *   npm run bench -- watch 10000            the same, plus W = 10,000
 *   npm run bench -- watch 100,1000 200     exactly W = 100 and 1,000, at 200 events/s
 *   BENCH_WATCH_PART=1 npm run bench -- watch      part 1 only (BENCH_WATCH_PART=2: part 2 only)
 *
 * Database: a scratch database on DATABASE_URL's server when set (it needs ~160 connections
 * free), else an embedded cluster in a temporary directory started with max_connections 400
 * (part 2 runs 10 servers and 100 idle listeners at once). Both are removed afterwards.
 *
 * Part 1, fan-out latency. A real server (`node --import tsx src/cli.ts serve`, i.e.
 * `tsx src/cli.ts serve`, PGCHATD_EVENTS_NOTIFY=trigger, its own process so its RSS and CPU are
 * read from /proc) and W SSE clients on GET /api/experimental/chats/watch over loopback, run from
 * two worker threads of this process, 10 per owner over W/10 owners (each seeded by
 * support/seed_chats.ts with 20 chats). 8 pg connections UPDATE the titles of the watched owners'
 * unarchived chats (round robin over owners, then chats) at E per second for 1 s of warm-up
 * and 10 s measured. Each UPDATE returns its transaction id, which is the xid of its
 * title_change event's SSE id "<xid>.<id>", so every delivery is matched to its write exactly
 * (the chat JSON in the frame may be a newer version, so the title could not be trusted).
 * Latency is commit → receive: from the write's COMMIT acknowledgement (taken when the writer's
 * `await` resumes; the true commit is a little earlier, so this may flatter by a fraction of a
 * write's own latency, printed too) to the arrival of the chunk holding the frame in a client
 * thread; both clocks are CLOCK_MONOTONIC (process.hrtime), the same in every thread. p50 / p99 /
 * max over all (event, watcher) deliveries of the measured writes; lost = expected deliveries
 * (writes × the owner's watchers) minus distinct ones received, and misdelivered = frames that
 * reached a watcher of another owner (both must be 0). Server RSS (idle, with W streams open,
 * peak while writing) and CPU (% of one core, from /proc/<pid>/stat) during the measured 10 s,
 * Postgres' CPU (the embedded postmaster and its children), this process's, the machine's busy
 * share and "outside": CPU used by anything else meanwhile (other work on the machine; a run with
 * more than 25% of a core outside is repeated, up to 3 times, and the quietest kept). The
 * floor: a bare LISTEN/NOTIFY round trip between two pg clients of this process on the same
 * database (NOTIFY sent → notification received), 2,000 sequential, p50 / p99; printed with the
 * ratio p50 / floor p50. To tell a stall from a steady cost: p99 / max by second of the run;
 * how many events had a delivery over 250 ms, split into late to every stream (the event was
 * read or rendered late) and late to some (socket writes or client threads); and the server's
 * own event-loop delay and GC time over warm-up and window (its /metrics, prom-client defaults).
 * Note that every event fans out to 10 streams whatever W is: W adds idle connections, E × 10
 * is the frame rate (5,000/s by default).
 *
 * Part 2, write throughput by NOTIFY mode. POST /api/experimental/chats/{chat}/messages from
 * autocannon (16 connections, a worker thread) against one server with PGCHATD_EVENTS_NOTIFY =
 * off (the triggers write nothing: the baseline), trigger, batched; each with 1 process listening
 * on the database (the loaded one), 10 (9 more servers that only run and LISTEN), and 1 + 100 idle
 * LISTEN connections (on another channel: Postgres wakes every listening
 * backend of the database on each NOTIFY, whatever its channel, and this keeps 100,000
 * notifications a second out of this process). Each request sends the first message of an idle
 * chat (a message row, the chat to pending; 3 events and, in trigger mode, 1 NOTIFY), taking the
 * next of 40,000 chats in turn: the queue limit (20 per busy chat) never answers 429, and every
 * request takes the same path. (The create-chat route would also do, but sends are the write a
 * busy installation makes most.) The chats are reset to idle (SQL, no events) and vacuumed after
 * the 1 s warm-up and after each 5 s run. Each mode × listeners runs 3 times, interleaved with
 * the other modes; prints the median req/s (and all three), its ratio to "off", latency, change
 * events and database transactions per request (xacts: every server's tailer reads included, from
 * pg_stat_database), and CPU of the loaded server, Postgres, the other servers and the machine.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";
import type pg from "pg";
import { EmbeddedPostgres } from "../src/db/embedded.ts";
import { migrate } from "../src/db/migrate.ts";
import { connectClient } from "../src/db/pool.ts";
import { insertAPIKey } from "../src/generated/api_keys.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { defaultModelConfigId, describeSeed, seedChats } from "../support/seed_chats.ts";
import { spawnPgchatd } from "../support/spawn.ts";
import { autocannon, describeMachine, type HttpRun, int, mark, ms, table } from "./measure.ts";
import { percentile } from "./stats.ts";

const _root = path.resolve(import.meta.dirname, "..");

/** Part 1 shape: each owner is watched by this many streams and owns this many seeded chats. */
const watchersPerOwner = 10;
const chatsPerOwner = 20;
const writerConnections = 8;
const warmupSeconds = 1;
const fanoutSeconds = 10;
/** SSE connections each client thread opens at once (a burst of 10,000 would only queue). */
const connectConcurrency = 100;
const floorRuns = 2_000;
/** A delivery slower than this counts as late in the diagnosis of the tail. */
const lateMs = 250;

/** Part 2 shape. */
const sendChats = 40_000;
const sendConnections = 16;
const sendSeconds = 5;
const extraServers = 9;
/** Runs per mode × listeners, interleaved (off, trigger, batched, off, ...); the median is shown. */
const sendRepeats = 3;
const idleListeners = 100;

const targets = { p99At10kMs: 100, p99At100Ms: 5, batchedVsOff: 0.8 };

/**
 * A run during which other processes used more than this (% of one core) is repeated, up to
 * `maxAttempts` times in all, and the quietest attempt is kept: the machine is shared.
 */
const noisyOutsidePct = 25;
const maxAttempts = 3;

/** CLOCK_MONOTONIC in ms: the same clock in every thread and process of the machine. */
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (msec: number) => new Promise((r) => setTimeout(r, msec));

export async function benchWatch(watchersArg?: string, rateArg?: string) {
  const explicit = watchersArg?.includes(",");
  const asked = (watchersArg ?? "").split(",").filter(Boolean).map(Number);
  const watcherCounts = explicit
    ? asked
    : [...new Set([100, 1_000, ...asked])].sort((a, b) => a - b);
  const rate = rateArg ? Number(rateArg) : 500;
  if (!watcherCounts.every((w) => Number.isInteger(w) && w >= 1) || !(rate > 0)) {
    throw new Error("usage: npm run bench -- watch [watchers[,watchers...]] [eventsPerSecond]");
  }
  const part = process.env.BENCH_WATCH_PART;
  await withBenchDatabase(async (db) => {
    console.log(
      `database: ${db.where}\nmachine: ${describeMachine()}, ${os.platform()} ${os.arch()}; ` +
        "Postgres, the servers and the load generators share these cores",
    );
    const t = performance.now();
    await migrate(db.url);
    console.log(`migrations: ${((performance.now() - t) / 1000).toFixed(1)} s`);
    if (part !== "2") await fanOut(db, watcherCounts, rate);
    if (part !== "1") await writeThroughput(db);
  });
}

// ---------------------------------------------------------------------------------------------
// The database and the server processes

interface BenchDatabase {
  url: string;
  where: string;
  /** The embedded postmaster, whose children's CPU is Postgres' CPU; unknown on DATABASE_URL. */
  postmasterPid: number | undefined;
}

/**
 * A scratch database (see withScratchDatabase), except that the embedded cluster is restarted
 * once with max_connections 400: part 2 holds 10 servers' pools and 100 idle listeners at once.
 */
async function withBenchDatabase(fn: (db: BenchDatabase) => Promise<void>) {
  if (process.env.DATABASE_URL) {
    return withScratchDatabase("pgchatd_bench_watch", (url, where) =>
      fn({ url, where, postmasterPid: undefined }),
    );
  }
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "pgchatd-bench-watch-"));
  await fsp.chmod(dir, 0o755);
  const opts = { pgDir: path.join(dir, "pg"), passwordFile: path.join(dir, "pw") };
  let cluster = await EmbeddedPostgres.start(opts);
  try {
    const admin = await connectClient(cluster.url(), "bench-watch-setup");
    await admin.query("ALTER SYSTEM SET max_connections = 400");
    await admin.end();
    await cluster.stop();
    cluster = await EmbeddedPostgres.start(opts);
    const name = `pgchatd_bench_watch_${randomBytes(4).toString("hex")}`;
    await cluster.ensureDatabase(name);
    await fn({
      url: cluster.url(name),
      where: "embedded cluster (default settings but max_connections 400)",
      postmasterPid: cluster.pid,
    });
  } finally {
    await cluster.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

interface ServerProcess {
  pid: number;
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  /** What the server wrote to stderr (LOG_LEVEL=warn: warnings and errors only). */
  logged: string[];
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
// A bench that throws must not leave servers behind.
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

/**
 * `pgchatd serve` as a child process (bin/pgchatd.js runs the CLI in its own process, so the pid
 * is the server's), on DATABASE_URL `dbUrl`, a free port, logging warnings only.
 */
async function spawnServer(
  dbUrl: string,
  mode: "trigger" | "batched" | "off",
): Promise<ServerProcess> {
  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), "pgchatd-bench-watch-server-"));
  // pino writes JSON lines to stdout; anything else (a crash) is in the process's output.
  const logged: string[] = [];
  const keep = (line: string) => {
    logged.push(line);
    if (logged.length > 200) logged.splice(0, logged.length - 200);
  };
  const proc = await spawnPgchatd("serve", {
    env: {
      ...process.env,
      DATABASE_URL: dbUrl,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "warn",
      PGCHATD_EVENTS_NOTIFY: mode,
      PGCHATD_DATA_DIR: dataDir,
    },
    onLine: (line) => {
      if (line.startsWith("{")) keep(line);
    },
    onSpawn: (child) => children.add(child),
    timeoutMs: 60_000,
  });
  const { child } = proc;
  const url = proc.ready;
  return {
    pid: child.pid!,
    url,
    logged,
    async stop() {
      await proc.stop();
      children.delete(child);
      await fsp.rm(dataDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// /proc readings

const clockTick = 100; // USER_HZ: /proc reports CPU time in 1/100 s on Linux.

/** CPU time (user + system, ms) a process has used; 0 when it is gone. */
function cpuMsOf(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / clockTick;
  } catch {
    return 0;
  }
}

/** Resident set size (MiB). */
function rssMiBOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU time (ms) of a postmaster and each of its children (backends, walwriter, ...), by pid.
 * Backends come and go (pools close idle connections), so a window sums per-pid differences.
 */
function postgresCpuByPid(postmasterPid: number): Map<number, number> {
  const out = new Map([[postmasterPid, cpuMsOf(postmasterPid)]]);
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === postmasterPid) {
        out.set(Number(entry), ((Number(f[11]) + Number(f[12])) * 1000) / clockTick);
      }
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** The machine's busy and total CPU time so far (ticks, all cores). */
function machineTicks(): { busy: number; total: number } {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3]! + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/**
 * CPU shares over a window (call `end()` when it closes), in % of one core: the server, Postgres,
 * this process (load generators), other pgchatd servers of the run, and `outside`: whatever else
 * kept the machine busy meanwhile (should be near 0; it is the noise in the numbers).
 */
function cpuWindow(
  serverPid: number | undefined,
  postmasterPid: number | undefined,
  extraPids: number[] = [],
) {
  const t0 = now();
  const m0 = machineTicks();
  const s0 = serverPid ? cpuMsOf(serverPid) : 0;
  // Per pid: CPU when first seen in the window, and when last seen (sampled, so a backend that
  // exits mid-window still counts up to its last sample).
  const pgFirst = postmasterPid ? postgresCpuByPid(postmasterPid) : new Map<number, number>();
  const pgLast = new Map(pgFirst);
  const samplePostgres = () => {
    if (!postmasterPid) return;
    for (const [pid, cpu] of postgresCpuByPid(postmasterPid)) {
      if (!pgFirst.has(pid)) pgFirst.set(pid, 0);
      pgLast.set(pid, cpu);
    }
  };
  const e0 = extraPids.reduce((a, pid) => a + cpuMsOf(pid), 0);
  const c0 = process.cpuUsage();
  let peakRss = serverPid ? rssMiBOf(serverPid) : Number.NaN;
  const sampler = setInterval(() => {
    if (serverPid) peakRss = Math.max(peakRss, rssMiBOf(serverPid));
    samplePostgres();
  }, 250);
  return {
    end() {
      clearInterval(sampler);
      const wall = now() - t0;
      const m1 = machineTicks();
      const c = process.cpuUsage(c0);
      if (serverPid) peakRss = Math.max(peakRss, rssMiBOf(serverPid));
      const share = (cpuMs: number) => (cpuMs / wall) * 100;
      const server = serverPid ? share(cpuMsOf(serverPid) - s0) : Number.NaN;
      samplePostgres();
      let pgMs = 0;
      for (const [pid, cpu] of pgLast) pgMs += cpu - pgFirst.get(pid)!;
      const postgres = postmasterPid ? share(pgMs) : Number.NaN;
      const extras = share(extraPids.reduce((a, pid) => a + cpuMsOf(pid), 0) - e0);
      const bench = share((c.user + c.system) / 1000);
      const machine = ((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * 100;
      const known = [server, postgres, extras, bench].filter((x) => !Number.isNaN(x));
      return {
        server,
        postgres,
        extras,
        bench,
        /** % of all cores. */
        machine,
        outside: postmasterPid
          ? Math.max(0, machine * os.cpus().length - known.reduce((a, b) => a + b, 0))
          : Number.NaN,
        peakRss,
      };
    },
  };
}

/**
 * Waits (up to 2 minutes) for a second in which the machine is under 15% busy, and says how busy
 * it was: other work on these 2 cores would show up as latency and lost throughput here.
 */
async function quietCheck(label: string, print = true) {
  const deadline = now() + 120_000;
  let busy = 100;
  while (now() < deadline) {
    const a = machineTicks();
    await sleep(1000);
    const b = machineTicks();
    busy = ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * 100;
    if (busy < 15) break;
  }
  if (!print) return;
  const load = os.loadavg().map((x) => x.toFixed(2));
  console.log(
    `machine before ${label}: ${busy.toFixed(0)}% busy over 1 s (load average ${load.join(" ")})` +
      (busy >= 15 ? " — WARNING: something else is running; numbers will be noisy" : ""),
  );
}

/** Runs `run` until an attempt is quiet (see noisyOutsidePct); the quietest attempt wins. */
async function quietest<T extends { cpu: { outside: number } }>(
  label: string,
  run: () => Promise<T>,
): Promise<T & { attempts: number }> {
  let best: T | undefined;
  let attempts = 0;
  while (attempts < maxAttempts) {
    attempts++;
    const r = await run();
    if (!best || r.cpu.outside < best.cpu.outside) best = r;
    if (!(r.cpu.outside > noisyOutsidePct)) break;
    process.stderr.write(
      `${label}: other processes used ${r.cpu.outside.toFixed(0)}% of a core; repeating\n`,
    );
    await quietCheck(`repeating ${label}`, false);
  }
  return { ...best!, attempts };
}

/** The largest value; NaN for none (a spread would overflow the stack on 100,000 values). */
function maxOf(xs: number[]): number {
  let m = Number.NaN;
  for (const x of xs) if (!(x <= m)) m = x;
  return m;
}

const pct = (x: number) => (Number.isNaN(x) ? "n/a" : `${x.toFixed(0)}%`);
const mib = (x: number) => (Number.isNaN(x) ? "n/a" : `${x.toFixed(0)} MiB`);

/** The server's /metrics as "name{labels}" → value. */
async function scrapeMetrics(baseUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/**
 * The server's own view of a window, from prom-client's default metrics: the event loop's
 * longest and p99 delay (its histogram restarts at every scrape, so `start` must be a scrape
 * taken when the window opens) and the time spent in garbage collection, major (mark-compact)
 * and all kinds.
 */
function serverView(start: Map<string, number>, end: Map<string, number>) {
  const gc = (kind: string) =>
    (end.get(`nodejs_gc_duration_seconds_sum{kind="${kind}"}`) ?? 0) -
    (start.get(`nodejs_gc_duration_seconds_sum{kind="${kind}"}`) ?? 0);
  return {
    loopMaxMs: (end.get("nodejs_eventloop_lag_max_seconds") ?? Number.NaN) * 1000,
    loopP99Ms: (end.get("nodejs_eventloop_lag_p99_seconds") ?? Number.NaN) * 1000,
    gcMajorMs: gc("major") * 1000,
    gcAllMs: (gc("major") + gc("minor") + gc("incremental") + gc("weakcb")) * 1000,
  };
}

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
  view: ReturnType<typeof serverView>;
  cpu: ReturnType<ReturnType<typeof cpuWindow>["end"]>;
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

    for (let i = 0; i < writerConnections; i++) {
      writers.push(await connectClient(db.url, "bench-watch-writer"));
    }
    // Scraped before the writes, not at the measured window's start: a scrape walks every open
    // handle and file descriptor of the server, which is not free at 10,000 streams. So the
    // event-loop delay and GC cover the warm-up too.
    const metricsAtStart = await scrapeMetrics(server.url);
    let window: ReturnType<typeof cpuWindow> | undefined;
    const writes = await runWrites(writers, targets, rate, () => {
      window = cpuWindow(server.pid, db.postmasterPid);
    });
    const cpu = window!.end();
    const view = serverView(metricsAtStart, await scrapeMetrics(server.url));

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
      view,
      cpu,
    };
  } finally {
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

async function fanOut(db: BenchDatabase, watcherCounts: number[], rate: number) {
  console.log("\n### Part 1: fan-out latency (commit → SSE frame received)");
  const maxOwners = Math.ceil(Math.max(...watcherCounts) / watchersPerOwner);
  const owners = await seedOwners(db.url, maxOwners);
  await quietCheck("part 1");
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

  const target = (w: number) =>
    w >= 10_000
      ? { ms: targets.p99At10kMs, label: `p99 ≤ ${targets.p99At10kMs} ms (10k)` }
      : w <= 100
        ? { ms: targets.p99At100Ms, label: `p99 ≤ ${targets.p99At100Ms} ms (100)` }
        : undefined;
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
      "server CPU",
      "Postgres CPU",
      "bench CPU",
      "machine busy",
      "outside",
      "loop delay max / p99",
      "GC major / all",
    ],
  ];
  for (const r of results) {
    const p99 = percentile(r.lat, 99);
    const t = target(r.watchers);
    latRows.push([
      int(r.watchers),
      `${int(r.owners)} × ${watchersPerOwner}`,
      int(r.chats),
      int(r.writeRate),
      int(r.lat.length),
      `${ms(percentile(r.lat, 50))} / ${ms(p99)} / ${ms(maxOf(r.lat))}`,
      t ? `${t.label} ${mark(p99 <= t.ms)}` : "",
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
      mib(r.rssOpen),
      mib(r.cpu.peakRss),
      `${(((r.rssOpen - r.rssIdle) * 1024) / r.watchers).toFixed(0)} KiB`,
      pct(r.cpu.server),
      pct(r.cpu.postgres),
      pct(r.cpu.bench),
      pct(r.cpu.machine),
      `${pct(r.cpu.outside)}${r.attempts > 1 ? ` (best of ${r.attempts})` : ""}`,
      `${ms(r.view.loopMaxMs)} / ${ms(r.view.loopP99Ms)} ms`,
      `${int(r.view.gcMajorMs)} / ${int(r.view.gcAllMs)} ms`,
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
}

// ---------------------------------------------------------------------------------------------
// Part 2: write throughput by NOTIFY mode

interface Sender {
  token: string;
  ownerId: string;
  paths: string[];
}

/** One more user with an API key and `sendChats` idle chats to send first messages to. */
async function seedSender(admin: pg.Client): Promise<Sender> {
  const modelId = await defaultModelConfigId(admin);
  const user = await admin.query<{ id: string }>(
    "INSERT INTO users (username, name) VALUES ('watch-bench-sender', 'Sender') RETURNING id",
  );
  const ownerId = user.rows[0]!.id;
  const org = await admin.query<{ id: string }>(
    "INSERT INTO organizations (name) VALUES ('watch-bench') RETURNING id",
  );
  await admin.query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)", [
    org.rows[0]!.id,
    ownerId,
  ]);
  const chats = await admin.query<{ id: string }>(
    `INSERT INTO chats (owner_id, organization_id, last_model_config_id, title, status)
     SELECT $1, $2, $3, 'send ' || g, 'completed' FROM generate_series(1, ${sendChats}) g
     RETURNING id`,
    [ownerId, org.rows[0]!.id, modelId],
  );
  const tok = generateToken();
  await insertAPIKey(admin, {
    id: tok.id,
    user_id: ownerId,
    hashed_secret: tok.hashedSecret,
    lifetime_seconds: 86_400,
  });
  return {
    token: tok.token,
    ownerId,
    paths: chats.rows.map((c) => `/api/experimental/chats/${c.id}/messages`),
  };
}

/** Every sender chat idle with an empty queue again (no events: the session's mode is off). */
async function resetChats(admin: pg.Client, ownerId: string) {
  await admin.query(
    `DELETE FROM chat_queued_messages q USING chats c WHERE q.chat_id = c.id AND c.owner_id = $1`,
    [ownerId],
  );
  await admin.query(
    "UPDATE chats SET status = 'completed' WHERE owner_id = $1 AND status <> 'completed'",
    [ownerId],
  );
  await admin.query("VACUUM (ANALYZE) chats, chat_messages, chat_queued_messages, chat_events");
}

type Mode = "off" | "trigger" | "batched";

interface SendRun {
  http: HttpRun;
  eventsPerRequest: number;
  /** Database transactions per request, tailer reads of every listening server included. */
  xactsPerRequest: number;
  cpu: ReturnType<ReturnType<typeof cpuWindow>["end"]>;
}

async function sendRun(
  db: BenchDatabase,
  admin: pg.Client,
  sender: Sender,
  mode: Mode,
  extraPids: number[],
) {
  const server = await spawnServer(db.url, mode);
  try {
    const url = `${server.url}/api/experimental/chats`;
    const load = {
      method: "POST" as const,
      body: JSON.stringify({ content: [{ type: "text", text: "hello from the watch bench" }] }),
      paths: sender.paths,
    };
    await autocannon(url, sender.token, sendConnections, warmupSeconds, load);
    await resetChats(admin, sender.ownerId);
    // Transactions of the whole database (requests, tailer reads of every server, notifier):
    // backends report them within about a second of going idle, hence the pauses.
    const counters = async () => {
      await sleep(1_500);
      const r = await admin.query<{ events: string; xacts: string }>(
        `SELECT (SELECT count(*) FROM chat_events) AS events,
           (SELECT xact_commit + xact_rollback FROM pg_stat_database
            WHERE datname = current_database()) AS xacts`,
      );
      return { events: Number(r.rows[0]!.events), xacts: Number(r.rows[0]!.xacts) };
    };
    const before = await counters();
    const window = cpuWindow(server.pid, db.postmasterPid, extraPids);
    const http = await autocannon(url, sender.token, sendConnections, sendSeconds, load);
    const cpu = window.end();
    const after = await counters();
    await resetChats(admin, sender.ownerId);
    if (server.logged.length) {
      console.log(
        `WARNING: the ${mode} server logged ${server.logged.length} lines; last:\n  ` +
          server.logged.slice(-3).join("\n  "),
      );
    }
    const requests = http.rps * sendSeconds;
    return {
      http,
      eventsPerRequest: (after.events - before.events) / requests,
      xactsPerRequest: (after.xacts - before.xacts) / requests,
      cpu,
    } satisfies SendRun;
  } finally {
    await server.stop();
  }
}

async function writeThroughput(db: BenchDatabase) {
  console.log("\n### Part 2: write throughput by NOTIFY mode");
  const admin = await connectClient(db.url, "bench-watch-admin");
  await admin.query("SET pgchatd.events = 'off'");
  const sender = await seedSender(admin);
  await admin.query("VACUUM (ANALYZE) chats, users, organization_members");
  const counts = await admin.query<{ chats: string; messages: string; events: string }>(
    `SELECT (SELECT count(*) FROM chats) AS chats, (SELECT count(*) FROM chat_messages) AS messages,
       (SELECT count(*) FROM chat_events) AS events`,
  );
  const c = counts.rows[0]!;
  console.log(
    `dataset: ${int(sendChats)} idle chats of one sender (each request takes the next; reset ` +
      `after each run); database holds ${int(Number(c.chats))} chats, ` +
      `${int(Number(c.messages))} messages, ${int(Number(c.events))} change events`,
  );
  console.log(
    `load: POST /api/experimental/chats/{chat}/messages, autocannon ${sendConnections} ` +
      `connections, ${warmupSeconds} s warm-up + ${sendSeconds} s per run; server pool 10 (default)`,
  );
  await quietCheck("part 2");

  const modes: Mode[] = ["off", "trigger", "batched"];
  const setups = [
    { label: "1 (the loaded server)", extra: 0, idle: 0 },
    { label: `${1 + extraServers} (+ ${extraServers} servers)`, extra: extraServers, idle: 0 },
    { label: `1 + ${idleListeners} idle LISTEN`, extra: 0, idle: idleListeners },
  ];
  const runs = new Map<string, (SendRun & { attempts: number })[]>();
  for (const s of setups) {
    const extras: ServerProcess[] = [];
    const idle: pg.Client[] = [];
    try {
      // The extra servers only write nothing and LISTEN; their mode does not matter.
      for (let i = 0; i < s.extra; i++) extras.push(await spawnServer(db.url, "trigger"));
      for (let i = 0; i < s.idle; i++) {
        const cl = await connectClient(db.url, "bench-watch-idle-listener");
        await cl.query("LISTEN bench_watch_idle");
        idle.push(cl);
      }
      const listening = await admin.query<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND " +
          "(application_name = 'pgchatd-listen' OR application_name = 'bench-watch-idle-listener')",
      );
      process.stderr.write(
        `part 2: ${s.label}; LISTEN connections besides the loaded server's: ${listening.rows[0]!.n}\n`,
      );
      for (let rep = 1; rep <= sendRepeats; rep++) {
        for (const m of modes) {
          process.stderr.write(`part 2: ${s.label}, ${m}, run ${rep} of ${sendRepeats} ...\n`);
          const pids = extras.map((e) => e.pid);
          const key = `${s.label}|${m}`;
          runs.set(key, [
            ...(runs.get(key) ?? []),
            await quietest(`part 2, ${s.label}, ${m}`, () => sendRun(db, admin, sender, m, pids)),
          ]);
        }
      }
    } finally {
      await Promise.all(idle.map((cl) => cl.end()));
      await Promise.all(extras.map((e) => e.stop()));
    }
  }
  await admin.end();
  // The run with the median req/s stands for its mode × listeners; the spread is printed too.
  const results = new Map<string, SendRun & { attempts: number; spread: string }>();
  for (const [key, list] of runs) {
    const sorted = [...list].sort((a, b) => a.http.rps - b.http.rps);
    const spread = sorted.map((r) => int(r.http.rps)).join(" / ");
    results.set(key, { ...sorted[Math.floor(sorted.length / 2)]!, spread });
  }

  const rows: string[][] = [
    [
      "listening processes",
      "mode",
      "req/s (median)",
      "runs",
      "vs off",
      "target",
      "p50 / p99 ms",
      "events/req",
      "xacts/req",
      "non-2xx",
      "server CPU",
      "Postgres CPU",
      "other servers",
      "bench",
      "machine",
      "outside",
    ],
  ];
  for (const s of setups) {
    const off = results.get(`${s.label}|off`)!.http.rps;
    for (const m of modes) {
      const r = results.get(`${s.label}|${m}`)!;
      const ratio = r.http.rps / off;
      rows.push([
        m === "off" ? s.label : "",
        m,
        int(r.http.rps),
        r.spread,
        m === "off" ? "1.00×" : `${ratio.toFixed(2)}×`,
        m === "batched" ? `≥ ${targets.batchedVsOff}× ${mark(ratio >= targets.batchedVsOff)}` : "",
        `${ms(r.http.p50)} / ${ms(r.http.p99)}`,
        r.eventsPerRequest.toFixed(2),
        r.xactsPerRequest.toFixed(1),
        r.http.non2xx || r.http.errors
          ? `${r.http.non2xx} (${JSON.stringify(r.http.statuses)}), ${r.http.errors} errors`
          : "0",
        pct(r.cpu.server),
        pct(r.cpu.postgres),
        s.extra ? pct(r.cpu.extras) : "",
        pct(r.cpu.bench),
        pct(r.cpu.machine),
        `${pct(r.cpu.outside)}${r.attempts > 1 ? ` (best of ${r.attempts})` : ""}`,
      ]);
    }
  }
  console.log(
    `\nPOST …/messages throughput (${sendRepeats} runs of ${sendSeconds} s each, the median run shown; ` +
      `CPU in % of one core, machine in % of all ${os.cpus().length}; bench = autocannon and this ` +
      "process; outside = everything else; xacts = database transactions, every server's tailer " +
      "reads included)",
  );
  console.log(table(rows, [1]));
  const flat = modes.map((m) => {
    const one = results.get(`${setups[0]!.label}|${m}`)!.http.rps;
    const ten = results.get(`${setups[1]!.label}|${m}`)!.http.rps;
    return `${m} ${(ten / one).toFixed(2)}×`;
  });
  console.log(`10 listening processes vs 1, same mode (flat = 1.00×): ${flat.join(", ")}`);
}
