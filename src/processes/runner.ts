import type { Config } from "../config.ts";
import type { Pool } from "../db/index.ts";
import { type DiffStatusRefresher, startDiffStatusRefresher } from "../jobs/chat_diff_statuses.ts";
import { type Housekeeping, startHousekeeping } from "../jobs/housekeeping.ts";
import type { Secrets } from "../lib/secrets.ts";
import type { Logger } from "../log.ts";
import { createModels, type ModelRouting, type Models } from "../models/index.ts";
import { Runner, type RunnerOptions } from "../runner/index.ts";
import { createCommitNotifier, createEphemeralPublisher } from "../watch/index.ts";
import { openConfigured, runnerSettings } from "./open.ts";

/*
 * The runner's composition root: `pgchatd runner` (startRunner), a server's own runner
 * (serve.ts) and the tests and benchmarks that run one (createRunner) build it here, so a runner
 * is wired the same way everywhere: its models from the secrets, its publishing and its wake-ups.
 */

export interface RunnerParts
  extends Omit<RunnerOptions, "models" | "publish" | "afterWrite" | "retry"> {
  /** Provider keys are opened with these (absent: only keyless providers work). */
  secrets?: Secrets | undefined;
  /** The process's models, when it has them already (a server shares its app's). */
  models?: Models | undefined;
  /** How model calls leave the process, for models built here; direct when absent. */
  modelRouting?: ModelRouting | undefined;
  publish?: RunnerOptions["publish"];
  afterWrite?: RunnerOptions["afterWrite"];
  retry?: RunnerOptions["retry"];
}

/** A Runner on `parts.pool`, not started. */
export function createRunner(parts: RunnerParts): Runner {
  const { secrets, models, modelRouting, ...options } = parts;
  return new Runner({
    ...options,
    models: models ?? createModels({ secrets, routing: modelRouting }),
  });
}

export interface RunningRunner {
  runner: Runner;
  refresher: DiffStatusRefresher;
  housekeeping: Housekeeping;
  close(): Promise<void>;
}

/**
 * `pgchatd runner`: opens the database and the secrets, and runs a runner without an HTTP
 * server. Its parts reach servers' streams through NOTIFY (createEphemeralPublisher), and in
 * batched mode its commits send the one NOTIFY per interval a server would.
 */
export async function startRunner(config: Config, logger: Logger): Promise<RunningRunner> {
  // Its id on the pool's sessions: chats its own transitions make pending (a queue head admitted
  // at a turn's end) choose it first, without a NOTIFY (chat_runner_choose).
  const workerId = crypto.randomUUID();
  const { secrets, database, forge } = await openConfigured(config, logger, workerId);
  const pool: Pool = database.pool;
  const notifier =
    config.eventsNotify === "batched" ? createCommitNotifier(pool, logger) : undefined;
  const runner = createRunner({
    workerId,
    pool,
    databaseUrl: database.url,
    logger,
    secrets,
    modelRouting: config.modelRouting,
    publish: createEphemeralPublisher(pool),
    afterWrite: notifier ? () => notifier.poke() : undefined,
    ...runnerSettings(config),
  });
  try {
    await runner.start();
  } catch (err) {
    notifier?.stop();
    await database.close();
    throw err;
  }
  // Every runner process refreshes pull-request statuses (src/jobs/chat_diff_statuses.ts).
  const refresher = startDiffStatusRefresher({ pool, forge, secrets, logger });
  // And housekeeping, one process at a time (src/jobs/housekeeping.ts).
  const housekeeping = startHousekeeping({
    pool,
    logger,
    auditRetentionDays: config.auditRetentionDays,
  });
  return {
    runner,
    refresher,
    housekeeping,
    async close() {
      try {
        await Promise.all([runner.stop(), refresher.stop(), housekeeping.stop()]);
      } finally {
        notifier?.stop();
        await database.close();
      }
    },
  };
}
