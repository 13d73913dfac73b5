import type { Pool } from "../db/index.ts";
import { withTx } from "../db/index.ts";
import {
  autoArchiveChatRoot,
  insertChatAutoArchiveDigest,
  listChatAutoArchiveCandidates,
  listChatRetentionCandidates,
  markChatAutoArchiveDone,
  purgeArchivedChat,
  purgeAuditLogs,
  purgeExpiredForgeBackoffs,
  purgeNotifications,
  purgeUnlinkedChatFiles,
  tryLockHousekeeping,
  unlockHousekeeping,
} from "../generated/chat_housekeeping.ts";
import type { Logger } from "../log.ts";

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

export interface HousekeepingOptions {
  pool: Pool;
  logger: Logger;
  /** audit_logs entries older than this are deleted; 0 keeps them forever. */
  auditRetentionDays: number;
}

/** Roots archived per owner, each owner in one transaction with their digest. */
async function autoArchive(pool: Pool): Promise<{ roots: number; digests: number }> {
  const candidates = await listChatAutoArchiveCandidates(pool, { batch_size: autoArchiveBatch });
  // Fewer than a batch: every eligible root is among them, and none becomes eligible before the
  // next UTC midnight. Marked after they are archived, so a crash leaves today's work to the next
  // run.
  const complete = candidates.length < autoArchiveBatch;
  const byOwner = new Map<string, string[]>();
  for (const c of candidates)
    byOwner.set(c.owner_id!, [...(byOwner.get(c.owner_id!) ?? []), c.chat_id!]);
  let roots = 0;
  let digests = 0;
  for (const [ownerId, chatIds] of byOwner) {
    // The digest commits with the archives it lists: never one without the other.
    await withTx(pool, async (tx) => {
      const titles: string[] = [];
      for (const id of chatIds) {
        const { title } = await autoArchiveChatRoot(tx, { chat_id: id });
        if (title !== null) titles.push(title);
      }
      if (titles.length > 0) {
        await insertChatAutoArchiveDigest(tx, { owner_id: ownerId, titles });
        roots += titles.length;
        digests++;
      }
    });
  }
  if (complete) await markChatAutoArchiveDone(pool);
  return { roots, digests };
}

/** Calls `step` until it reports fewer than a full batch. */
async function drain(step: () => Promise<number>): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await step();
    total += n;
    if (n < purgeBatch) return total;
  }
}

async function retention(pool: Pool, auditRetentionDays: number) {
  let purgedChats = 0;
  for (;;) {
    const batch = await listChatRetentionCandidates(pool, { batch_size: purgeBatch });
    for (const c of batch)
      purgedChats += (await purgeArchivedChat(pool, { chat_id: c.chat_id! })).deleted ?? 0;
    if (batch.length < purgeBatch) break;
  }
  const purgedFiles = await drain(
    async () => (await purgeUnlinkedChatFiles(pool, { batch_size: purgeBatch })).deleted ?? 0,
  );
  const purgedAuditLogs =
    auditRetentionDays > 0
      ? await drain(
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
    const archived = await autoArchive(opts.pool);
    const purged = await retention(opts.pool, opts.auditRetentionDays);
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

export interface Housekeeping {
  runOnce(): Promise<HousekeepingResult>;
  stop(): Promise<void>;
}

/** Runs housekeeping every `intervalMs` (the first time after one interval) until stopped. */
export function startHousekeeping(
  opts: HousekeepingOptions & { intervalMs?: number | undefined },
): Housekeeping {
  const log = opts.logger.child({ component: "housekeeping" });
  let running: Promise<HousekeepingResult> | undefined;
  const runOnce = () => {
    running ??= runHousekeeping({ ...opts, logger: log }).finally(() => {
      running = undefined;
    });
    return running;
  };
  const timer = setInterval(() => {
    runOnce().catch((err) => log.warn({ err }, "housekeeping failed"));
  }, opts.intervalMs ?? housekeepingIntervalMs);
  timer.unref();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      await running?.catch(() => {});
    },
  };
}
