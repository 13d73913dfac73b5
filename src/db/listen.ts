import { EventEmitter } from "node:events";
import pg from "pg";
import { clientConfig } from "./pool.ts";

/*
 * The LISTEN connection, written here on pg.Client rather than taken from a library. pg-listen,
 * used before, sent statements concurrently on its one client: NOTIFYs from every caller at once,
 * its liveness query alongside them, and one LISTEN per channel in parallel on reconnect.
 * node-postgres queues such overlaps with a deprecation warning and pg 9 refuses them; pg-listen
 * is unmaintained. So this one sends one statement at a time on its connection, LISTENs every
 * channel in one round trip, and reconnects for as long as the process lives.
 */

/** A reconnect attempt every 100 ms, doubling up to 5 s, forever: the database will come back. */
export function retryDelayMs(attempt: number): number {
  return Math.min(100 * 2 ** attempt, 5_000);
}

export interface ListenerOptions {
  /**
   * A peer that vanished without closing (a crashed host, a dropped route) sends nothing, and an
   * idle connection never finds out: a statement this often does. Default 10 s.
   */
  livenessCheckMs?: number;
  /**
   * A statement unanswered this long means the connection is dead, not slow: NOTIFY commits take
   * milliseconds. Without the bound a dead connection would hold every queued statement until the
   * kernel gives up retransmitting (about 15 minutes on Linux). Default 10 s.
   */
  deadAfterMs?: number;
  /**
   * Channels whose publishers NOTIFY only while some connection announces that it listens
   * (chat_listeners_exist, sql/functions/chat_events.sql): `announce` runs on the connection
   * before its first LISTEN of any of them, `withdraw` after its last UNLISTEN.
   */
  announced?: Announcement;
}

export interface Announcement {
  channels: ReadonlySet<string>;
  /** Returns one row whose `announced` is false when it took nothing and must be made again. */
  announce: string;
  withdraw: string;
}
/** A connect whose packets are dropped would otherwise stall the reconnect loop forever. */
const connectTimeoutMs = 10_000;

export interface ListenerEvents {
  /** A connection failed or a notification handler threw; the listener carries on. */
  error: [err: Error];
  /** Reconnect attempt n (1, 2, ...) after the connection was lost. */
  reconnect: [attempt: number];
  /**
   * Listening on every channel, after the first connect and after each reconnect (and after an
   * announcement that had to wait was made): what was notified while no connection listened is
   * lost, so callers re-read their state now.
   */
  connected: [];
}

interface Connection {
  client: pg.Client;
  /** Settles when the last statement handed to this connection has; the next one waits for it. */
  tail: Promise<void>;
  lost: boolean;
  /** The channels LISTENed on this connection. */
  listening: Set<string>;
  /** Whether it holds the announcement (ListenerOptions.announced). */
  announced: boolean;
}

const ignore = () => {};

/**
 * One LISTEN connection. Every statement (LISTEN, NOTIFY, the liveness check) waits for the one
 * before it, so the connection never has two in flight. Notifications arrive on `notifications`,
 * keyed by channel, with their payload as the string it is.
 */
export class Listener {
  readonly events = new EventEmitter<ListenerEvents>();
  readonly notifications = new EventEmitter<Record<string, [payload: string]>>();
  private readonly channels = new Set<string>();
  /** The connection listening on every channel; unset while (re)connecting. */
  private live: Connection | undefined;
  /** The client of a connect in progress, so close() can end it. */
  private connecting: pg.Client | undefined;
  private reconnecting: Promise<void> | undefined;
  /** Clients being ended; close() waits for them, so no socket outlives it. */
  private readonly ending = new Map<pg.Client, Promise<void>>();
  private firstConnect: Promise<void> | undefined;
  private livenessTimer: NodeJS.Timeout | undefined;
  private livenessDeadline: NodeJS.Timeout | undefined;
  private checking = false;
  /** Cuts a reconnect backoff short (close). */
  private wakeBackoff: (() => void) | undefined;
  private closed = false;
  /** The next try of an announcement that was not made (a publisher held its slot). */
  private announceRetry: NodeJS.Timeout | undefined;
  /**
   * Announcements not made since the last one made: the backoff of the next try, and, once one
   * is made, the `connected` the callers are owed (publishers may have skipped NOTIFYs meanwhile).
   */
  private announceFailures = 0;

