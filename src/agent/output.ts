/*
 * A command's captured stream: its first and last halves of `max` characters, whatever it prints
 * in between (a build that logs gigabytes keeps the agent's memory flat), and what is new since
 * the last progress report.
 */
export class CapturedOutput {
  private head = "";
  private tail = "";
  private total = 0;
  /** Printed since the last takeNew(), at most `max` characters (the newest). */
  private fresh = "";

  constructor(private readonly max: number) {}

  append(chunk: string): void {
    if (!chunk) return;
    // PostgreSQL text cannot hold NUL: a binary byte in the output must not cost the result.
    chunk = chunk.replaceAll("\u0000", "\uFFFD");
    this.total += chunk.length;
    const half = this.max / 2;
    if (this.head.length < half) {
      const room = half - this.head.length;
      this.head += chunk.slice(0, room);
      chunk = chunk.slice(room);
    }
    if (chunk) this.tail = (this.tail + chunk).slice(-half);
    this.fresh = (this.fresh + chunk).slice(-this.max);
  }

  get truncated(): boolean {
    return this.total > this.head.length + this.tail.length;
  }

  /** The kept text, with a marker where output was cut. */
  text(): string {
    if (!this.truncated) return this.head + this.tail;
    const cut = this.total - this.head.length - this.tail.length;
    return `${this.head}\n[… ${cut} characters cut …]\n${this.tail}`;
  }

  /** What was printed since the last call (for progress reports). */
  takeNew(): string {
    const out = this.fresh;
    this.fresh = "";
    return out;
  }
}
