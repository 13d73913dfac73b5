import type { Pool } from "../db/index.ts";
import {
  autoArchiveChatsOfOwner,
  getChatAutoArchiveCutoff,
  listChatAutoArchiveCandidates,
  listChatRetentionCandidates,
  markChatAutoArchiveDone,
  purgeArchivedChats,
  purgeAuditLogs,
  purgeExpiredForgeBackoffs,
  purgeNotifications,
  purgeUnlinkedChatFiles,
  tryLockHousekeeping,
  unlockHousekeeping,
} from "../generated/chat_housekeeping.ts";
import type { Logger } from "../log.ts";
import { type Periodic, startPeriodic } from "./periodic.ts";

/*
 * Housekeeping (docs/operations.md "Housekeeping"): auto-archive with a digest per owner, then
 * retention. Every runner process runs it every 10 minutes; an advisory lock lets one run at a
 * time across replicas (the others skip that tick). The rules are SQL
 * (sql/functions/chat_housekeeping.sql); this module only drives them in short transactions.
 */

/** How often each runner process tries: auto-archive acts once a UTC day, retention catches up. */
export const housekeepingIntervalMs = 10 * 60_000;
/**
 * Roots one run may auto-archive: a bound on the run, not on correctness (the next run continues;
 * an owner then gets a second digest that day).
 */
export const autoArchiveBatch = 1_000;
/** Rows read or deleted per statement: each is a short transaction, so no lock is held long. */
export const purgeBatch = 500;
/**
 * Archived chats deleted per transaction: the commit, not the delete, is most of a purge's cost
 * (1 chat per transaction: ~330 chats/s; see docs/operations.md "Housekeeping"), while the locks it
 * holds (those chats' families and rows, archived chats only) stay short.
 */
export const purgeChatsPerStatement = 50;
/** Notifications are a mailbox, not a record: older ones go. */
export const notificationRetentionDays = 90;

export interface HousekeepingResult {
  /** False when another process held the lock: this run did nothing. */
  ran: boolean;
  autoArchivedRoots: number;
  digests: number;
  purgedChats: number;
  purgedFiles: number;
  purgedAuditLogs: number;
  purgedNotifications: number;
}

/** Where a run is: `done` of `total` owners (auto-archive), or rows deleted so far (the rest). */
export interface HousekeepingProgress {
  phase: "auto-archive" | "chats" | "files" | "audit logs" | "notifications";
  done: number;
  total?: number;
}

export interface HousekeepingOptions {
  pool: Pool;
  logger: Logger;
  /** audit_logs entries older than this are deleted; 0 keeps them forever. */
  auditRetentionDays: number;
  /** Called after each owner and each batch (`pgchatd admin housekeeping --once` draws it). */
  progress?: (p: HousekeepingProgress) => void;
}

type Report = NonNullable<HousekeepingOptions["progress"]>;

/**
 * Today's auto-archive: the candidates, then each owner's roots with their digest in one
 * transaction (chat_auto_archive_owner). An owner whose transaction fails (a deadlock victim, a
 * lost connection) is retried by the next run; the others go on.
 */
async function autoArchive(
  pool: Pool,
  log: Logger,
  report: Report,
): Promise<{ roots: number; digests: number }> {
  const { cutoff } = await getChatAutoArchiveCutoff(pool);
  if (cutoff === null) return { roots: 0, digests: 0 };
  const candidates = await listChatAutoArchiveCandidates(pool, { batch_size: autoArchiveBatch });
  const byOwner = new Map<string, string[]>();
  for (const c of candidates) {
    byOwner.set(c.owner_id!, [...(byOwner.get(c.owner_id!) ?? []), c.chat_id!]);
  }
  let roots = 0;
  let digests = 0;
  let failed = false;
  let owners = 0;
  report({ phase: "auto-archive", done: 0, total: byOwner.size });
  for (const [ownerId, rootIds] of byOwner) {
    try {
      const { archived } = await autoArchiveChatsOfOwner(pool, {
        owner_id: ownerId,
        root_ids: rootIds,
      });
      roots += archived ?? 0;
      if ((archived ?? 0) > 0) digests++;
    } catch (err) {
      failed = true;
      log.warn({ err, owner_id: ownerId }, "auto-archiving an owner's chats failed");
    }
    report({ phase: "auto-archive", done: ++owners, total: byOwner.size });
  }
  // Fewer than a batch, all archived: every eligible root was among them, and none becomes
  // eligible before the next UTC midnight. Marked after the archives, so a crash leaves today's
  // work to the next run.
  if (candidates.length < autoArchiveBatch && !failed) {
    await markChatAutoArchiveDone(pool, { cutoff });
  }
  return { roots, digests };
}

