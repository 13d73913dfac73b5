import type { UIMessageChunk, UIMessageStreamWriter } from "ai";
import { createParser } from "eventsource-parser";
import type { Pool } from "../db/index.ts";
import { listChatMessagesAfterIDByChatID } from "../generated/chat_messages.ts";
import { listChatStreamPartsByChatID } from "../generated/chat_stream_parts.ts";
import type { Subscriber } from "./subscriber.ts";

/*
 * A chat's turn as the Vercel AI SDK's UI message stream (docs/api.md "The AI SDK's useChat"):
 * the chat stream's events of one subscriber, translated into the chunks `useChat` renders (text
 * and reasoning blocks, tool calls and results, steps), until the chat stops working. Written
 * here rather than with the SDK's own streamText: the turn runs in pgchatd's runner, maybe in
 * another process; this process only relays what the chat stream says.
 */

interface Part {
  type: string;
  text?: string;
  tool_call_id?: string;
  tool_name?: string;
  args?: unknown;
  result?: unknown;
  is_error?: boolean;
}

interface StoredMessage {
  id: number;
  role: string;
  content: Part[];
}

/** Statuses after which the chat waits for someone else: the turn (and the stream) is over. */
const settledStatuses = new Set(["waiting", "requires_action", "error"]);

/** Writes UI chunks for one assistant response, however many pgchatd steps it takes. */
export class UiTurnWriter {
  private started = false;
  private stepOpen = false;
  private block: { type: "text" | "reasoning"; id: string } | undefined;
  private blocks = 0;
  /** Tool calls written: a result is written only for a call the client saw. */
  private readonly calls = new Set<string>();

  constructor(private readonly write: (chunk: UIMessageChunk) => void) {}

  start(): void {
    if (this.started) return;
    this.started = true;
    this.write({ type: "start" });
  }

  /** A streamed part of the running step (message_part). */
  part(part: Part): void {
    this.openStep();
    if (part.type === "text" || part.type === "reasoning") {
      this.delta(part.type, part.text ?? "");
    } else if (part.type === "tool-call") {
      this.toolCall(part);
    }
  }

  /**
   * A stored message of the turn: closes the assistant's step, or answers built-in calls.
   * `replayed`: read from the history for a resume (its parts never streamed here), so its content
   * is written. Live, the step's parts carry the content: a part's NOTIFY may trail the message's
   * event, and writing the message's content too would show it twice.
   */
  message(m: StoredMessage, replayed = false): void {
    if (m.role === "assistant") {
      this.openStep();
      if (replayed) for (const p of m.content) this.part(p);
      this.closeBlock();
      this.write({ type: "finish-step" });
      this.stepOpen = false;
    } else if (m.role === "tool") {
      for (const p of m.content) {
        if (p.type !== "tool-result" || !p.tool_call_id || !this.calls.has(p.tool_call_id)) {
          continue;
        }
        this.write(
          p.is_error
            ? {
                type: "tool-output-error",
                toolCallId: p.tool_call_id,
                errorText: errorTextOf(p.result),
              }
            : { type: "tool-output-available", toolCallId: p.tool_call_id, output: p.result },
        );
      }
    }
  }

  /** The turn failed: the ChatError's message. */
  error(message: string): void {
    this.closeBlock();
    this.write({ type: "error", errorText: message });
  }

  finish(): void {
    this.start();
    this.closeBlock();
    if (this.stepOpen) this.write({ type: "finish-step" });
    this.stepOpen = false;
    this.write({ type: "finish" });
  }

  private openStep(): void {
    this.start();
    if (this.stepOpen) return;
    this.stepOpen = true;
    this.write({ type: "start-step" });
  }

  private delta(type: "text" | "reasoning", text: string): void {
    if (this.block?.type !== type) {
      this.closeBlock();
      this.block = { type, id: `${type}-${++this.blocks}` };
      this.write({ type: `${type}-start`, id: this.block.id });
    }
    if (text) this.write({ type: `${type}-delta`, id: this.block.id, delta: text });
  }

  private toolCall(part: Part): void {
    this.closeBlock();
    const id = part.tool_call_id ?? "";
    if (this.calls.has(id)) return;
    this.calls.add(id);
    this.write({
      type: "tool-input-available",
      toolCallId: id,
      toolName: part.tool_name ?? "",
      input: part.args ?? {},
    });
  }

  private closeBlock(): void {
    if (!this.block) return;
    this.write({ type: `${this.block.type}-end`, id: this.block.id });
    this.block = undefined;
  }
}

function errorTextOf(result: unknown): string {
  const e = (result as { error?: unknown } | null)?.error;
  return typeof e === "string" ? e : JSON.stringify(result);
}

export interface UiStreamOptions {
  db: Pool;
  sub: Subscriber;
  chatId: string;
  writer: UIMessageStreamWriter;
  /**
   * Whether the chat has settled now (waiting, requires_action or error, nothing queued): asked
   * when a status event says so, because a stream that registered behind the log's head can
   * first receive the status a turn before the request's left.
   */
  settled: () => Promise<boolean>;
  /**
   * A resume: first what the running turn did so far (its stored steps after `afterMessageId`,
   * then its in-flight parts), then live.
   */
  replayAfterMessageId?: number;
}

/**
 * Relays the chat's stream events to `writer` as UI chunks until the chat settles (waiting,
 * requires_action or error, with nothing queued: `settled`) or the subscriber closes. The subscriber must be
 * registered (held) before whatever started the turn committed; this releases it.
 */
export async function pumpUiStream(opts: UiStreamOptions): Promise<void> {
  const { sub, writer } = opts;
  const turn = new UiTurnWriter((chunk) => writer.write(chunk));
  turn.start();
  if (opts.replayAfterMessageId !== undefined) {
    const stored = await listChatMessagesAfterIDByChatID(opts.db, {
      chat_id: opts.chatId,
      after_id: opts.replayAfterMessageId,
      page_limit: 1000,
    });
    const sent = new Set<number>();
    for (const m of stored) {
      turn.message(m as StoredMessage, true);
      sent.add(m.id);
    }
    sub.alreadySent(sent);
    const parts = await listChatStreamPartsByChatID(opts.db, { chat_id: opts.chatId });
    for (const p of parts) {
      if (p.in_flight_body) handleEvents(p.in_flight_body);
    }
    if (parts.length > 0) sub.partsThrough = Number(parts[parts.length - 1]!.seq);
  }
  let maybeSettled = false;
  let failed: string | undefined;

  function handle(event: string, data: string): void {
    const d = JSON.parse(data);
    switch (event) {
      case "message_part":
        turn.part(d.part as Part);
        break;
      case "message":
        if (d.role === "assistant" || d.role === "tool") turn.message(d as StoredMessage);
        break;
      case "status":
        maybeSettled = settledStatuses.has(d.status);
        break;
      case "error":
        failed = (d as { message?: string }).message ?? "The turn failed.";
        break;
    }
  }

  function handleEvents(text: string): void {
    const parser = createParser({ onEvent: (e) => handle(e.event ?? "message", e.data) });
    parser.feed(text);
  }

  sub.release();
  for (;;) {
    const chunk = await sub.take();
    if (chunk === null) return;
    // One take is whole SSE blocks (frames are queued whole): parse them on their own.
    handleEvents(Buffer.concat(chunk).toString());
    if (failed) {
      turn.error(failed);
      failed = undefined;
    }
    if (maybeSettled) {
      maybeSettled = false;
      if (await opts.settled()) break;
    }
  }
  turn.finish();
}
