import type { PoolQueryable } from "../db/index.ts";
import {
  getChatEventBounds,
  getChatEventHorizonStatus,
  listChatEventsAfterCursor,
} from "../generated/chat_events.ts";
import type { Logger } from "../log.ts";
import { type Cursor, compareCursors, cursorArgs, rowCursor } from "./cursor.ts";
import type { Hub, RenderedEvent, Wanted } from "./hub.ts";
import type { EventRow } from "./kinds.ts";

/** Turns event rows into frames; lives with the HTTP shapes (src/watch/frames.ts). */
export type RenderEvents = (rows: EventRow[], wanted: Wanted[]) => Promise<RenderedEvent[]>;

export interface TailerOptions {
  pool: PoolQueryable;
  hub: Hub;
  render: RenderEvents;
  logger: Logger;
  /** Reads even without a wake-up: catches writes that sent no NOTIFY (batched mode, psql). */
  safetyPollMs: number;
  /** Delivery held back this long by an open transaction is logged as a warning naming it. */
  heldBackWarnMs?: number;
}

/** The transaction at the read horizon, while events wait for it to end. */
export interface HorizonBlocker {
  /** Its backend; null for a prepared transaction. */
  pid: number | null;
  database: string | null;
  /** application_name, or "prepared transaction <gid>". */
  application: string | null;
  /** Since when it is open. */
  since: string | null;
}

/** What holds delivery back (/metrics, docs/operations.md "Long transactions"). */
export interface HorizonStatus {
  /** How long the oldest committed event the tailer cannot hand out yet has waited; 0 when none. */
  heldBackSeconds: number;
  blocker: HorizonBlocker | null;
  /** The tailer reads past other databases' open transactions (they hold the cluster's xmin). */
  pastOtherDatabases: boolean;
}

/** Rows per read; a burst bigger than this is read in several pages back to back. */
const pageSize = 1000;
/**
 * After a wake-up that found nothing, read again after these delays: the commit that woke us can
 * sit above the xmin horizon for a moment while an older transaction finishes.
 */
const horizonRetryMs = [5, 20, 80, 250];
/** Default for TailerOptions.heldBackWarnMs: long past any transaction pgchatd itself runs. */
const defaultHeldBackWarnMs = 10_000;
/**
 * A shorter wait is concurrent writers committing in another order than they started: naming
 * their transactions each second would only churn the blocker series of /metrics.
 */
const nameBlockerAfterMs = 1_000;

/**
 * Reads chat_events after its cursor, renders each batch once and hands it to the hub. One read
 * runs at a time; wake-ups that arrive meanwhile make it read again when it is done.
 */
