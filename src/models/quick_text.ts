import { generateText, type ModelMessage } from "ai";
import type { LocalTask } from "./local_model.ts";
import type { ResolvedModel } from "./providers.ts";

/*
 * Short texts about a conversation (titles, turn summaries), asked of the chat's own model. They
 * are conveniences: a failure leaves the old value and never fails a turn.
 */

/** A title or summary that takes longer than this is not worth waiting for. */
export const quickTextTimeoutMs = 30_000;

export interface QuickTextRequest {
  task: LocalTask;
  /** What to write, as the system message. */
  instructions: string;
  /** The conversation it is about. */
  messages: ModelMessage[];
  /** The final user message that asks for it. */
  ask: string;
  /** Longer answers are cut (at a word boundary when there is one). */
  maxLength: number;
  signal?: AbortSignal | undefined;
}

/** The first non-empty line, without a "Title:" label, quotes or markdown, whitespace collapsed. */
export function normalizeQuickText(text: string, maxLength: number): string {
  const line = text
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l !== "");
  if (!line) return "";
  let s = line
    .replace(/^(title|summary)\s*:\s*/i, "")
    .replace(/^[#*_`"'“”‘’\s]+|[*_`"'“”‘’\s]+$/g, "")
    .replace(/\s+/g, " ")
    .trim();
  if (s.length > maxLength) {
    const cut = s.slice(0, maxLength);
    const space = cut.lastIndexOf(" ");
    s = (space > maxLength / 2 ? cut.slice(0, space) : cut).trimEnd();
  }
  return s;
}

export async function generateQuickText(
  model: ResolvedModel,
  req: QuickTextRequest,
): Promise<string> {
  const timeout = AbortSignal.timeout(quickTextTimeoutMs);
  const { text } = await generateText({
    model: model.model,
    system: req.instructions,
    messages: [...req.messages, { role: "user", content: req.ask }],
    // The built-in local model recognises the task; OpenAI's Responses API keeps nothing of a
    // title or summary (nothing continues from them); other providers ignore both keys.
    providerOptions: { local: { task: req.task }, openai: { store: false } },
    // No retries: a failed title or summary leaves the old one, and a request waits for this.
    maxRetries: 0,
    abortSignal: req.signal ? AbortSignal.any([req.signal, timeout]) : timeout,
  });
  return normalizeQuickText(text, req.maxLength);
}
