import type { EphemeralEvent } from "../db/channels.ts";
import type { Logger } from "../log.ts";
import type { ChatError } from "../models/chat_error.ts";
import { maxPartChars, type StreamLease, splitForPart } from "../watch/index.ts";

/*
 * A turn's ephemeral stream events (docs/api.md: `message_part`, and `retry`), published to the
 * chat's subscribers on every replica. Each publication is a NOTIFY, so token deltas are coalesced:
 * at most one part per flush interval and kind, instead of one per token.
 */

/**
 * Publishes a chat stream event (src/watch publishEphemeral, or createEphemeralPublisher in a
 * runner process): stored as the turn's in-flight output and sent to every replica, unless `lease`
 * is no longer the chat's.
 */
export type Publish = (
  chatId: string,
  ownerId: string,
  event: EphemeralEvent,
  data: unknown,
  lease: StreamLease,
) => Promise<void>;

type DeltaKind = "text" | "reasoning";

export class PartStream {
  private kind: DeltaKind | undefined;
  private buffered = "";
  private timer: NodeJS.Timeout | undefined;
  /** Publications in order: each waits for the one before it. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly publish: Publish | undefined,
    private readonly chatId: string,
    private readonly ownerId: string,
    private readonly flushMs: number,
    private readonly logger: Logger,
    /** The run's lease: a run that lost it publishes nothing more. */
    private readonly lease: StreamLease,
  ) {}

  /** A streamed text or reasoning delta. */
  delta(kind: DeltaKind, text: string): void {
    if (!this.publish || !text) return;
    if (this.kind !== kind) this.flush();
    this.kind = kind;
    this.buffered += text;
    if (this.buffered.length >= maxPartChars) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.flushMs);
  }

  /** A complete tool call (its arguments are not streamed piecewise). */
  toolCall(toolCallId: string, toolName: string, args: unknown): void {
    this.flush();
    this.send("message_part", {
      chat_id: this.chatId,
      part: { type: "tool-call", tool_call_id: toolCallId, tool_name: toolName, args },
    });
  }

  /**
   * The provider call failed and attempt `attempt` (of `maxAttempts`) follows after `delayMs`:
   * clients drop the parts of the failed attempt and show the wait.
   */
  retry(attempt: number, maxAttempts: number, delayMs: number, error: ChatError): void {
    this.clearBuffer();
    this.send("retry", {
      chat_id: this.chatId,
      attempt,
      max_attempts: maxAttempts,
      delay_ms: delayMs,
      error,
    });
  }

  /** Publishes what is buffered now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.kind || !this.buffered) return;
    const kind = this.kind;
    for (const text of splitForPart(this.buffered)) {
      this.send("message_part", { chat_id: this.chatId, part: { type: kind, text } });
    }
    this.buffered = "";
  }

  /**
   * Flushes and waits until everything was handed over (before a step or the turn's end is
   * stored); the stream goes on after it.
   */
  async close(): Promise<void> {
    this.flush();
    await this.chain;
  }

  private clearBuffer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.buffered = "";
  }

  private send(event: EphemeralEvent, data: unknown): void {
    const publish = this.publish;
    if (!publish) return;
    // Ephemeral and best effort: a lost part is repaired by the stored message that follows.
    this.chain = this.chain
      .then(() => publish(this.chatId, this.ownerId, event, data, this.lease))
      .catch((err) => this.logger.debug({ err, chat: this.chatId }, "publishing a part failed"));
  }
}
