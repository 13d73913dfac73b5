import type { Pool } from "../db/index.ts";
import type { Forge } from "../forge/github.ts";
import { refreshClaimedReference } from "../forge/refresh.ts";
import { claimStaleChatDiffStatuses } from "../generated/chat_diff_statuses.ts";
import type { Secrets } from "../lib/secrets.ts";
import type { Logger } from "../log.ts";

/*
 * The pull-request status refresher (docs/sql.md "Pull-request status"). Every runner process
 * runs one: each claims a batch of stale references (chat_diff_statuses_claim: SKIP LOCKED, a
 * 5-minute crash lock), resolves them through the forge a few at a time, records each outcome,
 * and claims again until nothing is stale; then it sleeps a poll interval.
 */

/** References per claim: a refresher that dies strands at most this many for 5 minutes. */
export const refreshBatchSize = 20;
/** Forge requests in flight per process: enough to hide latency, few enough to be polite. */
export const refreshConcurrency = 4;
/** How often an idle refresher looks for stale references (the no-PR retry is 15 s). */
export const refreshPollMs = 5_000;

export interface DiffStatusRefresher {
  /** Refreshes every reference stale now; resolves with how many were refreshed. */
  runOnce(): Promise<number>;
  /** Stops polling; in-flight refreshes finish (each bounded by the forge's request timeout). */
  stop(): Promise<void>;
}

export function startDiffStatusRefresher(opts: {
  pool: Pool;
  forge: Forge;
  secrets?: Secrets | undefined;
  logger: Logger;
  pollMs?: number | undefined;
  batchSize?: number | undefined;
  concurrency?: number | undefined;
}): DiffStatusRefresher {
  const log = opts.logger.child({ component: "diff-status-refresher" });
  const batchSize = opts.batchSize ?? refreshBatchSize;
  const concurrency = opts.concurrency ?? refreshConcurrency;
  const deps = { db: opts.pool, forge: opts.forge, secrets: opts.secrets, logger: log };
  let stopped = false;
  let running: Promise<number> | undefined;

  async function drain(): Promise<number> {
    let total = 0;
    while (!stopped) {
      const claimed = await claimStaleChatDiffStatuses(opts.pool, { batch_size: batchSize });
      let next = 0;
      // A few workers over the batch: the batch's slowest forge answer bounds it, not their sum.
      const worker = async () => {
        while (next < claimed.length) {
          const row = claimed[next++]!;
          try {
            await refreshClaimedReference(deps, row);
            total++;
          } catch (err) {
            // The database failed: the claim's 5-minute lock hands the row back later.
            log.warn({ err, chat_id: row.chat_id }, "recording a pull-request status failed");
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, claimed.length) }, worker));
      if (claimed.length < batchSize) break;
    }
    return total;
  }

  // A drain already under way may have made its last claim before the caller's rows went stale:
  // wait for it, then drain again (callers arriving together share that one).
  const runOnce = async () => {
    await running?.catch(() => {});
    running ??= drain().finally(() => {
      running = undefined;
    });
    return running;
  };

  const tick = () => {
    if (stopped) return;
    runOnce()
      .catch((err) => log.warn({ err }, "claiming stale pull-request statuses failed"))
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, opts.pollMs ?? refreshPollMs).unref();
      });
  };
  // The first drain at once: references that went stale while no runner ran are due now.
  let timer: NodeJS.Timeout = setTimeout(tick, 0).unref();

  return {
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => {});
    },
  };
}
