import { type Cursor, compareCursors } from "./cursor.ts";
import { idLineBytes, sseComment } from "./sse.ts";

/** A rendered durable event, shared by every subscriber it goes to. */
export interface Frame {
  cursor: Cursor;
  /** The whole SSE block, `id:` line included. */
  text: string;
  /**
   * `text` as UTF-8, encoded by the first subscriber that queues it (frameBytes) and shared by
   * the others: one encoding per frame, not one per socket.
   */
  bytes?: Buffer;
  /** For `message` frames: lets a stream drop a message its snapshot already sent. */
  messageId?: number;
  /**
   * For `message` frames: the highest seq of the chat's parts a stored message replaced when the
   * frame was read. A part at or below it still on its way (NOTIFY can trail the log) is dropped,
   * never shown after the message that replaced it.
   */
  partsMark?: number | undefined;
}

export type CloseReason = "client" | "overflow" | "shutdown" | "error";

/** The frame's bytes, encoded once whatever the number of subscribers. */
export function frameBytes(frame: Frame): Buffer {
  frame.bytes ??= Buffer.from(frame.text);
  return frame.bytes;
}

type Held = Frame | { body: Buffer; seq: number | undefined };

/**
 * One open watch or chat stream. The tailer pushes frames; the SSE handler takes them and writes
 * them to the socket at the client's pace. Frames wait in a bounded queue: a client that does not
 * keep up overflows it and is disconnected (it resumes by cursor), so it never holds memory
 * without bound or slows delivery to anyone else.
 */
export class Subscriber {
  /** The last durable event this subscriber was given; older or equal ones are dropped. */
  lastCursor: Cursor;
  /**
   * The tailer's position when this subscriber registered. Live delivery starts after it; the
   * handler sends anything before it (snapshot or backfill) itself.
   */
  floor: Cursor;
  /**
   * Chat streams: messages the snapshot sent whose `message` events come after `floor`, so they
   * would arrive twice. Ids, not a high-water mark: message ids do not follow cursor order (a
   * transaction that started earlier can insert a message later).
   */
  private readonly sentMessageIds = new Set<number>();
  /**
   * Chat streams: the highest stream event seq (message_part, retry) the client has been given or
   * no longer needs (the snapshot's); those at or below it are dropped.
   */
  partsThrough = 0;
  closed = false;
  closeReason: CloseReason | undefined;

  /** Encoded chunks (shared with the other subscribers of their frame) waiting for the socket. */
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private held: Held[] | null = [];
  private waiter: ((value: Buffer[] | null) => void) | undefined;
  private readonly onClose: (() => void)[] = [];

  /**
   * `ownerId`: the user a watch or chat stream belongs to (for an agent stream, the agent's
   * workspace owner); `agentId`: the workspace agent of a tool-call stream, else null.
   */
  constructor(
    readonly ownerId: string,
    readonly chatId: string | null,
    start: Cursor,
    private readonly maxQueuedBytes: number,
    readonly agentId: string | null = null,
  ) {
    this.lastCursor = start;
    this.floor = start;
  }

  /**
   * A durable event from the tailer (or the handler's backfill). While the handler is still
   * sending its snapshot or backfill, live frames are held back so the client sees them after it.
   */
  push(frame: Frame): void {
    if (this.closed) return;
    if (this.held) {
      this.held.push(frame);
      this.account(frameBytes(frame).length);
      return;
    }
    if (compareCursors(frame.cursor, this.lastCursor) <= 0) return;
    this.lastCursor = frame.cursor;
    if (frame.partsMark !== undefined && frame.partsMark > this.partsThrough) {
      this.partsThrough = frame.partsMark;
    }
    if (frame.messageId !== undefined && this.sentMessageIds.delete(frame.messageId)) return;
    this.enqueue(frameBytes(frame));
  }

  /**
   * An event that is not in the log (`message_part`, `retry`; `body` its SSE block as UTF-8). It
   * carries the last durable cursor as its id, so a client that reconnects after it resumes where
   * it should.
   */
  pushEphemeral(body: Buffer, seq?: number): void {
    if (this.closed) return;
    if (this.held) {
      this.held.push({ body, seq });
      this.account(body.length);
      return;
    }
    if (seq !== undefined) {
      if (seq <= this.partsThrough) return;
      this.partsThrough = seq;
    }
    this.enqueue(idLineBytes(this.lastCursor));
    this.enqueue(body);
  }

  /**
   * A keep-alive comment that also moves the client's Last-Event-ID to `position` (the tailer's),
   * so a quiet stream resumes from near the head instead of from its last event (which pruning
   * may have passed). Safe because every event up to `position` was already queued before it.
   */
  heartbeat(position: Cursor): void {
    if (this.closed || this.held) return;
    if (compareCursors(position, this.lastCursor) > 0) this.lastCursor = position;
    this.enqueue(Buffer.from(sseComment("keep-alive", this.lastCursor)));
  }

  /** The snapshot sent these messages; their live `message` events are dropped once each. */
  alreadySent(messageIds: Iterable<number>): void {
    for (const id of messageIds) this.sentMessageIds.add(id);
  }

  /** Ends the hold: the handler has written everything up to `floor` itself. */
  release(): void {
    const held = this.held ?? [];
    this.held = null;
    this.queuedBytes = 0;
    for (const item of held) {
      if ("body" in item) this.pushEphemeral(item.body, item.seq);
      else this.push(item);
    }
  }

  /**
   * Waits for frames and returns every chunk queued (whole SSE blocks, in order; the buffers are
   * shared with other subscribers: never modify them); `null` once the subscriber is closed.
   */
  take(): Promise<Buffer[] | null> {
    if (this.queue.length > 0) {
      const chunks = this.queue;
      this.queue = [];
      this.queuedBytes = 0;
      return Promise.resolve(chunks);
    }
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.queue = [];
    this.held = null;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.(null);
    for (const fn of this.onClose.splice(0)) fn();
  }

  /** Runs `fn` once when the subscriber closes (for whatever reason). */
  whenClosed(fn: () => void): void {
    if (this.closed) fn();
    else this.onClose.push(fn);
  }

  private enqueue(chunk: Buffer): void {
    this.queue.push(chunk);
    const waiter = this.waiter;
    if (waiter) {
      // Resolved with the queue as it is when the handler resumes: what arrives before then (the
      // rest of a batch, an ephemeral event's body after its id line) goes in the same write.
      this.waiter = undefined;
      queueMicrotask(() => {
        const chunks = this.queue;
        this.queue = [];
        this.queuedBytes = 0;
        waiter(this.closed ? null : chunks);
      });
      return;
    }
    this.account(chunk.length);
  }

  private account(bytes: number): void {
    this.queuedBytes += bytes;
    if (this.queuedBytes > this.maxQueuedBytes) this.close("overflow");
  }
}
