import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { migrate as runMigrations } from "postgres-migrations";
import { connectClient } from "./pool.ts";

export const sqlDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../sql");

/**
 * Serialises schema changes, routine re-application and bootstrap across every process that
 * starts against the same database, so two servers starting at once both come up.
 * (postgres-migrations takes its own lock too; it is re-entrant within our session.)
 */
const migrationLockKey = 7_315_004_211_983_002n;

export type Log = (msg: string) => void;

/**
 * How often a process waiting for another's migrations asks for the lock again. It asks with
 * pg_try_advisory_lock between pauses rather than waiting inside pg_advisory_lock: a backend
 * blocked in that call has a transaction open, and a migration that runs CREATE INDEX
 * CONCURRENTLY waits for every open transaction of the database, the waiters' included: a
 * deadlock between the migrating process and every process waiting for it.
 */
const migrationLockRetryMs = 50;

/** Runs `fn` while holding the session-level migration lock on `client`. */
export async function withMigrationLock<T>(client: pg.Client, fn: () => Promise<T>): Promise<T> {
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>(
      "SELECT pg_try_advisory_lock($1) AS locked",
      [migrationLockKey.toString()],
    );
    if (rows[0]?.locked) break;
    await new Promise((r) => setTimeout(r, migrationLockRetryMs));
  }
  try {
    return await fn();
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [migrationLockKey.toString()]);
  }
}

/**
 * Routine files applied before the rest of their folder, in this order: the guards every feature
 * calls. A SQL-language function's body is checked when it is created, so what it calls must
 * exist already; the order is stated here rather than left to file names.
 */
const routineFilesFirst = ["functions/shared.sql"];

async function sqlFiles(dir: string): Promise<string[]> {
  const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) =>
    n.endsWith(".sql"),
  );
  return names.sort().map((n) => path.join(dir, n));
}

/**
 * Re-applies every routine file: `sql/functions/shared.sql`, `sql/views/*.sql` (a SQL-language
 * function may read a view), the other `sql/functions/*.sql`, then `sql/triggers/*.sql`, in one
 * transaction. The files are idempotent (CREATE OR REPLACE) and hold each routine's current body,
 * so a routine is changed in exactly one place.
 */
export async function applyRoutines(client: pg.Client, log: Log = () => {}): Promise<void> {
  const first = routineFilesFirst.map((f) => path.join(sqlDir, f));
  const files = [
    ...first,
    ...(await sqlFiles(path.join(sqlDir, "views"))),
    ...(await sqlFiles(path.join(sqlDir, "functions"))).filter((f) => !first.includes(f)),
    ...(await sqlFiles(path.join(sqlDir, "triggers"))),
  ];
  await client.query("BEGIN");
  try {
    for (const file of files) {
      const text = await fs.readFile(file, "utf8");
      try {
        await client.query(text);
      } catch (err) {
        throw new Error(`${path.relative(sqlDir, file)}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  }
  log(`applied ${files.length} routine files`);
}

/**
 * Rebuilds the indexes an interrupted `CREATE INDEX CONCURRENTLY` left invalid (cancelled, timed
 * out, or the process stopped while it waited for old transactions). Such an index is never used
 * by the planner yet is kept up to date on every write, and a migration retried after the
 * interruption finds its name taken (`IF NOT EXISTS`) and is recorded as done: without this, the
 * queries it was built for would scan their tables from then on. REINDEX CONCURRENTLY lets writes
 * go on meanwhile, as the migration would have. Runs under the migration lock, so no other
 * process of ours is building one at the same time.
 */
export async function repairInvalidIndexes(
  client: pg.Client,
  log: Log = () => {},
): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name
     FROM pg_index i
     JOIN pg_class c ON c.oid = i.indexrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE NOT i.indisvalid AND n.nspname = current_schema()
     ORDER BY c.relname`,
  );
  for (const { name } of rows) {
    log(`rebuilding invalid index ${name} (an interrupted CREATE INDEX CONCURRENTLY)`);
    await client.query(`REINDEX INDEX CONCURRENTLY ${name}`);
  }
  return rows.map((r) => r.name);
}

/**
 * Brings the database at `connectionString` to the current schema: forward-only migrations from
 * `sql/schema`, indexes left invalid by an interrupted build rebuilt, then the routines.
 * `afterMigrate` runs under the same lock (bootstrap uses it).
 */
export async function migrate(
  connectionString: string,
  opts: { log?: Log; afterMigrate?: (client: pg.Client) => Promise<void> } = {},
): Promise<void> {
  const log = opts.log ?? (() => {});
  const client = await connectClient(connectionString, "pgchatd-migrate");
  try {
    await withMigrationLock(client, async () => {
      const applied = await runMigrations({ client }, path.join(sqlDir, "schema"), {
        logger: () => {},
      });
      if (applied.length > 0)
        log(`applied migrations: ${applied.map((m) => m.fileName).join(", ")}`);
      await repairInvalidIndexes(client, log);
      await applyRoutines(client, log);
      await opts.afterMigrate?.(client);
    });
  } finally {
    await client.end();
  }
}
