import { channels, type EphemeralEvent } from "../db/channels.ts";
import { createListener, type Listener } from "../db/listen.ts";
import { createPool, type Pool, withPreparedStatements } from "../db/pool.ts";
import {
  announceChatListenerQuery,
  type NotifyChatEventsRow,
  notifyChatEvents,
  notifyChatEventsQuery,
  withdrawChatListenerQuery,
} from "../generated/chat_events.ts";
import { publishChatStreamEvent } from "../generated/chat_stream_parts.ts";
import type { Logger } from "../log.ts";
import { createEventRenderer } from "./frames.ts";
import { Hub } from "./hub.ts";
import { BatchedNotifier } from "./notifier.ts";
import { type RenderEvents, Tailer } from "./tailer.ts";

export type { Cursor } from "./cursor.ts";
export { compareCursors, formatCursor, parseCursor } from "./cursor.ts";
export type { Hub, RenderedEvent, Wanted } from "./hub.ts";
export type { EventKind, EventRow } from "./kinds.ts";
export { agentKinds, streamKinds, watchKinds } from "./kinds.ts";
export type { AgentStreamHooks, Resume } from "./streams.ts";
export { resolveResume, runAgentStream, runChatStream, runWatchStream } from "./streams.ts";
export type { Frame, Subscriber } from "./subscriber.ts";
export type { RenderEvents } from "./tailer.ts";

/** How committed events wake the tailers (docs/operations.md "Change events"). */
export type EventsNotifyMode = "trigger" | "batched" | "off";

/** The wake-up channel the triggers (trigger mode) and the batched notifier NOTIFY. */
export const eventsChannel = channels.events;
/** Per-chat stream events (message_part, retry) between replicas, stored while in flight (chat_stream_parts). */
export const partsChannel = channels.parts;
/**
 * Connections of the tailer's pool: one log read at a time, a render's five reads at once, and
 * the backfills of streams resuming meanwhile.
 */
const watchPoolMax = 6;
/** NOTIFY payloads must stay below Postgres' 8000-byte limit. */
export const maxPartPayloadBytes = 7900;
/**
 * Characters of text per ephemeral part: its NOTIFY payload must stay below maxPartPayloadBytes,
 * and JSON may spend up to six bytes on one character (\u0000-style escapes).
 */
export const maxPartChars = 1000;

/** Text in pieces of at most maxPartChars UTF-16 units, never cutting a surrogate pair. */
export function splitForPart(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < text.length) {
    let end = Math.min(i + maxPartChars, text.length);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    out.push(text.slice(i, end));
    i = end;
  }
  return out;
}

export type { EphemeralEvent } from "../db/channels.ts";

/** A runner's lease on a chat: what its turn publishes under. */
export interface StreamLease {
  workerId: string;
  startedAt: string;
}

/**
 * Who publishes a chat stream event: the runner of the turn (its lease), or the workspace agent
 * for the call whose command output it is (the chat_tool_calls id).
 */
export type StreamSource = StreamLease | { callId: number };

/** A published stream event: its seq (the dedup key) and SSE block, and the chat's owner. */
export interface PublishedStreamEvent {
  seq: number;
  body: string;
  ownerId: string;
}

/** String.prototype.toWellFormed (Node 20; the ES2024 lib this project's TypeScript lacks). */
type WellFormed = string & { toWellFormed(): string };

/** Bigger than any turn_id and seq the SQL function adds to the event (for the size check). */
const publishedFieldsSample = '{"turn_id":"17965861074700000","seq":9007199254740991,';

/**
 * Publishes a chat stream event (`message_part`, `retry`): chat_stream_publish stores it as the
 * chat's in-flight output (a stream connecting mid-turn starts with it) and NOTIFYs every process,
 * in one transaction (sql/functions/chat_stream_parts.sql). Null when `source` no longer may (a
 * run that lost its lease must not mix its output into the next run's; a call that closed has
 * its result). RangeError when it would not fit a NOTIFY: split text with splitForPart.
 */
