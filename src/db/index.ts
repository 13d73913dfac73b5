import fs from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../log.ts";
import { type BootstrapResult, bootstrap } from "./bootstrap.ts";
import { EmbeddedPostgres } from "./embedded.ts";
import { migrate } from "./migrate.ts";
import { createPool, type Pool, type PoolOptions } from "./pool.ts";

export type { Pool, PoolClient, PoolQueryable, Queryable } from "./pool.ts";
export { withTx } from "./pool.ts";

export interface DatabaseOptions {
  /** An existing server; when absent, the embedded cluster in `<dataDir>/pg` is used. */
  databaseUrl?: string | undefined;
  dataDir: string;
  bootstrapToken?: string | undefined;
  poolMax?: number;
  /** Sets pgchatd.events on the pool's sessions (see PoolOptions.eventsMode). */
  eventsMode?: PoolOptions["eventsMode"];
  /** Sets pgchatd.runner_id on the pool's sessions (see PoolOptions.runnerId). */
  runnerId?: string | undefined;
  logger: Logger;
}

export interface Database {
  pool: Pool;
  url: string;
  /** Set when this start bootstrapped an empty database. */
  bootstrapped: BootstrapResult | null;
  /** Closes the pool, then stops the embedded cluster if this process started it. */
  close(): Promise<void>;
}

/** Database name inside the embedded cluster. */
const embeddedDatabase = "pgchatd";

/**
 * Opens the database pgchatd runs on: starts the embedded cluster when no URL is given, applies
 * migrations and routines, bootstraps an empty database, and returns a pool.
 */
export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  const log = opts.logger;
  let embedded: EmbeddedPostgres | undefined;
  let url = opts.databaseUrl;
  if (!url) {
    await fs.mkdir(opts.dataDir, { recursive: true });
    const pgLog = log.child({ component: "postgres" });
    embedded = await EmbeddedPostgres.start({
      pgDir: path.join(opts.dataDir, "pg"),
      passwordFile: path.join(opts.dataDir, "pg-password"),
      onLog: (line) => pgLog.debug(line),
      onNotice: (message) => log.warn(message),
    });
    await embedded.ensureDatabase(embeddedDatabase);
    url = embedded.url(embeddedDatabase);
    log.info({ port: embedded.port, dir: embedded.dir }, "embedded PostgreSQL started");
  }
  try {
    let bootstrapped: BootstrapResult | null = null;
    await migrate(url, {
      log: (msg) => log.info(msg),
      afterMigrate: async (client) => {
        bootstrapped = await bootstrap(client, { bootstrapToken: opts.bootstrapToken });
      },
    });
    const pool = createPool({
      connectionString: url,
      max: opts.poolMax ?? 10,
      eventsMode: opts.eventsMode,
      runnerId: opts.runnerId,
    });
    return {
      pool,
      url,
      bootstrapped,
      close: async () => {
        await pool.end();
        await embedded?.stop();
      },
    };
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
}
