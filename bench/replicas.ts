/*
 * Server replicas on one database (docs/operations.md "Scaling"). Prints numbers; never passes or
 * fails.
 *
 *   npm run bench -- replicas
 *   BENCH_REPLICAS_PART=1 npm run bench -- replicas     part 1 only (2: part 2 only)
 *   BENCH_PG_STATEMENTS=1 ...    part 1 also lists each run's costliest statements: calls, planning and execution ms per request (wall time: inflated when the machine is saturated)
 *   BENCH_REPLICAS_SETUPS="1;10" ...    part 1 runs only these setups (labels of the table, ";" between)
 *
 * Database: as `npm run bench -- watch` (bench/watch_servers.ts): a scratch database on
 * DATABASE_URL's server when set, else an embedded cluster with max_connections 400; removed
 * afterwards.
 *
 * Throughput of POST /api/experimental/chats/{chat}/messages with its turn (local/echo), for 1,
 * 2, 5 and 10 `pgchatd serve` processes on the database, each with its runner (32 turns at once)
 * and PGCHATD_EVENTS_NOTIFY=batched: one load generator (autocannon's 16 connections, a worker
 * thread of this process; one per server cost 4 times the CPU per request at ten, which the
 * servers then lacked) whose connections take the servers in turn, as a load balancer spreads
 * them, each request a first message to the next of 40,000 idle chats (bench/watch_writes.ts
 * seedSender); and once more with 10 processes and all the load on one of them (the other 9 idle:
 * what it costs to have them). A run is a warm-up, then 10 s of load, then the wait until every
 * turn it started has ended; the chats are reset to idle before the measured window (SQL, no
 * events). Each setup runs 3 times, interleaved; the run with the median req/s is shown, with all
 * three.
 *
 * The warm-up measures servers as they run in production, for hours: each loaded server alone
 * with the whole load for 5 s (V8 optimises a function after enough calls, and ten servers share
 * the requests: spread from the start, each would get a tenth of one server's warm-up and be
 * measured half cold), then 5 s of the spread load.
 *
 * Per run: req/s (2xx), turns/s (chats answered, load window plus the drain after it), latency,
 * database transactions per request (pg_stat_database, the drain included: the turns'
 * transactions, every server's tailer and notifier), the runners' claims per request and how many
 * found nothing (their /metrics, pgchatd_runner_claims_total), claim latency (a chat's `pending`
 * status_change event to its `running` one, on the database's clock: the two transactions'
 * starts), and CPU per request in ms: all servers together, and Postgres (the embedded cluster's
 * processes; n/a on DATABASE_URL). On this 2-core machine the processes share the cores with
 * Postgres and the load generator, so more processes cannot add throughput; the target is that
 * they cost little: 10 processes at least 0.8× of one (0.25× before runners were woken one at a
 * time, when every pending chat woke every runner).
 *
 * Part 2, a read replica (PGCHATD_READ_DATABASE_URL): an embedded primary and a hot standby
 * streaming from it (support/standby.ts; on DATABASE_URL too, since the standby is made from the
 * embedded cluster's files), 50,000 chats over 500 owners (support/seed_chats.ts). GET
 * /api/experimental/chats for a typical owner through the real app in this process, once reading
 * the primary and once the standby (src/db/replica.ts: each read waits for the standby to replay
 * what the primary had when it began), from autocannon's 8 connections for 5 s, without writes and
 * while a writer creates 200 chats a second on the primary (chat_create, 4 connections, another
 * owner). Replication lag is sampled every 50 ms from pg_stat_replication meanwhile (replay_lag,
 * and the bytes between the primary's WAL position and the standby's replay).
 */
import os from "node:os";
import type pg from "pg";
import { migrate } from "../src/db/migrate.ts";
import { connectClient, createPool, type Pool } from "../src/db/pool.ts";
import { ReadReplica } from "../src/db/replica.ts";
import { insertAPIKey } from "../src/generated/api_keys.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { createLogger } from "../src/log.ts";
import { createApp } from "../src/server/app.ts";
import { seedChats, seedOwner } from "../support/seed_chats.ts";
import { standbyCaughtUp, startReplicatedCluster } from "../support/standby.ts";
import { autocannon, describeMachine, int, mark, ms, serveLocal, table } from "./measure.ts";
import { percentile } from "./stats.ts";
import {
  type BenchDatabase,
  cpuWindow,
  quietCheck,
  type ServerProcess,
  scrapeMetrics,
  sleep,
  spawnServer,
  withBenchDatabase,
} from "./watch_servers.ts";
import { resetChats, type Sender, seedSender } from "./watch_writes.ts";