/** Calls `step` until it reports fewer than a full batch. */
async function drain(
  phase: HousekeepingProgress["phase"],
  report: Report,
  step: () => Promise<number>,
): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await step();
    total += n;
    report({ phase, done: total });
    if (n < purgeBatch) return total;
  }
}

async function retention(pool: Pool, auditRetentionDays: number, report: Report) {
  let purgedChats = 0;
  for (;;) {
    const batch = await listChatRetentionCandidates(pool, { batch_size: purgeBatch });
    for (let i = 0; i < batch.length; i += purgeChatsPerStatement) {
      const chatIds = batch.slice(i, i + purgeChatsPerStatement).map((c) => c.chat_id!);
      purgedChats += (await purgeArchivedChats(pool, { chat_ids: chatIds })).deleted ?? 0;
      report({ phase: "chats", done: purgedChats });
    }
    if (batch.length < purgeBatch) break;
  }
  const purgedFiles = await drain(
    "files",
    report,
    async () => (await purgeUnlinkedChatFiles(pool, { batch_size: purgeBatch })).deleted ?? 0,
  );
  const purgedAuditLogs =
    auditRetentionDays > 0
      ? await drain(
          "audit logs",
          report,
          async () =>
            (
              await purgeAuditLogs(pool, {
                retention_days: auditRetentionDays,
                batch_size: purgeBatch,
              })
            ).deleted ?? 0,
        )
      : 0;
  const purgedNotifications = await drain(
    "notifications",
    report,
    async () =>
      (
        await purgeNotifications(pool, {
          retention_days: notificationRetentionDays,
          batch_size: purgeBatch,
        })
      ).deleted ?? 0,
  );
  await purgeExpiredForgeBackoffs(pool);
  return { purgedChats, purgedFiles, purgedAuditLogs, purgedNotifications };
}

/** One housekeeping run, unless another process is running one (then `ran: false`). */
export async function runHousekeeping(opts: HousekeepingOptions): Promise<HousekeepingResult> {
  const lockHolder = await opts.pool.connect();
  let locked = false;
  try {
    locked = (await tryLockHousekeeping(lockHolder)).locked === true;
    if (!locked) {
      return {
        ran: false,
        autoArchivedRoots: 0,
        digests: 0,
        purgedChats: 0,
        purgedFiles: 0,
        purgedAuditLogs: 0,
        purgedNotifications: 0,
      };
    }
    const report: Report = opts.progress ?? (() => {});
    const archived = await autoArchive(opts.pool, opts.logger, report);
    const purged = await retention(opts.pool, opts.auditRetentionDays, report);
    const result = {
      ran: true,
      autoArchivedRoots: archived.roots,
      digests: archived.digests,
      ...purged,
    };
    opts.logger.info({ housekeeping: result }, "housekeeping done");
    return result;
  } finally {
    if (locked) await unlockHousekeeping(lockHolder).catch(() => {});
    lockHolder.release();
  }
}

export type Housekeeping = Periodic<HousekeepingResult>;

/** Runs housekeeping every `intervalMs` (the first time after one interval) until stopped. */
export function startHousekeeping(
  opts: HousekeepingOptions & { intervalMs?: number | undefined },
): Housekeeping {
  const log = opts.logger.child({ component: "housekeeping" });
  return startPeriodic(() => runHousekeeping({ ...opts, logger: log }), {
    intervalMs: opts.intervalMs ?? housekeepingIntervalMs,
    onError: (err) => log.warn({ err }, "housekeeping failed"),
  });
}
