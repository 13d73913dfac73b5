import type { Logger } from "../log.ts";
import { createPool, type Pool, type PoolQueryable } from "./pool.ts";

/*
 * Reads on a streaming-replication standby (PGCHATD_READ_DATABASE_URL, docs/operations.md
 * "Scaling"), with read-your-writes: a read is served by the standby only once it has replayed
 * every write the primary had when the read began, which includes every write a client made
 * before it asked, through any replica. So a client that creates a chat and lists its chats at
 * once, through whichever server, sees it. The alternative, sending a client's reads to the
 * primary for a while after its writes, needs to know its writes on every replica (sticky
 * sessions or shared state) and still misses writes made by its other clients; waiting for the
 * LSN needs neither. Its price: one trivial primary query per read (concurrent reads share it),
 * and the replication delay while the primary is busy, bounded by maxWaitMs, past which the read
 * goes to the primary. Streams stay on the primary's log (src/watch).
 */

/** A WAL position ("16/B374D848") as a number, for comparing. */
export function parseLsn(lsn: string): bigint {
  const [hi, lo] = lsn.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export interface ReadReplicaOptions {
  primary: Pool;
  /** The standby's connection URL. */
  url: string;
  /** The standby's pool size. */
  poolMax?: number;
  /** A read waits this long at most for the standby to catch up, then the primary serves it. */
  maxWaitMs?: number;
  logger: Logger;
}

/** Where reads went, for /metrics (pgchatd_read_replica_reads_total). */
export interface ReadReplicaStats {
  standby: number;
  /** The standby had not replayed the read's writes within maxWaitMs. */
  primaryLagging: number;
  /** The standby could not be asked (down, restarting, refusing connections). */
  primaryUnavailable: number;
}

/**
 * How often a waiting read asks the standby how far it has replayed: a replay usually lands
 * within a millisecond or two of the commit, and one poll serves every waiting read.
 */
const replayPollMs = 2;
/** Default ReadReplicaOptions.maxWaitMs: a tenth of the latency budget of a list page. */
const defaultMaxWaitMs = 200;
/** After a failed look at the standby, reads go to the primary this long before trying again. */
const unavailableBackoffMs = 5_000;

/** Where a waiting read goes. */
type Outcome = "standby" | "lagging" | "unavailable";

interface Waiter {
  lsn: bigint;
  resolve: (outcome: Outcome) => void;
  deadline: number;
}

export class ReadReplica {
  readonly pool: Pool;
  readonly stats: ReadReplicaStats = { standby: 0, primaryLagging: 0, primaryUnavailable: 0 };
  private readonly maxWaitMs: number;
  private readonly log: Logger;
  /** The last primary position fetched, and when the fetch began (concurrent reads share it). */
  private primaryFetch: { startedAt: number; lsn: Promise<bigint> } | undefined;
  /** How far the standby had replayed when last asked; only grows. */
  private replayed = 0n;
  private waiters: Waiter[] = [];
  private polling = false;
  /** While set, the standby failed to answer: reads go to the primary until then. */
  private unavailableUntil = 0;

  constructor(private readonly opts: ReadReplicaOptions) {
    this.pool = createPool({
      connectionString: opts.url,
      max: opts.poolMax ?? 10,
      applicationName: "pgchatd-read",
    });
    this.maxWaitMs = opts.maxWaitMs ?? defaultMaxWaitMs;
    this.log = opts.logger.child({ component: "read-replica" });
  }

  /**
   * Where a read that begins now runs: the standby once it has replayed everything the primary
   * had written by now, else the primary.
   */
  async forRead(): Promise<PoolQueryable> {
    const began = performance.now();
    let outcome: Outcome = "unavailable";
    if (began >= this.unavailableUntil) {
      // A primary that cannot answer fails the read there, as it would without a replica.
      const lsn = await this.primaryLsn(began).catch(() => undefined);
      if (lsn !== undefined) {
        outcome =
          lsn <= this.replayed ? "standby" : await this.waitForReplay(lsn, began + this.maxWaitMs);
      }
    }
    if (outcome === "standby") {
      this.stats.standby++;
      return this.pool;
    }
    if (outcome === "lagging") this.stats.primaryLagging++;
    else this.stats.primaryUnavailable++;
    return this.opts.primary;
  }

  async close(): Promise<void> {
    for (const w of this.waiters.splice(0)) w.resolve("unavailable");
    await this.pool.end();
  }

  /**
   * The primary's WAL position, from a query that began at or after `since`: it covers every
   * commit before `since`. A fetch already under way that began after `since` is shared.
   */
  private primaryLsn(since: number): Promise<bigint> {
    const last = this.primaryFetch;
    if (last && last.startedAt >= since) return last.lsn;
    const startedAt = performance.now();
    const lsn = this.opts.primary
      .query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")
      .then((r) => parseLsn(r.rows[0]!.lsn));
    this.primaryFetch = { startedAt, lsn };
    // A failed fetch is not shared with later reads.
    lsn.catch(() => {
      if (this.primaryFetch?.lsn === lsn) this.primaryFetch = undefined;
    });
    return lsn;
  }

  /** Resolves "standby" once the standby has replayed `lsn`, "lagging" at `deadline`. */
  private waitForReplay(lsn: bigint, deadline: number): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      this.waiters.push({ lsn, resolve, deadline });
      if (!this.polling) void this.poll();
    });
  }

  /** One loop for every waiting read: asks the standby, settles whom it can, sleeps, again. */
  private async poll(): Promise<void> {
    this.polling = true;
    try {
      while (this.waiters.length > 0) {
        const replayed = await this.replayedLsn();
        if (replayed === undefined) {
          for (const w of this.waiters.splice(0)) w.resolve("unavailable");
          return;
        }
        if (replayed > this.replayed) this.replayed = replayed;
        const now = performance.now();
        this.waiters = this.waiters.filter((w) => {
          if (w.lsn <= this.replayed) w.resolve("standby");
          else if (now >= w.deadline) w.resolve("lagging");
          else return true;
          return false;
        });
        if (this.waiters.length > 0) await new Promise((r) => setTimeout(r, replayPollMs));
      }
    } finally {
      this.polling = false;
    }
  }

  /** How far the standby has replayed; undefined (and the backoff set, once logged) if unknown. */
  private async replayedLsn(): Promise<bigint | undefined> {
    let lsn: string | null | undefined;
    let err: unknown;
    try {
      const r = await this.pool.query<{ lsn: string | null }>(
        "SELECT pg_last_wal_replay_lsn()::text AS lsn",
      );
      lsn = r.rows[0]?.lsn;
      // NULL: not a standby (the URL names a primary); it would never catch up.
      if (lsn == null) err = new Error("it is not a standby: pg_last_wal_replay_lsn() is NULL");
    } catch (e) {
      err = e;
    }
    if (err === undefined) return parseLsn(lsn!);
    this.unavailableUntil = performance.now() + unavailableBackoffMs;
    this.log.warn(
      { err, retryInMs: unavailableBackoffMs },
      "the read replica (PGCHATD_READ_DATABASE_URL) cannot be asked how far it has replayed; reads go to the primary",
    );
    return undefined;
  }
}
