/*
 * Housekeeping (docs/operations.md "Housekeeping") on a large deployment. Prints numbers; never
 * passes or fails.
 *
 *   npm run bench -- housekeeping              1,000,000 chats over 1,000 owners, 200,000 eligible
 *   npm run bench -- housekeeping 200000       200,000 chats, 40,000 eligible
 *
 * Database: a scratch database on DATABASE_URL's server when set, else an embedded cluster in a
 * temporary directory; removed afterwards.
 *
 * Seeded with SQL (triggers off): N root chats with one message each; a fifth last active 40 to 60
 * days ago (the auto-archive threshold is 30 days), the rest within the last 20 days.
 * Then, in this process, the job itself (runHousekeeping) on a pool whose statements are counted:
 *   1. auto-archive runs until one finds nothing (1,000 roots per run): roots archived per second
 *      (the users below touch some idle chats first, which keeps those);
 *   2. retention, the clock moved 2 days ahead with retention at 1 day, until nothing is left:
 *      chats deleted per second.
 * Statements per batch: per auto-archive run (1,000 roots), per retention batch (500 candidates).
 * During both, 4 connections act for random owners as users do (pin and unpin one of their chats,
 * rename one): their latency (p50, p99, max) against the same load with no job running, so the
 * difference is what a user waits behind the job's locks.
 */
import { migrate } from "../src/db/migrate.ts";
import { connectClient, createPool, type Pool } from "../src/db/pool.ts";
import { purgeBatch, runHousekeeping } from "../src/jobs/housekeeping.ts";
import { createLogger } from "../src/log.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { defaultModelConfigId } from "../support/seed_chats.ts";
import { describeMachine, int, ms, table } from "./measure.ts";
import { percentile } from "./stats.ts";

const owners = 1_000;
const userConnections = 4;

/**
 * Counts the statements a pool sends: every one goes through one of its clients, counted as each
 * client connects (pool.query included, without counting it twice).
 */
function counted(pool: Pool): { pool: Pool; statements: () => number } {
  let n = 0;
  pool.on("connect", (client) => {
    const query = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: unknown }).query = (...a: unknown[]) => {
      n++;
      return query(...a);
    };
  });
  return { pool, statements: () => n };
}

/** Users acting until `stop` resolves; returns each action's latency in ms. */
async function users(url: string, chats: { id: string; owner: string }[], stop: Promise<void>) {
  const latencies: number[] = [];
  let done = false;
  void stop.then(() => {
    done = true;
  });
  await Promise.all(
    Array.from({ length: userConnections }, async (_, k) => {
      const client = await connectClient(url, `pgchatd-bench-user-${k}`);
      try {
        for (let i = k; !done; i += userConnections) {
          const c = chats[(i * 7919) % chats.length]!;
          const t0 = performance.now();
          try {
            await client.query("SELECT chat_set_pin($1, $2, 1)", [c.id, c.owner]);
            await client.query("SELECT chat_set_pin($1, $2, 0)", [c.id, c.owner]);
          } catch {
            // Archived or deleted by the job meanwhile: a user sees 400/404; the wait still counts.
          }
          await client.query("UPDATE chats SET title = title WHERE id = $1", [c.id]);
          latencies.push(performance.now() - t0);
        }
      } finally {
        await client.end();
      }
    }),
  );
  return latencies;
}

const row = (what: string, l: number[]) => {
  const sorted = [...l].sort((a, b) => a - b);
  return [
    what,
    int(l.length),
    ms(percentile(sorted, 50)),
    ms(percentile(sorted, 99)),
    ms(sorted.at(-1) ?? 0),
  ];
};