export class Tailer {
  /** Everything up to here has been dispatched. */
  position: Cursor = { xid: 0n, id: 0 };
  /** Everything up to here has been read; a subscriber registering now starts after it. */
  fetchedUntil: Cursor = { xid: 0n, id: 0 };
  /** Reads of the log so far, and how many found nothing (bench/tailer.ts counts them). */
  readonly reads = { total: 0, empty: 0 };
  /** The last look at the horizon (checkHorizon). */
  horizon: HorizonStatus = { heldBackSeconds: 0, blocker: null, pastOtherDatabases: false };
  private checking: Promise<void> | undefined;
  /** The blocker last warned about, so one open transaction is named once, not every second. */
  private warnedBlocker: string | undefined;
  private reading: Promise<void> | undefined;
  private again = false;
  /** The newest transaction a wake-up named while a read ran (see wake). */
  private againXid: bigint | undefined;
  private retry = 0;
  private retryIfEmpty = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Wake-ups before start() (the LISTEN connection's first `connected`) are ignored. */
  private started = false;

  constructor(private readonly opts: TailerOptions) {}

  /** Starts at the head of the log: events committed from now on. */
  async start(): Promise<void> {
    const bounds = await getChatEventBounds(this.opts.pool);
    if (!bounds?.start_xid) throw new Error("chat_event_horizon has no row: run the migrations");
    this.position = { xid: BigInt(bounds.start_xid), id: 0 };
    this.fetchedUntil = this.position;
    this.started = true;
    this.pollTimer = setInterval(() => {
      this.wake(false);
      // Without a stream there is nothing to hold back on this process, and an idle replica
      // should not query the database every second for it.
      if (!this.opts.hub.isEmpty()) void this.checkHorizon();
      else if (this.horizon.blocker || this.horizon.heldBackSeconds > 0)
        this.horizon = { ...this.horizon, heldBackSeconds: 0, blocker: null };
    }, this.opts.safetyPollMs);
    this.pollTimer.unref();
  }

  /**
   * Something may have been committed: read (now, or right after the read in progress). A wake-up
   * for a known commit (NOTIFY, a local write) that finds nothing retries briefly; a poll does not.
   * A wake-up that names the committed transaction (`xid`, a trigger-mode NOTIFY) reads only if
   * nothing of that transaction or a later one has been read yet: once one event of it has, all
   * of it has (its events became visible together, and the log is read in xid order). Usually
   * this process's own request poked the tailer first, and a read for the NOTIFY that follows
   * would find nothing and then retry the horizon ladder (bench/tailer.ts counts reads).
   */
  wake(expectEvents = true, xid?: bigint): void {
    if (this.stopped || !this.started) return;
    // Nobody to deliver to: nothing is read (an idle replica does no per-commit work). The next
    // subscriber starts at the head (skipToHead), or backfills from its cursor.
    if (this.opts.hub.isEmpty()) return;
    // Read already: a later transaction's event, or one of this one's (the cursor at the head,
    // id 0, has read nothing of its xid).
    const read = this.fetchedUntil;
    if (xid !== undefined && (xid < read.xid || (xid === read.xid && read.id > 0))) return;
    if (this.reading) {
      if (expectEvents) this.retryIfEmpty = true;
      if (xid === undefined) this.again = true;
      else if (this.againXid === undefined || xid > this.againXid) this.againXid = xid;
      return;
    }
    if (expectEvents) this.retryIfEmpty = true;
    this.reading = this.readAll().finally(() => {
      this.reading = undefined;
      const xidAgain = this.againXid;
      this.againXid = undefined;
      if (this.again) {
        this.again = false;
        this.wake();
      } else if (xidAgain !== undefined) {
        this.wake(true, xidAgain);
      }
    });
  }

  /**
   * This process committed a write: read now if no read is running, without the horizon ladder.
   * While a read runs, nothing: the NOTIFY every commit sends (the trigger's, naming it, or the
   * batched notifier's) wakes the tailer for it if that read missed it. So a request's commit
   * costs one read, not the poke's read, its NOTIFY's read and their retries.
   */
  nudge(): void {
    if (this.reading) return;
    this.wake(false);
  }

  /**
   * Moves to the head of the log without reading what lies before it: what start() does, for a
   * process whose last subscriber left a while ago (it read nothing since). Never moves back.
   */
  async skipToHead(): Promise<void> {
    await this.idle();
    const bounds = await getChatEventBounds(this.opts.pool);
    if (!bounds?.start_xid) throw new Error("chat_event_horizon has no row: run the migrations");
    const head: Cursor = { xid: BigInt(bounds.start_xid), id: 0 };
    if (compareCursors(head, this.fetchedUntil) > 0) this.fetchedUntil = head;
    if (compareCursors(head, this.position) > 0) this.position = head;
  }

  /** Waits for the read in progress, if any (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.reading) await this.reading;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.retryTimer);
    await this.idle();
    await this.checking;
  }

  /**
   * Looks at the read horizon: whether only other databases' transactions hold the cluster's
   * xmin back (then reads look past them), how long committed events have been held back, and by
   * which transaction. Warns once per blocker past heldBackWarnMs. One check at a time.
   */
  checkHorizon(): Promise<void> {
    if (this.stopped || !this.started) return Promise.resolve();
    this.checking ??= this.lookAtHorizon().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async lookAtHorizon(): Promise<void> {
    let row: Awaited<ReturnType<typeof getChatEventHorizonStatus>>;
    try {
      row = await getChatEventHorizonStatus(this.opts.pool, {
        after_xid: cursorArgs(this.position).xid,
        after_id: this.position.id,
      });
    } catch (err) {
      this.opts.logger.warn({ err }, "checking the change-event horizon failed");
      return;
    }
    if (!row) return;
    const past = BigInt(row.horizon ?? 0) > BigInt(row.xmin ?? 0);
    const wasPast = this.horizon.pastOtherDatabases;
    const heldMs = row.held_since
      ? Math.max(0, Date.parse(row.now) - Date.parse(row.held_since))
      : 0;
    const blocker: HorizonBlocker | null =
      heldMs >= nameBlockerAfterMs
        ? {
            pid: row.blocker_pid,
            database: row.blocker_database,
            application: row.blocker_application,
            since: row.blocker_xact_start,
          }
        : null;
    this.horizon = { heldBackSeconds: heldMs / 1000, blocker, pastOtherDatabases: past };
    if (past && !wasPast) this.wake();

    const warnMs = this.opts.heldBackWarnMs ?? defaultHeldBackWarnMs;
    const key = blocker && `${blocker.pid}/${blocker.application}/${blocker.since}`;
    if (blocker && heldMs >= warnMs && key !== this.warnedBlocker) {
      this.warnedBlocker = key!;
      this.opts.logger.warn(
        { heldBackSeconds: Math.round(heldMs / 100) / 10, blocker },
        "change events are held back by an open transaction; streams deliver them when it ends",
      );
    } else if (!blocker && this.warnedBlocker) {
      this.warnedBlocker = undefined;
      this.opts.logger.info("change events flow again: the transaction holding them back ended");
    }
  }

  private async readAll(): Promise<void> {
    let found = 0;
    try {
      for (;;) {
        const rows = await listChatEventsAfterCursor(this.opts.pool, {
          after_xid: cursorArgs(this.position).xid,
          after_id: this.position.id,
          past_other_databases: this.horizon.pastOtherDatabases,
          page_limit: pageSize,
        });
        this.reads.total++;
        if (rows.length === 0) this.reads.empty++;
        if (rows.length === 0) break;
        found += rows.length;
        await this.deliver(rows);
        if (rows.length < pageSize || this.stopped) break;
      }
    } catch (err) {
      // The next wake-up or poll reads again from the same position: nothing is skipped.
      this.opts.logger.warn({ err }, "reading chat_events failed");
    }
    const retry = this.retryIfEmpty;
    this.retryIfEmpty = false;
    this.scheduleRetry(found > 0 || !retry);
  }

  private async deliver(rows: EventRow[]): Promise<void> {
    const last = rowCursor(rows[rows.length - 1]!);
    // Synchronously with the read: a subscriber registering from here on starts after this batch,
    // so what is rendered below is exactly what the already registered subscribers need. (Never
    // back: skipToHead may have moved it past a read that was under way.)
    if (compareCursors(last, this.fetchedUntil) > 0) this.fetchedUntil = last;
    const wanted = rows.map((r) => this.opts.hub.wanted(r));
    const events = wanted.some((w) => w.watch || w.stream || w.agent)
      ? await this.opts.render(rows, wanted)
      : [];
    this.opts.hub.dispatch(events);
    if (compareCursors(last, this.position) > 0) this.position = last;
  }

  private scheduleRetry(done: boolean): void {
    clearTimeout(this.retryTimer);
    if (done) {
      this.retry = 0;
      return;
    }
    const delay = horizonRetryMs[this.retry];
    if (delay === undefined || this.stopped) {
      // A commit we were told about is still out of reach: see what holds it (and read past
      // other databases' transactions) now rather than at the next poll.
      if (delay === undefined) void this.checkHorizon();
      this.retry = 0;
      return;
    }
    this.retry++;
    this.retryTimer = setTimeout(() => this.wake(), delay);
    this.retryTimer.unref();
  }
}
