import type { PoolQueryable } from "../db/pool.ts";
import { deleteStaleChatRunners } from "../generated/chat_runners.ts";
import { listChatRecoveryCandidates, recoverChatRunByID } from "../generated/chat_runs.ts";

/*
 * The recovery pass (docs/operations.md "The runner"): stale leases, expired tool waits and stuck
 * queues, then the rows of dead runners that hold no lease any more. One statement lists the candidates; each is then recovered by chat_run_recover_chat in
 * its own transaction, so a chat whose recovery fails (a bug, a constraint, a row someone broke by
 * hand) costs only itself: the pass goes on with the others, and the next pass tries it again.
 */

export interface RecoveryOptions {
  staleAfterMs: number;
  toolResultsTimeoutMs: number;
  /** Candidates of each kind per listing. Bounds a listing's rows; a full one is listed again. */
  batchSize?: number;
}

export interface RecoveryPass {
  /** What was done, one entry per chat. */
  recovered: { chat_id: string; action: string }[];
  /** Chats whose recovery raised, with the error. */
  failed: { chat_id: string; err: unknown }[];
  /** Runners presumed dead whose rows were deleted (chat_runners). */
  reaped: string[];
}

/** 500 of each kind: a few hundred milliseconds of statements before the pass lists again. */
const defaultBatchSize = 500;

/** `db` is a pool: each chat's recovery must be a transaction of its own, not one shared client's. */
export async function runRecoveryPass(
  db: PoolQueryable,
  opts: RecoveryOptions,
): Promise<RecoveryPass> {
  const batchSize = opts.batchSize ?? defaultBatchSize;
  const args = {
    stale_after_seconds: opts.staleAfterMs / 1000,
    tool_results_timeout_seconds: opts.toolResultsTimeoutMs / 1000,
  };
  const pass: RecoveryPass = { recovered: [], failed: [], reaped: [] };
  /** Tried in this pass without being recovered (failed, or held by another transaction). */
  const tried = new Set<string>();
  for (;;) {
    const candidates = await listChatRecoveryCandidates(db, {
      ...args,
      skip_ids: [...tried],
      batch_size: batchSize,
    });
    for (const { id } of candidates) {
      try {
        const row = await recoverChatRunByID(db, { chat_id: id, ...args });
        if (row.action) pass.recovered.push({ chat_id: id, action: row.action });
        else tried.add(id);
      } catch (err) {
        tried.add(id);
        pass.failed.push({ chat_id: id, err });
      }
    }
    // A listing shorter than one batch held every candidate. A full one may have left some out:
    // list again. Each round shrinks what is left: every chat it listed was recovered (no longer
    // a candidate) or is skipped from now on.
    if (candidates.length < batchSize) break;
  }
  const reaped = await deleteStaleChatRunners(db, {
    stale_after_seconds: args.stale_after_seconds,
  });
  pass.reaped = reaped.map((r) => r.id);
  return pass;
}