  private readonly livenessCheckMs: number;
  private readonly deadAfterMs: number;
  private readonly announced: Announcement | undefined;

  constructor(
    private readonly config: pg.ClientConfig,
    options: ListenerOptions = {},
  ) {
    this.livenessCheckMs = options.livenessCheckMs ?? 10_000;
    this.deadAfterMs = options.deadAfterMs ?? 10_000;
    this.announced = options.announced;
    // Every stream of a process may listen on one channel.
    this.notifications.setMaxListeners(0);
  }

  /**
   * Connects and LISTENs the channels named so far. Rejects when the first connect fails (a
   * database that is down at start stops the start); after that, losses reconnect by themselves.
   */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the listener is closed"));
    this.firstConnect ??= this.open().then(
      () => {
        this.livenessTimer = setInterval(() => this.checkLiveness(), this.livenessCheckMs);
        this.emitSafely(() => this.events.emit("connected"));
      },
      (err: unknown) => {
        this.firstConnect = undefined;
        throw err;
      },
    );
    return this.firstConnect;
  }

  /**
   * Adds channels, all LISTENed in one round trip. Resolves once listening; at once while
   * (re)connecting, since the connect listens on every channel before it emits `connected`.
   * Never rejects: a LISTEN (or an announcement) that fails costs the connection, and the
   * reconnect starts afresh. An announcement that found a publisher's slot taken is made again
   * shortly, and `connected` follows it.
   */
  async listenTo(...channels: string[]): Promise<void> {
    for (const c of channels) this.channels.add(c);
    await this.sync();
  }

  /**
   * Drops channels: UNLISTENed on the live connection (after the statements before it), and not
   * LISTENed again by a reconnect.
   */
  async unlistenFrom(...channels: string[]): Promise<void> {
    for (const c of channels) this.channels.delete(c);
    await this.sync();
  }

  /**
   * Queues a syncChannels on the live connection, even when the channels asked for are known
   * already: an earlier sync may have failed, or may still be on its way. A failure loses the
   * connection, whose session then releases whatever it held (an announcement half taken
   * included), and the reconnect LISTENs and announces anew before it emits `connected`.
   */
  private async sync(): Promise<void> {
    const conn = this.live;
    if (!conn) return;
    await this.send(conn, () => this.syncChannels(conn)).catch((err: Error) =>
      this.lose(conn, err),
    );
  }

  /**
   * A statement without parameters on this connection, after the statements before it; its rows.
   * Rejects while the connection is down: a caller that must not lose its statement (the batched
   * NOTIFY) has a safety poll, and queueing through an outage would pile statements up without
   * bound. Never one that takes a session-level advisory lock: the announcement's withdraw
   * releases them all.
   */
  async run<R extends pg.QueryResultRow>(text: string): Promise<R[]> {
    const conn = this.live;
    if (!conn) throw new Error("LISTEN connection is down: statement not sent");
    return (await this.send(conn, (c) => c.query<R>(text))).rows;
  }

  /** Ends the connection and stops reconnecting; no timer or socket is left once it resolves. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.livenessTimer);
    clearTimeout(this.announceRetry);
    clearTimeout(this.livenessDeadline);
    this.wakeBackoff?.();
    const conn = this.live;
    this.live = undefined;
    if (conn) this.end(conn);
    if (this.connecting) this.endClient(this.connecting);
    await this.reconnecting;
    while (this.ending.size > 0) await Promise.all(this.ending.values());
  }

  /** Opens a connection, LISTENs every channel, and makes it the live one. */
  private async open(): Promise<void> {
    if (this.closed) throw new Error("the listener is closed");
    // A new connection announces itself now, whatever try the last one had pending.
    clearTimeout(this.announceRetry);
    this.announceRetry = undefined;
    const client = new pg.Client({
      ...this.config,
      keepAlive: true,
      connectionTimeoutMillis: connectTimeoutMs,
    });
    const conn: Connection = {
      client,
      tail: Promise.resolve(),
      lost: false,
      listening: new Set(),
      announced: false,
    };
    // pg emits 'error' on a client whose connection fails between statements; unhandled, that
    // would crash the process. The handlers stay for the client's life, after it was replaced too.
    client.on("error", (err) => this.lose(conn, err));
    client.on("end", () => this.lose(conn, new Error("LISTEN connection ended")));
    client.on("notification", (msg) => {
      try {
        this.notifications.emit(msg.channel, msg.payload ?? "");
      } catch (err) {
        this.report(err);
      }
    });
    this.connecting = client;
    try {
      // A client ended while connecting (close()) never settles connect(): its 'end' does.
      await new Promise<void>((resolve, reject) => {
        client.once("end", () => reject(new Error("LISTEN connection ended while connecting")));
        client.connect().then(() => resolve(), reject);
      });
      // A channel added or dropped while this sync was on its way is handled in the next round.
      while (!this.inSync(conn)) {
        if (this.closed) throw new Error("the listener was closed while connecting");
        if (conn.lost) break;
        await this.send(conn, () => this.syncChannels(conn));
      }
      if (conn.lost) throw new Error("LISTEN connection lost while connecting");
    } catch (err) {
      this.end(conn);
      throw err;
    } finally {
      this.connecting = undefined;
    }
    this.live = conn;
  }

  /**
   * Brings `conn` in line with the channels wanted now: announces before LISTENing an announced
   * channel, LISTENs and UNLISTENs in one round trip, withdraws after the last announced one went.
   * Decided when its turn comes, so calls queued in any order leave the connection right.
   */
  private async syncChannels(conn: Connection): Promise<void> {
    if (conn.lost) return;
    const c = conn.client;
    const add = [...this.channels].filter((ch) => !conn.listening.has(ch));
    const drop = [...conn.listening].filter((ch) => !this.channels.has(ch));
    const announced = this.announced;
    const announce = this.wantsAnnouncement();
    if (!announce) this.announceFailures = 0;
    if (announced && announce && !conn.announced && !this.announceRetry) {
      const { rows } = await c.query<{ announced: boolean }>(announced.announce);
      if (rows[0]?.announced) {
        conn.announced = true;
        // Publishers may have skipped NOTIFYs while it was not made: callers re-read now, as
        // after a reconnect (a connection not live yet emits `connected` once it is).
        if (this.announceFailures > 0 && conn === this.live) {
          this.emitSafely(() => this.events.emit("connected"));
        }
        this.announceFailures = 0;
      } else {
        // A publisher held its slot past the function's bound: LISTEN anyway, and announce
        // later. Meanwhile this process's streams get change events from the tailer's safety
        // poll, and may miss streamed parts of other processes.
        this.announceRetry = setTimeout(
          () => {
            this.announceRetry = undefined;
            void this.sync();
          },
          retryDelayMs(this.announceFailures++),
        );
        this.announceRetry.unref();
      }
    }
    const statements = [
      ...add.map((ch) => `LISTEN ${c.escapeIdentifier(ch)}`),
      ...drop.map((ch) => `UNLISTEN ${c.escapeIdentifier(ch)}`),
    ];
    if (statements.length > 0) {
      await c.query(statements.join("; "));
      for (const ch of add) conn.listening.add(ch);
      for (const ch of drop) conn.listening.delete(ch);
    }
    if (!announce && conn.announced && announced) {
      await c.query(announced.withdraw);
      conn.announced = false;
    }
  }

  /** Whether a connection listening on every channel wanted now must hold the announcement. */
  private wantsAnnouncement(): boolean {
    const announced = this.announced;
    return announced !== undefined && [...this.channels].some((ch) => announced.channels.has(ch));
  }

  /**
   * `conn` listens on exactly the channels wanted now, announced if they need it (or with the
   * announcement to be made again shortly).
   */
  private inSync(conn: Connection): boolean {
    const announce = this.wantsAnnouncement();
    return (
      conn.listening.size === this.channels.size &&
      [...this.channels].every((ch) => conn.listening.has(ch)) &&
      (conn.announced === announce || (announce && this.announceRetry !== undefined))
    );
  }

  /** Runs `statement` once every statement handed to `conn` before it has settled. */
  private send<T>(conn: Connection, statement: (c: pg.Client) => Promise<T>): Promise<T> {
    const run = conn.tail.then(() => statement(conn.client));
    conn.tail = run.then(ignore, ignore);
    return run;
  }

  /** `conn` failed: drop it, and reconnect if it was the live one. */
  private lose(conn: Connection, err: Error): void {
    if (conn.lost) return;
    conn.lost = true;
    if (conn !== this.live || this.closed) return;
    this.live = undefined;
    this.report(err);
    this.end(conn);
    const reconnecting = this.reconnect()
      .catch((e: unknown) => this.report(e))
      .finally(() => {
        if (this.reconnecting === reconnecting) this.reconnecting = undefined;
      });
    this.reconnecting = reconnecting;
  }

  private async reconnect(): Promise<void> {
    for (let attempt = 1; !this.closed; attempt++) {
      try {
        this.emitSafely(() => this.events.emit("reconnect", attempt));
        await this.open();
        this.emitSafely(() => this.events.emit("connected"));
        return;
      } catch (err) {
        if (this.closed) return;
        this.report(err);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, retryDelayMs(attempt - 1));
        this.wakeBackoff = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeBackoff = undefined;
    }
  }

  /** A `SELECT 1` in the queue like any statement; unanswered in time, the connection is lost. */
  private checkLiveness(): void {
    const conn = this.live;
    if (!conn || this.checking) return;
    this.checking = true;
    this.livenessDeadline = setTimeout(
      () => this.lose(conn, new Error(`LISTEN connection silent for ${this.deadAfterMs} ms`)),
      this.deadAfterMs,
    );
    this.send(conn, (c) => c.query("SELECT 1"))
      .then(ignore, (err: Error) => this.lose(conn, err))
      .finally(() => {
        clearTimeout(this.livenessDeadline);
        this.checking = false;
      });
  }

  private end(conn: Connection): void {
    conn.lost = true;
    this.endClient(conn.client);
  }

  /**
   * Ends a client: politely when idle; a statement in flight (a dead connection's) makes pg
   * destroy the socket instead, which fails the statements waiting behind it.
   */
  private endClient(client: pg.Client): void {
    if (this.ending.has(client)) return;
    this.ending.set(
      client,
      client
        .end()
        .catch(ignore)
        .finally(() => this.ending.delete(client)),
    );
  }

  /** A caller's handler that throws must not stop the reconnect loop. */
  private emitSafely(emit: () => void): void {
    try {
      emit();
    } catch (err) {
      this.report(err);
    }
  }

  /** An EventEmitter throws an 'error' nobody listens to: here that would crash the process. */
  private report(err: unknown): void {
    if (this.events.listenerCount("error") === 0) return;
    try {
      this.events.emit("error", err instanceof Error ? err : new Error(String(err)));
    } catch {
      // A throwing error handler has nowhere left to report to.
    }
  }
}

/** A LISTEN connection that reconnects with backoff for as long as the process lives. */
export function createListener(
  url: string,
  applicationName: string,
  options?: ListenerOptions,
): Listener {
  return new Listener(clientConfig(url, applicationName), options);
}