export async function benchHousekeeping(chatsArg?: string) {
  const n = chatsArg ? Number(chatsArg) : 1_000_000;
  if (!(n >= 10_000)) throw new Error("usage: npm run bench -- housekeeping [chats ≥ 10000]");
  const eligible = Math.floor(n / 5);
  await withScratchDatabase("pgchatd_bench_housekeeping", async (url, where) => {
    await migrate(url);
    const seed = await connectClient(url, "pgchatd-bench-seed");
    const t0 = performance.now();
    try {
      const model = await defaultModelConfigId(seed);
      await seed.query(
        `WITH o AS (INSERT INTO organizations (name) VALUES ('housekeeping-bench') RETURNING id),
           u AS (INSERT INTO users (username, name)
                 SELECT 'hk-' || g, 'HK ' || g FROM generate_series(1, ${owners}) g RETURNING id)
         INSERT INTO organization_members (organization_id, user_id) SELECT o.id, u.id FROM o, u`,
      );
      // Triggers off for the seed: events and rollups of a million inserts are not the subject.
      await seed.query("SET session_replication_role = replica");
      await seed.query(
        `INSERT INTO chats (owner_id, organization_id, last_model_config_id, title, created_at,
           updated_at)
         SELECT u.id, m.organization_id, $1, 'chat ' || g, t.at, t.at
         FROM generate_series(1, $2::int) g
         CROSS JOIN LATERAL (SELECT CASE WHEN g <= $3::int
           THEN now() - interval '40 days' - (g % 20) * interval '1 day'
           ELSE now() - (g % 20) * interval '1 day' END AS at) t
         JOIN users u ON u.username = 'hk-' || (1 + g % ${owners})
         JOIN organization_members m ON m.user_id = u.id`,
        [model, n, eligible],
      );
      await seed.query(
        `INSERT INTO chat_messages (chat_id, role, content, created_at)
         SELECT id, 'user', '[{"type":"text","text":"hello"}]', created_at FROM chats`,
      );
      await seed.query("SET session_replication_role = origin");
      await seed.query("VACUUM (ANALYZE) chats, chat_messages");
    } finally {
      await seed.end();
    }
    console.log(
      `housekeeping: ${int(n)} chats over ${int(owners)} owners, ${int(eligible)} idle for 40-60 days ` +
        `(threshold 30), seeded in ${ms((performance.now() - t0) / 1000)} s; ${where}; ${describeMachine()}`,
    );

    const admin = await connectClient(url, "pgchatd-bench-admin");
    const { rows: sample } = await admin.query<{ id: string; owner: string }>(
      "SELECT id, owner_id AS owner FROM chats ORDER BY md5(id::text) LIMIT 20000",
    );
    const logger = createLogger("warn");

    // Baseline: the users' actions with no job running, for as long as one would take roughly.
    const baseline = await users(url, sample, new Promise((r) => setTimeout(r, 5_000)));

    await admin.query(
      "UPDATE chat_housekeeping_config SET auto_archive_days = 30, retention_days = 0",
    );
    const job = counted(createPool({ connectionString: url, max: 4 }));
    let stop!: () => void;
    const stopped = new Promise<void>((r) => {
      stop = r;
    });
    const during = users(url, sample, stopped);
    const a0 = performance.now();
    let archived = 0;
    let archiveRuns = 0;
    for (;;) {
      const r = await runHousekeeping({ pool: job.pool, logger, auditRetentionDays: 0 });
      archiveRuns++;
      archived += r.autoArchivedRoots;
      // Users' touches can make a run archive fewer than its batch while more remain: done when a
      // run finds nothing.
      if (r.autoArchivedRoots === 0) break;
    }
    const archiveSeconds = (performance.now() - a0) / 1000;
    const archiveStatements = job.statements();
    stop();
    const archiveUsers = await during;

    // Retention: 2 days on, archived chats older than a day are deleted.
    const dbName = new URL(url).pathname.slice(1);
    await admin.query(
      `ALTER DATABASE ${dbName} SET pgchatd.clock_now = '${new Date(Date.now() + 2 * 86_400_000).toISOString()}'`,
    );
    await admin.query(
      "UPDATE chat_housekeeping_config SET auto_archive_days = 0, retention_days = 1",
    );
    const purgeJob = counted(createPool({ connectionString: url, max: 4 }));
    let stop2!: () => void;
    const stopped2 = new Promise<void>((r) => {
      stop2 = r;
    });
    const during2 = users(url, sample, stopped2);
    const p0 = performance.now();
    const purge = await runHousekeeping({ pool: purgeJob.pool, logger, auditRetentionDays: 0 });
    const purgeSeconds = (performance.now() - p0) / 1000;
    stop2();
    const purgeUsers = await during2;
    await job.pool.end();
    await purgeJob.pool.end();
    await admin.end();

    console.log(
      table([
        ["phase", "rows", "seconds", "rows/s", "statements", "statements/row", "statements/batch"],
        [
          `auto-archive (${archiveRuns} runs)`,
          int(archived),
          ms(archiveSeconds),
          int(archived / archiveSeconds),
          int(archiveStatements),
          (archiveStatements / Math.max(1, archived)).toFixed(2),
          (archiveStatements / archiveRuns).toFixed(1),
        ],
        [
          "retention (1 run)",
          int(purge.purgedChats),
          ms(purgeSeconds),
          int(purge.purgedChats / purgeSeconds),
          int(purgeJob.statements()),
          (purgeJob.statements() / Math.max(1, purge.purgedChats)).toFixed(2),
          (purgeJob.statements() / Math.max(1, Math.ceil(purge.purgedChats / purgeBatch))).toFixed(
            1,
          ),
        ],
      ]),
    );
    console.log(
      `\nusers' actions (pin, unpin, rename one of their chats; ${userConnections} connections), ms:`,
    );
    console.log(
      table([
        ["while", "actions", "p50", "p99", "max"],
        row("no job", baseline),
        row("auto-archive", archiveUsers),
        row("retention", purgeUsers),
      ]),
    );
  });
}
