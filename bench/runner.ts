/*
 * The chat runner (docs/operations.md "The runner") under load. Prints numbers; never passes or
 * fails.
 *
 *   npm run bench -- runner              1,000 chats, 2 runner processes; heartbeat at 10,000
 *   npm run bench -- runner 2000 20000   2,000 chats; heartbeat at 20,000 running chats
 *
 * Database: a scratch database on DATABASE_URL's server when set, else an embedded cluster in a
 * temporary directory; removed afterwards.
 *
 * Part 1, turns. Two `pgchatd runner` processes (`node --import tsx src/cli.ts runner`, default
 * settings: 32 turns at once each) on one database; this process creates N chats with the local
 * echo model through chat_create (the SQL behind POST /chats) from 8 connections, once as a burst
 * (all at once: the runners work through a backlog) and once paced at 100 chats/s (no backlog:
 * the latency of an idle system). Every chat must end `waiting` with exactly one echo reply.
 * create → waiting is measured on the database's clock: from chats.created_at (the creating
 * transaction's start) to the created_at of the chat's status_change event to waiting (the
 * finishing transaction's start). turns/s = N / (last waiting − first create). SQL statements per
 * turn are counted by the runners themselves (every statement they send, by query name, printed
 * by each when it stops), so they include the claims that came back empty (woken by NOTIFY
 * chat_events on every commit), the summary and the title.
 *
 * Part 2, heartbeats. One runner, in this process, with its concurrency raised to M, claims M
 * chats whose turns run long (`/sleep 600000`). Once all M run, it heartbeats 5 times (what its
 * timer does each PGCHATD_RUNNER_HEARTBEAT_MS: renew its chat_runners row, which holds all its
 * leases, read the state of its M turns, then the recovery pass): printed are the statements
 * each sent, the time of each, the WAL each heartbeat wrote, the recovery pass alone with M
 * leased chats, and the shutdown that stops the M turns and hands their leases back in one
 * statement. For comparison, the previous release's heartbeat (one UPDATE renewing
 * chats.heartbeat_at on all M rows) is run 5 times on the same chats: its time and WAL.
 */
import type { ChildProcess } from "node:child_process";
import path from "node:path";
import type pg from "pg";
import { migrate } from "../src/db/migrate.ts";
import { createPool } from "../src/db/pool.ts";
import { createLogger } from "../src/log.ts";
import { createRunner } from "../src/processes/runner.ts";
import type { RunnerStats } from "../src/runner/index.ts";
import { runRecoveryPass } from "../src/runner/recovery.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { seedOwner } from "../support/seed_chats.ts";
import { spawnPgchatd } from "../support/spawn.ts";
import { describeMachine, int, ms, table } from "./measure.ts";
import { mean, percentile } from "./stats.ts";

const _root = path.resolve(import.meta.dirname, "..");
const creators = 8;
const pacedPerSecond = 100;
/** Heartbeats observed in part 2. */
const observedIntervals = 5;

const sleep = (msec: number) => new Promise((r) => setTimeout(r, msec));

interface RunnerProcess {
  child: ChildProcess;
  /** Resolves with the stats the runner logs when it stops. */
  stopped: Promise<RunnerStats>;
}

async function spawnRunner(url: string): Promise<RunnerProcess> {
  let resolveStats!: (s: RunnerStats) => void;
  const stopped = new Promise<RunnerStats>((r) => {
    resolveStats = r;
  });
  const proc = await spawnPgchatd("runner", {
    env: { ...process.env, DATABASE_URL: url, LOG_LEVEL: "info", PGCHATD_EVENTS_NOTIFY: "trigger" },
    onLine: (line) => {
      if (line.includes('"runner stopped"')) {
        resolveStats((JSON.parse(line) as { stats: RunnerStats }).stats);
      }
    },
  });
  return { child: proc.child, stopped };
}

const createSql = `SELECT chat_create($1, $2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  $3::jsonb, NULL) AS id`;

/** Creates `n` chats from `creators` connections, at most `perSecond` a second. */
async function createChats(
  pool: pg.Pool,
  who: { owner: string; org: string },
  n: number,
  textOf: (i: number) => string,
  perSecond?: number,
): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: creators }, async () => {
      for (;;) {
        const i = next++;
        if (i >= n) return;
        if (perSecond) {
          const due = started + (i / perSecond) * 1000;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait);
        }
        const content = JSON.stringify([{ type: "text", text: textOf(i) }]);
        const r = await pool.query<{ id: string }>(createSql, [who.owner, who.org, content]);
        ids.push(r.rows[0]!.id);
      }
    }),
  );
  return ids;
}

interface TurnRun {
  n: number;
  seconds: number;
  latencies: number[];
  replies: number;
}

