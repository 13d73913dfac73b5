import type { Pool } from "../db/index.ts";
import { pruneChatEvents } from "../generated/chat_events.ts";
import { pruneChatStreamParts } from "../generated/chat_stream_parts.ts";
import type { Logger } from "../log.ts";
import { type Periodic, startPeriodic } from "./periodic.ts";

/** Rows per delete: each batch is its own short transaction, so pruning never blocks for long. */
const batchSize = 10_000;
/** How often to prune: the log holds at most retention plus five minutes of events. */
export const pruneIntervalMs = 5 * 60_000;

/** runOnce prunes everything older than the retention now; it resolves with the rows deleted. */
export type EventPruning = Periodic<number>;

/**
 * Deletes change events older than the retention (PGCHATD_EVENT_RETENTION_SECONDS, default 24 h),
 * on every replica (chat_events_prune lets one run at a time), and the stream parts no stream
 * needs any more. A stream resuming from a pruned cursor is told to resync.
 */
export function startEventPruning(opts: {
  pool: Pool;
  retentionSeconds: number;
  logger: Logger;
  intervalMs?: number;
}): EventPruning {
  const log = opts.logger.child({ component: "prune-events" });

  async function prune(): Promise<number> {
    let total = 0;
    for (;;) {
      const row = await pruneChatEvents(opts.pool, {
        retention_seconds: opts.retentionSeconds,
        batch_size: batchSize,
      });
      const deleted = row.deleted ?? 0;
      total += deleted;
      if (deleted < batchSize) break;
    }
    if (total > 0) log.info({ deleted: total }, "pruned change events");
    // The in-flight output of turns that ended or moved on (sql/queries/chat_stream_parts.sql).
    const parts = (await pruneChatStreamParts(opts.pool))?.deleted ?? 0;
    if (parts > 0) log.debug({ deleted: parts }, "pruned stream parts");
    return total;
  }

  return startPeriodic(prune, {
    intervalMs: opts.intervalMs ?? pruneIntervalMs,
    onError: (err) => log.warn({ err }, "pruning change events failed"),
  });
}
