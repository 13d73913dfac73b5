/** One dispatched SSE block: its event name (default "message"), data lines and `id:`. */
export interface SseBlock {
  event: string;
  /** Undefined for a block without data (a comment with an `id:`, pgchatd's keep-alive). */
  data: string | undefined;
  /** The block's `id:`, when it has one. */
  id: string | undefined;
}

/**
 * The text/event-stream framing of the WHATWG spec. Written here rather than taken from
 * eventsource-parser because that parser drops a block that has an `id:` but no data, and
 * pgchatd's keep-alives move a client's Last-Event-ID exactly so (docs/api.md "Streams"), as
 * browsers' EventSource honours.
 */
export class SseDecoder {
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private id: string | undefined;
  private fields = 0;

  /** Feeds decoded text; returns the blocks it completed. */
  feed(text: string): SseBlock[] {
    this.buffer += text;
    const out: SseBlock[] = [];
    let start = 0;
    for (;;) {
      const nl = this.buffer.slice(start).search(/\r\n|\r|\n/);
      if (nl < 0) break;
      const end = start + nl;
      // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
      if (this.buffer[end] === "\r" && end + 1 === this.buffer.length) break;
      const line = this.buffer.slice(start, end);
      start = end + (this.buffer.startsWith("\r\n", end) ? 2 : 1);
      const block = this.line(line);
      if (block) out.push(block);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  private line(line: string): SseBlock | undefined {
    if (line === "") {
      const block =
        this.fields > 0
          ? {
              event: this.event || "message",
              data: this.data.length > 0 ? this.data.join("\n") : undefined,
              id: this.id,
            }
          : undefined;
      this.event = "";
      this.data = [];
      this.id = undefined;
      this.fields = 0;
      return block?.data !== undefined || block?.id !== undefined ? block : undefined;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else return undefined;
    this.fields++;
    return undefined;
  }
}
