import type { Config } from "../config.ts";
import { openDatabase } from "../db/index.ts";
import { createGithubForge } from "../forge/github.ts";
import { openSecrets } from "../lib/secrets.ts";
import type { Logger } from "../log.ts";

/**
 * The secrets and the database that `pgchatd serve` and `pgchatd runner` open. `runnerId`: the id
 * of the runner this process will run, set on the pool's sessions (PoolOptions.runnerId).
 */
export async function openConfigured(config: Config, logger: Logger, runnerId?: string) {
  // Before the database: a damaged key file stops the start with nothing to clean up.
  const secrets = await openSecrets({ configuredKey: config.secretKey, dataDir: config.dataDir });
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    bootstrapToken: config.bootstrapToken,
    poolMax: config.dbPoolMax,
    eventsMode: config.eventsNotify,
    runnerId,
    logger,
  });
  return { secrets, database, forge: createGithubForge(config.github) };
}

/** The runner options PGCHATD_RUNNER_* set. */
export function runnerSettings(config: Config) {
  return {
    concurrency: config.runner.concurrency,
    heartbeatMs: config.runner.heartbeatMs,
    staleAfterMs: config.runner.staleAfterMs,
    pollMs: config.runner.pollMs,
  };
}