export async function publishStreamEvent(
  db: Pool,
  chatId: string,
  event: EphemeralEvent,
  data: unknown,
  source: StreamSource,
): Promise<PublishedStreamEvent | null> {
  // A lone surrogate (text cut mid-pair) is valid for JSON.stringify but not for PostgreSQL.
  const text = JSON.stringify(data, (_key, value) =>
    typeof value === "string" ? (value as WellFormed).toWellFormed() : value,
  );
  const sample = JSON.stringify({
    c: chatId,
    u: chatId,
    s: Number.MAX_SAFE_INTEGER,
    b: `event: ${event}\ndata: ${publishedFieldsSample}${text.slice(1)}\n\n`,
  });
  if (Buffer.byteLength(sample) > maxPartPayloadBytes) {
    throw new RangeError(
      `${event} is ${Buffer.byteLength(sample)} bytes; split it below ${maxPartPayloadBytes}`,
    );
  }
  const row = await publishChatStreamEvent(db, {
    chat_id: chatId,
    worker_id: "workerId" in source ? source.workerId : null,
    started_at: "workerId" in source ? source.startedAt : null,
    call_id: "callId" in source ? source.callId : null,
    event,
    data: text,
  });
  if (row.seq === null || row.body === null || row.owner_id === null) return null;
  return { seq: Number(row.seq), body: row.body, ownerId: row.owner_id };
}

/**
 * Publishing for a process without a Watch of its own (`pgchatd runner`): the servers' chat
 * streams get the events through NOTIFY.
 */
export function createEphemeralPublisher(pool: Pool) {
  return async (
    chatId: string,
    _ownerId: string,
    event: EphemeralEvent,
    data: unknown,
    source: StreamSource,
  ) => {
    await publishStreamEvent(pool, chatId, event, data, source);
  };
}

/**
 * For a process without a Watch of its own (`pgchatd runner`) whose sessions do not NOTIFY from
 * the triggers (batched mode): one NOTIFY per interval after its commits, like a server's.
 */
export function createCommitNotifier(pool: Pool, logger: Logger, intervalMs = 10): BatchedNotifier {
  return new BatchedNotifier(
    async () => {
      await notifyChatEvents(pool);
    },
    intervalMs,
    logger,
  );
}

export interface WatchOptions {
  url: string;
  pool: Pool;
  logger: Logger;
  /** How events become frames; createEventRenderer (frames.ts) unless a test swaps it. */
  render?: RenderEvents;
  mode: EventsNotifyMode;
  /** Safety poll; see TailerOptions. */
  safetyPollMs?: number;
  /** See TailerOptions.heldBackWarnMs. */
  heldBackWarnMs?: number;
  /** batched mode: at most one NOTIFY per this interval. */
  batchIntervalMs?: number;
  /** Per subscriber queue bound; a client further behind is disconnected and resumes by cursor. */
  maxQueuedBytes?: number;
}

export interface Watch {
  hub: Hub;
  tailer: Tailer;
  /**
   * The process's one LISTEN connection (it also carries its NOTIFYs); a runner in the same
   * process adds its channels to it (src/processes/serve.ts). Closed by close().
   */
  listener: Listener;
  mode: EventsNotifyMode;
  /** The renderer the tailer uses; streams use it for backfill, so frames look alike. */
  render: RenderEvents;
  /**
   * This process committed something that may have written events: read now, and in batched
   * mode tell the other replicas (one NOTIFY per interval at most).
   */
  poke(): void;
  /**
   * Call right before registering a subscriber: a process that has no subscriber (so may have
   * skipped wake-ups, or not received the latest yet) reads up to the head first, and every
   * subscriber arriving meanwhile waits for that read, so new streams start at the head, not
   * behind it.
   */
  beforeSubscribe(): Promise<void>;
  /**
   * Publishes a chat stream event (`message_part`, `retry`; publishStreamEvent): stored, and sent
   * to the subscribers of every process (this one's too) through NOTIFY, unless `source` (the
   * runner's lease, the agent's call) no longer may.
   */
  publishEphemeral(
    chatId: string,
    ownerId: string,
    event: EphemeralEvent,
    data: unknown,
    source: StreamSource,
  ): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts this process's change-event machinery: one LISTEN connection (src/db/listen.ts,
 * reconnecting with backoff for as long as the process lives; it also carries this process's
 * NOTIFYs, one at a time), the tailer, the subscriber hub and, in batched mode, the notifier.
 * Resolves once it listens and knows where the log ends.
 */