const connections = 16;
const seconds = 10;
const repeats = 3;
/** Each loaded server alone with the whole load, first (the header comment says why). */
const soloWarmupSeconds = 5;
/**
 * Then the spread load, right before the measured window: each server's pool then holds the
 * connections the spread load uses (a pool closes connections idle for 30 s, and the solo
 * warm-ups of ten servers take longer; a new backend plans every statement and fills its catalog
 * caches again).
 */
const spreadWarmupSeconds = 5;
const target = 0.8;
/** A drain longer than this means the runners fell behind for good: the run says so. */
const maxDrainMs = 60_000;

interface Setup {
  label: string;
  processes: number;
  /** Servers that receive requests (the first `loaded` ones). */
  loaded: number;
}

const setups: Setup[] = [
  { label: "1", processes: 1, loaded: 1 },
  { label: "2", processes: 2, loaded: 2 },
  { label: "5", processes: 5, loaded: 5 },
  { label: "10", processes: 10, loaded: 10 },
  { label: "10, load on 1", processes: 10, loaded: 1 },
];

interface Run {
  rps: number;
  turnsPerSecond: number;
  p50: number;
  p99: number;
  failed: number;
  xactsPerRequest: number;
  claimsPerRequest: number;
  emptyClaimsPerRequest: number;
  claimP50: number;
  claimP99: number;
  serverCpuMsPerRequest: number;
  postgresCpuMsPerRequest: number;
  drainMs: number;
}

async function claimsOf(servers: ServerProcess[]) {
  let all = 0;
  let empty = 0;
  for (const s of servers) {
    const m = await scrapeMetrics(s.url);
    const found = m.get('pgchatd_runner_claims_total{found="true"}') ?? 0;
    const none = m.get('pgchatd_runner_claims_total{found="false"}') ?? 0;
    all += found + none;
    empty += none;
  }
  return { all, empty };
}

/** Until no chat of the sender is pending or running (the turns the load started have ended). */
async function drain(admin: pg.Client, ownerId: string) {
  const t = performance.now();
  for (;;) {
    const r = await admin.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM chats WHERE owner_id = $1 AND status IN ('pending', 'running')",
      [ownerId],
    );
    if (r.rows[0]!.n === 0) return performance.now() - t;
    if (performance.now() - t > maxDrainMs) return Number.NaN;
    await sleep(50);
  }
}

async function xacts(admin: pg.Client) {
  // Backends report their counts within about a second of going idle.
  await sleep(1_500);
  const r = await admin.query<{ xacts: string }>(
    `SELECT xact_commit + xact_rollback AS xacts FROM pg_stat_database
     WHERE datname = current_database()`,
  );
  return Number(r.rows[0]!.xacts);
}

