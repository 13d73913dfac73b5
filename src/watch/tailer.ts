import type { Pool } from "../db/index.ts";
import { getChatEventBounds, listChatEventsAfterCursor } from "../generated/chat_events.ts";
import type { Logger } from "../log.ts";
import { type Cursor, compareCursors, cursorArgs, rowCursor } from "./cursor.ts";
import type { Hub, RenderedEvent, Wanted } from "./hub.ts";
import type { EventRow } from "./kinds.ts";

/** Turns event rows into frames; lives with the HTTP shapes (src/server/event-frames.ts). */
export type RenderEvents = (rows: EventRow[], wanted: Wanted[]) => Promise<RenderedEvent[]>;

export interface TailerOptions {
  pool: Pool;
  hub: Hub;
  render: RenderEvents;
  logger: Logger;
  /** Reads even without a wake-up: catches writes that sent no NOTIFY (batched mode, psql). */
  safetyPollMs: number;
}

/** Rows per read; a burst bigger than this is read in several pages back to back. */
const pageSize = 1000;
/**
 * After a wake-up that found nothing, read again after these delays: the commit that woke us can
 * sit above the xmin horizon for a moment while an older transaction finishes.
 */
const horizonRetryMs = [5, 20, 80, 250];

/**
 * Reads chat_events after its cursor, renders each batch once and hands it to the hub. One read
 * runs at a time; wake-ups that arrive meanwhile make it read again when it is done.
 */
export class Tailer {
  /** Everything up to here has been dispatched. */
  position: Cursor = { xid: 0n, id: 0 };
  /** Everything up to here has been read; a subscriber registering now starts after it. */
  fetchedUntil: Cursor = { xid: 0n, id: 0 };
  private reading: Promise<void> | undefined;
  private again = false;
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
    this.pollTimer = setInterval(() => this.wake(false), this.opts.safetyPollMs);
    this.pollTimer.unref();
  }

  /**
   * Something may have been committed: read (now, or right after the read in progress). A wake-up
   * for a known commit (NOTIFY, a local write) that finds nothing retries briefly; a poll does not.
   */
  wake(expectEvents = true): void {
    if (this.stopped || !this.started) return;
    if (expectEvents) this.retryIfEmpty = true;
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = this.readAll().finally(() => {
      this.reading = undefined;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
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
  }

  private async readAll(): Promise<void> {
    let found = 0;
    try {
      for (;;) {
        const rows = await listChatEventsAfterCursor(this.opts.pool, {
          after_xid: cursorArgs(this.position).xid,
          after_id: this.position.id,
          page_limit: pageSize,
        });
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
    // so what is rendered below is exactly what the already registered subscribers need.
    this.fetchedUntil = last;
    const wanted = rows.map((r) => this.opts.hub.wanted(r));
    const events = wanted.some((w) => w.watch || w.stream)
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
      this.retry = 0;
      return;
    }
    this.retry++;
    this.retryTimer = setTimeout(() => this.wake(), delay);
    this.retryTimer.unref();
  }
}