/**
 * How long a process keeps LISTENing for change events after its last subscriber left: a client
 * that reconnects at once (a reload, a network blip) finds it listening, and a process whose
 * streams come and go does not LISTEN and UNLISTEN for each.
 */
const idleUnlistenMs = 10_000;
/** How often a process looks whether it has been without subscribers that long. */
const idleCheckMs = 1_000;

export async function startWatch(opts: WatchOptions): Promise<Watch> {
  const log = opts.logger.child({ component: "watch" });
  // The log read and the render run for every commit: on connections of their own, so a burst of
  // requests never makes delivery wait for a pool connection, and planned once per connection
  // (their queries read by primary key or id arrays, which one generic plan serves).
  const readPool = createPool({
    connectionString: opts.url,
    max: watchPoolMax,
    applicationName: "pgchatd-watch",
    eventsMode: opts.mode,
    genericPlans: true,
  });
  const db = withPreparedStatements(readPool);
  const render = opts.render ?? createEventRenderer(db);
  let tailer: Tailer | undefined;
  const hub = new Hub({
    maxQueuedBytes: opts.maxQueuedBytes ?? 1024 * 1024,
    position: () => tailer!.fetchedUntil,
  });
  /**
   * A process with no stream open reads nothing (Tailer.wake; with many replicas a read per
   * replica per commit, measured in bench/watch.ts and bench/replicas.ts): the first subscriber
   * moves the tailer to the head (beforeSubscribe), and this is that move while it runs.
   */
  let catchingUp: Promise<void> | undefined;
  /**
   * A commit's NOTIFY (trigger mode: it names the transaction, and the tailer skips it once read),
   * or this process's own write (`payload` undefined: the poke after a request, which reads only
   * when no read runs; see Tailer.nudge).
   */
  const wakeForCommit = (payload: string | undefined) => {
    if (hub.isEmpty()) return;
    if (payload === undefined) tailer!.nudge();
    else tailer!.wake(true, /^\d+$/.test(payload) ? BigInt(payload) : undefined);
  };
  tailer = new Tailer({
    pool: db,
    hub,
    render,
    logger: log,
    safetyPollMs: opts.safetyPollMs ?? 1_000,
    heldBackWarnMs: opts.heldBackWarnMs,
  });
  // Publishers skip the NOTIFYs of these channels while no process listens to them
  // (docs/sql.md "Notifications nobody hears").
  const listener = createListener(opts.url, "pgchatd-listen", {
    announced: {
      channels: new Set([eventsChannel, partsChannel]),
      announce: announceChatListenerQuery,
      withdraw: withdrawChatListenerQuery,
    },
  });
  listener.events.on("error", (err) => log.error({ err }, "LISTEN connection failed"));
  listener.events.on("reconnect", (attempt) => log.warn({ attempt }, "LISTEN reconnecting"));
  // After every (re)connect: anything committed while we were not listening is read now.
  listener.events.on("connected", () => tailer.wake());
  listener.notifications.on(eventsChannel, (payload: string) => wakeForCommit(payload));
  listener.notifications.on(partsChannel, (payload: string) => {
    // A replica without chat streams does nothing per streamed part (docs/operations.md
    // "Scaling": idle replicas cost nothing per commit).
    if (!hub.hasChatStreams()) return;
    try {
      // This process's own publications too: the NOTIFYs arrive in commit order, which is seq
      // order per chat, where their publishers' answers may not.
      const msg = JSON.parse(payload) as { c: string; u: string; s: number; b: string };
      hub.dispatchEphemeral(msg.c, msg.u, msg.b, Number(msg.s));
    } catch (err) {
      log.warn({ err }, "ignoring a malformed message_part notification");
    }
  });

  /**
   * The change-event and stream-part channels are LISTENed only while this process has a
   * subscriber, and for idleUnlistenMs after its last one left: a replica without streams is not
   * woken by every commit and every streamed part of the deployment (docs/operations.md
   * "Scaling"). The first subscriber LISTENs before its catch-up read (beforeSubscribe), so
   * nothing committed after that read goes unnoticed.
   */
  /** The LISTEN of those channels, while they are listened to (shared by concurrent callers). */
  let listening: Promise<void> | undefined;
  let emptySince = performance.now();
  // Subscribers between beforeSubscribe and their registration: the hub looks empty meanwhile,
  // and a LISTEN on its way (behind other statements of the LISTEN connection) must not be undone
  // under them.
  let subscribing = 0;
  // Never rejects (Listener.listenTo): a failed LISTEN reconnects, and `connected` wakes the tailer.
  const listen = () => {
    listening ??= listener.listenTo(eventsChannel, partsChannel);
    return listening;
  };
  const unlistenWhenIdle = setInterval(() => {
    if (!hub.isEmpty() || subscribing > 0) {
      emptySince = performance.now();
      return;
    }
    if (!listening || performance.now() - emptySince < idleUnlistenMs) return;
    listening = undefined;
    void listener.unlistenFrom(eventsChannel, partsChannel);
  }, idleCheckMs);
  unlistenWhenIdle.unref();

  await listener.connect().catch(async (err) => {
    clearInterval(unlistenWhenIdle);
    await readPool.end();
    throw err;
  });
  try {
    await tailer.start();
  } catch (err) {
    clearInterval(unlistenWhenIdle);
    await listener.close().catch(() => {});
    await readPool.end();
    throw err;
  }
  tailer.wake();

  const notifier =
    opts.mode === "batched"
      ? new BatchedNotifier(
          async () => {
            const [row] = await listener.run<NotifyChatEventsRow>(notifyChatEventsQuery);
            // Nobody else listens, so no NOTIFY comes back: this process's commits get the
            // wake-up that poke() (Tailer.nudge) leaves to it here.
            if (!row?.sent) wakeForCommit("batch");
          },
          opts.batchIntervalMs ?? 10,
          log,
        )
      : undefined;

  return {
    hub,
    tailer,
    listener,
    mode: opts.mode,
    render,
    poke() {
      wakeForCommit(undefined);
      notifier?.poke();
    },
    async beforeSubscribe() {
      // The grace period restarts when this returns: the subscriber registers right after.
      subscribing++;
      try {
        await listen();
        // Without subscribers nothing was read (Tailer.wake): the first one starts at the head,
        // and every subscriber that arrives meanwhile waits for that too.
        if (hub.isEmpty() && !catchingUp) {
          catchingUp = tailer.skipToHead().finally(() => {
            catchingUp = undefined;
          });
        }
        await catchingUp;
      } finally {
        subscribing--;
        emptySince = performance.now();
      }
    },
    async publishEphemeral(chatId, _ownerId, event, data, source) {
      await publishStreamEvent(opts.pool, chatId, event, data, source);
    },
    async close() {
      clearInterval(unlistenWhenIdle);
      hub.closeAll();
      notifier?.stop();
      await tailer.stop();
      await listener.close().catch(() => {});
      await readPool.end();
    },
  };
}