async function run(db: BenchDatabase, admin: pg.Client, sender: Sender, setup: Setup) {
  const servers: ServerProcess[] = [];
  try {
    for (let i = 0; i < setup.processes; i++) servers.push(await spawnServer(db.url, "batched"));
    const loaded = servers.slice(0, setup.loaded);
    const body = JSON.stringify({
      content: [{ type: "text", text: "hello from the replicas bench" }],
    });
    const send = (to: ServerProcess[], secs: number) =>
      autocannon(
        to.map((s) => `${s.url}/api/experimental/chats`),
        sender.token,
        connections,
        secs,
        { method: "POST", body, paths: sender.paths },
      );
    // The warm-up of the header comment. With 1 s alone each (and a load generator per server),
    // ten servers spent 14.3 ms of CPU per request; this way, 9.3 ms.
    for (const s of loaded) await send([s], soloWarmupSeconds);
    await drain(admin, sender.ownerId);
    await send(loaded, spreadWarmupSeconds);
    await drain(admin, sender.ownerId);
    await resetChats(admin, sender.ownerId);
    if (process.env.BENCH_PG_STATEMENTS) await admin.query("SELECT pg_stat_statements_reset()");
    const x0 = await xacts(admin);
    const c0 = await claimsOf(servers);
    const since = (await admin.query<{ now: string }>("SELECT now()::text AS now")).rows[0]!.now;
    const window = cpuWindow(
      undefined,
      db.postmasterPid,
      servers.map((s) => s.pid),
    );
    const http = await send(loaded, seconds);
    const drainMs = await drain(admin, sender.ownerId);
    const cpu = window.end();
    const c1 = await claimsOf(servers);
    const x1 = await xacts(admin);
    const answered = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM chat_events
       WHERE created_at >= $1::timestamptz AND kind = 'status_change'
         AND payload ->> 'status' = 'waiting' AND payload ->> 'previous_status' = 'running'`,
      [since],
    );
    const claimLatency = await admin.query<{ ms: number }>(
      `SELECT (extract(epoch FROM r.created_at - p.created_at) * 1000)::float8 AS ms
       FROM chat_events p
       CROSS JOIN LATERAL (
         SELECT e.created_at FROM chat_events e
         WHERE e.chat_id = p.chat_id AND e.kind = 'status_change'
           AND e.payload ->> 'status' = 'running' AND (e.xid, e.id) > (p.xid, p.id)
         ORDER BY e.xid, e.id LIMIT 1
       ) r
       WHERE p.created_at >= $1::timestamptz AND p.kind = 'status_change'
         AND p.payload ->> 'status' = 'pending'`,
      [since],
    );
    if (process.env.BENCH_PG_STATEMENTS) {
      const top = await admin.query<{ calls: string; plan: number; exec: number; query: string }>(
        `SELECT calls, total_plan_time AS plan, total_exec_time AS exec,
           left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query
         FROM pg_stat_statements ORDER BY total_plan_time + total_exec_time DESC LIMIT 15`,
      );
      const requests = http.rps * seconds;
      // What the processes send, whatever it costs: the statements a request and its turn make,
      // the claims, the notifier's batches, the polls and the heartbeats.
      const sent = await admin.query<{ calls: string }>(
        "SELECT sum(calls) AS calls FROM pg_stat_statements WHERE toplevel",
      );
      console.log(
        `\n${setup.label} processes: ${(Number(sent.rows[0]!.calls) / requests).toFixed(1)} statements sent per request; costliest statements (per request: calls, planning ms, execution ms)`,
      );
      for (const x of top.rows) {
        const per = (v: number) => (v / requests).toFixed(2).padStart(7);
        console.log(`${per(Number(x.calls))} ${per(x.plan)} ${per(x.exec)}  ${x.query}`);
      }
    }
    await resetChats(admin, sender.ownerId);
    for (const s of servers) {
      if (s.logged.length) {
        console.log(
          `WARNING: a server logged ${s.logged.length} lines; last:\n  ${s.logged.slice(-3).join("\n  ")}`,
        );
      }
    }
    const ok = http.rps * seconds;
    const samples = http.samples;
    const claimMs = claimLatency.rows.map((r) => r.ms);
    return {
      rps: ok / seconds,
      turnsPerSecond: answered.rows[0]!.n / ((seconds * 1000 + drainMs) / 1000),
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
      failed: http.non2xx + http.errors,
      xactsPerRequest: (x1 - x0) / ok,
      claimsPerRequest: (c1.all - c0.all) / ok,
      emptyClaimsPerRequest: (c1.empty - c0.empty) / ok,
      claimP50: percentile(claimMs, 50),
      claimP99: percentile(claimMs, 99),
      serverCpuMsPerRequest: (cpu.extras / 100) * (cpu.wallMs / ok),
      postgresCpuMsPerRequest: (cpu.postgres / 100) * (cpu.wallMs / ok),
      drainMs,
    } satisfies Run;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

export async function benchReplicas() {
  const part = process.env.BENCH_REPLICAS_PART;
  if (part !== "2") await processesPart();
  if (part !== "1") await readReplicaPart();
}

async function processesPart() {
  console.log("\n### Part 1: server processes on one database");
  await withBenchDatabase(async (db) => {
    console.log(
      `database: ${db.where}\nmachine: ${describeMachine()}, ${os.platform()} ${os.arch()}; ` +
        "Postgres, the servers and the load generator share these cores",
    );
    await migrate(db.url);
    const admin = await connectClient(db.url, "bench-replicas-admin");
    try {
      await admin.query("SET pgchatd.events = 'off'");
      if (process.env.BENCH_PG_STATEMENTS) {
        await admin.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
      }
      const sender = await seedSender(admin);
      await admin.query("VACUUM (ANALYZE) chats, users, organization_members");
      console.log(
        `load: POST …/messages to ${int(sender.paths.length)} idle chats in turn, autocannon ` +
          `${connections} connections taking the loaded servers in turn; warm-up ${soloWarmupSeconds} s ` +
          `per loaded server alone + ${spreadWarmupSeconds} s spread, then ${seconds} s measured and ` +
          "the drain of the turns; servers in batched mode, runner 32 turns each",
      );
      await quietCheck("the runs");
      const results = new Map<string, Run[]>();
      const only = process.env.BENCH_REPLICAS_SETUPS?.split(";");
      const chosen = only ? setups.filter((s) => only.includes(s.label)) : setups;
      for (let rep = 1; rep <= repeats; rep++) {
        for (const s of chosen) {
          process.stderr.write(`replicas: ${s.label} processes, run ${rep} of ${repeats} ...\n`);
          results.set(s.label, [...(results.get(s.label) ?? []), await run(db, admin, sender, s)]);
        }
      }
      const median = (runs: Run[]) =>
        [...runs].sort((a, b) => a.rps - b.rps)[Math.floor(runs.length / 2)]!;
      const one = results.has("1") ? median(results.get("1")!).rps : Number.NaN;
      const rows = [
        [
          "processes",
          "req/s (median)",
          "runs",
          "vs 1",
          "turns/s",
          "p50 / p99 ms",
          "failed",
          "xacts/req",
          "claims/req (empty)",
          "claim p50 / p99 ms",
          "servers CPU ms/req",
          "Postgres CPU ms/req",
          "drain ms",
        ],
      ];
      for (const s of chosen) {
        const runs = results.get(s.label)!;
        const r = median(runs);
        const ratio = r.rps / one;
        rows.push([
          s.label,
          int(r.rps),
          [...runs]
            .map((x) => int(x.rps))
            .sort()
            .join(" / "),
          s.label === "1"
            ? "1.00×"
            : `${ratio.toFixed(2)}×${s.processes === 10 ? ` ${mark(ratio >= target)} ≥ ${target}×` : ""}`,
          int(r.turnsPerSecond),
          `${ms(r.p50)} / ${ms(r.p99)}`,
          String(r.failed),
          r.xactsPerRequest.toFixed(1),
          `${r.claimsPerRequest.toFixed(2)} (${r.emptyClaimsPerRequest.toFixed(2)})`,
          `${ms(r.claimP50)} / ${ms(r.claimP99)}`,
          ms(r.serverCpuMsPerRequest),
          Number.isNaN(r.postgresCpuMsPerRequest) ? "n/a" : ms(r.postgresCpuMsPerRequest),
          Number.isNaN(r.drainMs) ? `> ${int(maxDrainMs)}` : int(r.drainMs),
        ]);
      }
      console.log(
        `\nPOST …/messages with its turn by number of server processes (${repeats} runs of ${seconds} s, the median run shown)`,
      );
      console.log(table(rows, [0]));
    } finally {
      await admin.end();
    }
  });
}

/** Part 2's shape. */
const replica = { chats: 50_000, owners: 500, readers: 8, writesPerSecond: 200, writers: 4 };

/** Creates chats on the primary at `perSecond` until `stop` is set. */
function writeLoad(pool: Pool, who: { owner: string; org: string }, perSecond: number) {
  let stopped = false;
  let next = 0;
  const started = performance.now();
  const done = Promise.all(
    Array.from({ length: replica.writers }, async () => {
      while (!stopped) {
        const i = next++;
        const wait = started + (i / perSecond) * 1000 - performance.now();
        if (wait > 0) await sleep(wait);
        if (stopped) return;
        await pool.query(
          `SELECT chat_create($1, $2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
             '[{"type": "text", "text": "replica bench"}]'::jsonb, NULL)`,
          [who.owner, who.org],
        );
      }
    }),
  );
  return {
    async stop() {
      stopped = true;
      await done;
      return next;
    },
  };
}

/** Samples replication lag every 50 ms until stopped: replay_lag (ms) and bytes behind. */
function lagSampler(primary: Pool) {
  const ms: number[] = [];
  const bytes: number[] = [];
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      const r = await primary.query<{ ms: number | null; bytes: string | null }>(
        `SELECT (extract(epoch FROM replay_lag) * 1000)::float8 AS ms,
           pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS bytes
         FROM pg_stat_replication LIMIT 1`,
      );
      const row = r.rows[0];
      if (row) {
        ms.push(row.ms ?? 0);
        bytes.push(Number(row.bytes ?? 0));
      }
      await sleep(50);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await done;
      return { ms, bytes };
    },
  };
}

async function readReplicaPart() {
  console.log("\n### Part 2: a read replica");
  const cluster = await startReplicatedCluster();
  const pools: Pool[] = [];
  let reads: ReadReplica | undefined;
  const servers: { close: () => Promise<void> }[] = [];
  try {
    await cluster.primary.ensureDatabase("pgchatd");
    const url = cluster.primary.url("pgchatd");
    await migrate(url);
    const client = await connectClient(url, "bench-replicas-seed");
    const seeded = await seedChats(client, { chats: replica.chats, owners: replica.owners });
    const tok = generateToken();
    await insertAPIKey(client, {
      id: tok.id,
      user_id: seeded.typicalOwnerId,
      hashed_secret: tok.hashedSecret,
      lifetime_seconds: 86_400,
    });
    await client.end();
    const primary = createPool({ connectionString: url, max: 10 });
    const writerPool = createPool({ connectionString: url, max: replica.writers });
    pools.push(primary, writerPool);
    const writer = await seedOwner(writerPool, "replica-writer");
    await standbyCaughtUp(cluster);
    const logger = createLogger("silent");
    reads = new ReadReplica({
      primary,
      url: cluster.standby.url("pgchatd"),
      poolMax: 10,
      logger,
    });
    const onPrimary = await serveLocal(createApp({ db: primary, logger }).fetch);
    const onStandby = await serveLocal(createApp({ db: primary, reads, logger }).fetch);
    servers.push(onPrimary, onStandby);
    console.log(
      `dataset: ${int(replica.chats)} chats over ${int(replica.owners)} owners; the typical ` +
        `owner's list (${seeded.typicalOwnerChats} chats), autocannon ${replica.readers} ` +
        `connections ${seconds} s; writes: chat_create at ${replica.writesPerSecond}/s`,
    );
    const rows = [
      [
        "reads on",
        "writes",
        "req/s",
        "p50 / p99 ms",
        "served by the standby",
        "replay lag p50 / p99 / max ms",
        "bytes behind p50 / max",
      ],
    ];
    for (const writing of [false, true]) {
      for (const [name, server] of [
        ["primary", onPrimary],
        ["standby", onStandby],
      ] as const) {
        const load = writing ? writeLoad(writerPool, writer, replica.writesPerSecond) : undefined;
        const lag = lagSampler(primary);
        const before = { ...reads.stats };
        const http = await autocannon(
          `http://127.0.0.1:${server.port}/api/experimental/chats`,
          tok.token,
          replica.readers,
          seconds,
        );
        const { ms: lagMs, bytes } = await lag.stop();
        await load?.stop();
        const standby = reads.stats.standby - before.standby;
        const all =
          standby +
          reads.stats.primaryLagging -
          before.primaryLagging +
          reads.stats.primaryUnavailable -
          before.primaryUnavailable;
        rows.push([
          name,
          writing ? `${replica.writesPerSecond}/s` : "none",
          int(http.rps),
          `${ms(http.p50)} / ${ms(http.p99)}`,
          name === "standby" ? `${int(standby)} of ${int(all)}` : "",
          `${ms(percentile(lagMs, 50))} / ${ms(percentile(lagMs, 99))} / ${ms(Math.max(...lagMs))}`,
          `${int(percentile(bytes, 50))} / ${int(Math.max(...bytes))}`,
        ]);
      }
    }
    console.log(table(rows, [0, 1]));
  } finally {
    for (const sv of servers) await sv.close();
    await reads?.close();
    for (const p of pools) await p.end();
    await cluster.stop();
  }
}