/** Waits until every chat is waiting, then reads create → waiting from the event log. */
async function collect(pool: pg.Pool, ids: string[]): Promise<TurnRun> {
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM chats WHERE id = ANY($1::uuid[]) AND status = 'waiting' AND worker_id IS NULL",
      [ids],
    );
    if (rows[0]!.n === ids.length) break;
    await sleep(50);
  }
  const { rows } = await pool.query<{ ms: number; created: number; done: number }>(
    `SELECT (extract(epoch FROM w.at - c.created_at) * 1000)::float8 AS ms,
       (extract(epoch FROM c.created_at) * 1000)::float8 AS created,
       (extract(epoch FROM w.at) * 1000)::float8 AS done
     FROM chats c
     CROSS JOIN LATERAL (
       SELECT min(e.created_at) AS at FROM chat_events e
       WHERE e.chat_id = c.id AND e.kind = 'status_change' AND e.payload ->> 'status' = 'waiting'
     ) w
     WHERE c.id = ANY($1::uuid[])`,
    [ids],
  );
  const replies = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM chat_messages
     WHERE chat_id = ANY($1::uuid[]) AND role = 'assistant' AND NOT deleted`,
    [ids],
  );
  const first = Math.min(...rows.map((r) => r.created));
  const last = Math.max(...rows.map((r) => r.done));
  return {
    n: ids.length,
    seconds: (last - first) / 1000,
    latencies: rows.map((r) => r.ms),
    replies: replies.rows[0]!.n,
  };
}

async function partTurns(url: string, pool: pg.Pool, chats: number) {
  const who = await seedOwner(pool, "turns");
  const runners = [await spawnRunner(url), await spawnRunner(url)];
  const runs: [string, TurnRun][] = [];
  try {
    const burst = await createChats(pool, who, chats, (i) => `burst ${i}`);
    runs.push(["burst", await collect(pool, burst)]);
    const paced = await createChats(pool, who, chats, (i) => `paced ${i}`, pacedPerSecond);
    runs.push([`paced ${pacedPerSecond}/s`, await collect(pool, paced)]);
  } finally {
    for (const r of runners) r.child.kill("SIGTERM");
  }
  const stats = await Promise.all(runners.map((r) => r.stopped));

  console.log(
    `\n### Part 1: ${int(chats)} chats per run through a local/echo turn, 2 runner processes\n`,
  );
  console.log(
    table([
      ["run", "turns/s", "create → waiting p50 / p99 / max", "mean", "replies"],
      ...runs.map(([name, r]) => [
        name,
        int(r.n / r.seconds),
        `${ms(percentile(r.latencies, 50))} / ${ms(percentile(r.latencies, 99))} / ${ms(Math.max(...r.latencies))} ms`,
        `${ms(mean(r.latencies))} ms`,
        `${int(r.replies)} of ${int(r.n)}`,
      ]),
    ]),
  );
  const turns = stats.reduce((n, s) => n + s.turns.completed, 0);
  const byQuery: Record<string, number> = {};
  for (const s of stats) {
    for (const [q, n] of Object.entries(s.statementsByQuery)) byQuery[q] = (byQuery[q] ?? 0) + n;
  }
  const total = Object.values(byQuery).reduce((a, b) => a + b, 0);
  console.log(
    `\nSQL statements per turn (both runners, ${int(turns)} completed turns, both runs): ${(total / turns).toFixed(2)}`,
  );
  console.log(
    table([
      ["query", "statements", "per turn"],
      ...Object.entries(byQuery)
        .sort((a, b) => b[1] - a[1])
        .map(([q, n]) => [q, int(n), (n / turns).toFixed(2)]),
    ]),
  );
  console.log(
    `turns per runner: ${stats.map((s) => int(s.turns.completed)).join(" and ")}; ` +
      `lost: ${stats.reduce((n, s) => n + s.turns.lost, 0)}`,
  );
}

