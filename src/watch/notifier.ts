import type { Logger } from "../log.ts";

/**
 * batched mode: the triggers only write chat_events, and this sends one NOTIFY per interval for
 * every local commit since the last one. A NOTIFY per transaction serialises commits on a
 * cluster-wide lock and wakes every listening backend (README "Measurements": write throughput
 * falls to 0.53–0.58× with 100 other listening connections); one per interval costs the same
 * however many commits it covers.
 */
export class BatchedNotifier {
  private timer: NodeJS.Timeout | undefined;
  private sending = false;
  private pending = false;
  private stopped = false;

  constructor(
    private readonly send: () => Promise<void>,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  poke(): void {
    if (this.stopped) return;
    this.pending = true;
    if (!this.timer && !this.sending) {
      this.timer = setTimeout(() => this.flush(), this.intervalMs);
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    if (!this.pending || this.stopped) return;
    this.pending = false;
    this.sending = true;
    try {
      await this.send();
    } catch (err) {
      // The other replicas' safety polls still find these events.
      this.log.warn({ err }, "batched NOTIFY failed");
    } finally {
      this.sending = false;
    }
    if (this.pending) this.poke();
  }
}