async function partHeartbeat(url: string, pool: pg.Pool, running: number) {
  const who = await seedOwner(pool, "heartbeats");
  console.log(`\n### Part 2: heartbeats with ${int(running)} running chats, one runner\n`);
  let t = performance.now();
  const ids = await createChats(pool, who, running, () => "/sleep 600000");
  console.log(`created ${int(running)} chats in ${ms((performance.now() - t) / 1000)} s`);
  const runnerPool = createPool({ connectionString: url, max: 10 });
  const runner = createRunner({
    pool: runnerPool,
    databaseUrl: url,
    logger: createLogger("warn"),
    concurrency: running,
    claimBatch: 100,
    // Far off: part 2 runs the heartbeats itself, so it sees each one whole.
    heartbeatMs: 600_000,
    staleAfterMs: 1_200_000,
  });
  t = performance.now();
  await runner.start();
  while (runner.active < running) await sleep(100);
  console.log(
    `claimed and started ${int(running)} turns in ${ms((performance.now() - t) / 1000)} s`,
  );
  // The runner's own heartbeat and recovery, as its timer runs them (the timer is set far off so
  // that these are the only ones): statements and time per tick.
  const heartbeats = () =>
    (runner.stats.statementsByQuery.UpsertChatRunnerHeartbeat ?? 0) +
    (runner.stats.statementsByQuery.ListChatRunStatesByWorkerID ?? 0);
  const wal = async () =>
    (await pool.query<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn")).rows[0]!
      .lsn;
  const walSince = async (lsn: string) =>
    Number(
      (
        await pool.query<{ bytes: string }>(
          "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn) AS bytes",
          [lsn],
        )
      ).rows[0]!.bytes,
    );
  const perTick: number[] = [];
  const tickTimes: number[] = [];
  const tickWal: number[] = [];
  for (let i = 0; i < observedIntervals; i++) {
    const before = heartbeats();
    const lsn = await wal();
    t = performance.now();
    await runner.tick();
    tickTimes.push(performance.now() - t);
    tickWal.push(await walSince(lsn));
    perTick.push(heartbeats() - before);
  }
  const sent = perTick.reduce((a, b) => a + b, 0);

  const recoverTimes: number[] = [];
  for (let i = 0; i < 5; i++) {
    t = performance.now();
    await runRecoveryPass(pool, { staleAfterMs: 3_600_000, toolResultsTimeoutMs: 300_000 });
    recoverTimes.push(performance.now() - t);
  }
  // Last, so that the rows it leaves behind do not weigh on the figures above: the previous
  // release's heartbeat, on the same leased rows (chats.heartbeat_at, which this
  // release leaves NULL; its trigger fires as it did then).
  const oldTimes: number[] = [];
  const oldWal: number[] = [];
  for (let i = 0; i < observedIntervals; i++) {
    const lsn = await wal();
    t = performance.now();
    await pool.query(
      `UPDATE chats c SET heartbeat_at = now()
       FROM (SELECT l.id FROM chats l WHERE l.worker_id = $1 AND l.id = ANY ($2::uuid[])
             FOR NO KEY UPDATE SKIP LOCKED) locked
       WHERE c.id = locked.id`,
      [runner.workerId, ids],
    );
    oldTimes.push(performance.now() - t);
    oldWal.push(await walSince(lsn));
  }
  await pool.query("UPDATE chats SET heartbeat_at = NULL WHERE worker_id = $1", [runner.workerId]);
  t = performance.now();
  await runner.stop();
  const stopMs = performance.now() - t;
  const { rows } = await pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM chats WHERE id = ANY($1::uuid[]) AND status = 'pending' AND worker_id IS NULL",
    [ids],
  );
  await runnerPool.end();
  console.log(
    table([
      ["what", "figure"],
      [
        `heartbeats (heartbeat + recovery pass, as the timer runs them)`,
        `${observedIntervals}, sending ${sent} heartbeat statements (${perTick.join(", ")}: the runner's row and the read of its turns)`,
      ],
      [
        `one heartbeat + recovery pass over ${int(running)} leases, p50 / max`,
        `${ms(percentile(tickTimes, 50))} / ${ms(Math.max(...tickTimes))} ms, WAL ${int(percentile(tickWal, 50))} bytes (p50)`,
      ],
      [
        `the previous release's heartbeat: ${int(running)} chats' heartbeat_at, p50 / max`,
        `${ms(percentile(oldTimes, 50))} / ${ms(Math.max(...oldTimes))} ms, WAL ${int(percentile(oldWal, 50))} bytes (p50)`,
      ],
      [
        `recovery pass with ${int(running)} leased chats, p50 / max of 5`,
        `${ms(percentile(recoverTimes, 50))} / ${ms(Math.max(...recoverTimes))} ms`,
      ],
      ["shutdown: stop turns and hand all leases back", `${ms(stopMs)} ms`],
      ["chats back to pending after shutdown", `${int(rows[0]!.n)} of ${int(running)}`],
    ]),
  );
}

export async function benchRunner(chatsArg?: string, runningArg?: string) {
  const chats = Number(chatsArg ?? 1_000);
  const running = Number(runningArg ?? 10_000);
  console.log(describeMachine());
  await withScratchDatabase("pgchatd_bench_runner", async (url, where) => {
    console.log(`database: ${where}`);
    await migrate(url);
    const pool = createPool({ connectionString: url, max: creators + 2 });
    try {
      await partTurns(url, pool, chats);
      await partHeartbeat(url, pool, running);
    } finally {
      await pool.end();
    }
  });
}
