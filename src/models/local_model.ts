import {
  APICallError,
  type LanguageModelV3,
  type LanguageModelV3CallOptions,
  type LanguageModelV3Content,
  type LanguageModelV3FinishReason,
  type LanguageModelV3Prompt,
  type LanguageModelV3StreamPart,
  type LanguageModelV3Usage,
  LoadAPIKeyError,
} from "@ai-sdk/provider";

/*
 * The built-in `local` provider's `echo` model (docs/api.md "Turns", the local model):
 * deterministic, free and offline, so a fresh install answers chats and the tests exercise the
 * whole runner. It is a real AI SDK LanguageModelV3, called through streamText like any provider.
 *
 *   <text>                   -> "echo: <text>", streamed in a few parts
 *   /tool <name> <json>      -> a call of tool <name> with <json> arguments
 *   /run <tool> <json>       -> a call of the built-in workspace tool <tool> (docs/api.md
 *                               "Workspace tools"); several `/run` lines make one step that
 *                               calls them all, `/tool` lines among them add client tool calls
 *   /plan <title>\n<markdown> -> a propose_plan call (plan mode, docs/api.md "Plan mode");
 *                               `/plan --hold <ms> <title>…` waits <ms> after the call before
 *                               finishing (for tests of an interrupt that lands then)
 *   /ask <question>          -> an ask_user_question call (plan mode)
 *   /tools                   -> "tools: <the names of the tools it was offered>"
 *   /fail <kind>             -> fails the way a provider does for that ChatError kind
 *   /sleep <ms>              -> streams its echo slowly over <ms> (for interrupt tests)
 *   (after tool results)     -> "tool <name> returned <result json>"
 * Usage: tokens = characters / 4, rounded up.
 *
 * Title and summary calls say so in providerOptions.local.task: a title is the first user text
 * (whitespace collapsed, at most 60 characters), a summary the last assistant text (at most 120).
 */

export const localModelIds = ["echo"] as const;

/** /sleep is for tests and demos; a longer one would hold a runner slot for no purpose. */
const maxSleepMs = 10 * 60_000;
/** /sleep streams this many parts, evenly spread over the time asked for. */
const sleepParts = 10;
const titleLength = 60;
const summaryLength = 120;

/** What a title or summary call asks for (providerOptions: { local: { task } }). */
export type LocalTask = "title" | "summary";

const tokens = (text: string) => Math.ceil(text.length / 4);
const collapse = (text: string) => text.replace(/\s+/g, " ").trim();

function usage(input: number, output: number): LanguageModelV3Usage {
  return {
    inputTokens: { total: input, noCache: input, cacheRead: 0, cacheWrite: 0 },
    outputTokens: { total: output, text: output, reasoning: 0 },
  };
}

function promptChars(prompt: LanguageModelV3Prompt): number {
  let n = 0;
  for (const m of prompt) {
    if (typeof m.content === "string") {
      n += m.content.length;
      continue;
    }
    for (const p of m.content) {
      if (p.type === "text" || p.type === "reasoning") n += p.text.length;
      else if (p.type === "tool-call") n += JSON.stringify(p.input ?? {}).length;
      else if (p.type === "tool-result") n += JSON.stringify(p.output).length;
    }
  }
  return n;
}

function textOf(content: LanguageModelV3Prompt[number]["content"]): string {
  if (typeof content === "string") return content;
  return content
    .map((p) => (p.type === "text" ? p.text : ""))
    .join("")
    .trim();
}

/** A provider-shaped failure for `/fail <kind>`, so it takes the same path as a real one. */
function failure(kind: string): Error | "content-filter" {
  const api = (statusCode: number, isRetryable: boolean, body: object) =>
    new APICallError({
      message: `local model: /fail ${kind}`,
      url: "local://echo",
      requestBodyValues: {},
      statusCode,
      responseBody: JSON.stringify(body),
      isRetryable,
    });
  switch (kind) {
    case "rate_limit":
      return api(429, true, { error: { message: "Rate limit reached.", code: "rate_limit" } });
    case "overloaded":
      return api(529, true, { error: { message: "Overloaded." } });
    case "timeout":
      return new DOMException("The local model timed out.", "TimeoutError");
    case "auth":
      return api(401, false, { error: { message: "Invalid API key." } });
    case "config":
      return api(400, false, { error: { message: "Unknown model." } });
    case "usage_limit":
      return api(429, false, { error: { message: "Quota exceeded.", code: "insufficient_quota" } });
    case "missing_key":
      return new LoadAPIKeyError({ message: "local model: /fail missing_key" });
    case "content_filter":
      return "content-filter";
    default:
      return new Error(`local model: /fail ${kind}`);
  }
}

interface Plan {
  content: LanguageModelV3Content[];
  /** Text parts as they are streamed; their concatenation is the text content. */
  chunks: string[];
  finishReason: LanguageModelV3FinishReason["unified"];
  /** Pause before each chunk after the first (/sleep). */
  delayMs: number;
  /** Pause after the tool calls, before the finish (/plan --hold). */
  holdMs?: number;
}

/** Splits a reply into `n` parts at word boundaries (fewer for short replies). */
function split(text: string, n: number): string[] {
  const words = text.split(/(?<= )/);
  const per = Math.max(1, Math.ceil(words.length / n));
  const out: string[] = [];
  for (let i = 0; i < words.length; i += per) out.push(words.slice(i, i + per).join(""));
  return out.length > 0 ? out : [""];
}

function textPlan(text: string, parts = 3, delayMs = 0): Plan {
  return {
    content: [{ type: "text", text }],
    chunks: split(text, parts),
    finishReason: "stop",
    delayMs,
  };
}

let callCounter = 0;

function toolCallPlan(toolName: string, input: unknown): Plan {
  return toolCallsPlan([{ toolName, input }]);
}

function toolCallsPlan(calls: { toolName: string; input: unknown }[]): Plan {
  return {
    content: calls.map((c) => {
      callCounter++;
      return {
        type: "tool-call" as const,
        // Unique across processes too: two runners' calls never share an id.
        toolCallId: `call_${crypto.randomUUID().slice(0, 8)}_${callCounter}`,
        toolName: c.toolName,
        input: JSON.stringify(c.input),
      };
    }),
    chunks: [],
    finishReason: "tool-calls",
    delayMs: 0,
  };
}

/**
 * `/run <tool> <json>` or `/tool <name> <json>` (the JSON may span lines), or several such lines:
 * the calls of one step; a string when an argument is not JSON; undefined for other text.
 */
function scriptedCalls(text: string): { toolName: string; input: unknown }[] | string | undefined {
  const command = /^\/(run|tool)\s+(\S+)\s*([\s\S]*)$/;
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const each = lines.length > 1 && lines.every((l) => command.test(l)) ? lines : [text];
  const calls = [];
  for (const line of each) {
    const m = command.exec(line);
    if (!m) return undefined;
    try {
      calls.push({ toolName: m[2]!, input: JSON.parse(m[3]?.trim() || "{}") });
    } catch {
      return `echo: /${m[1]} needs JSON arguments, got ${JSON.stringify(m[3])}`;
    }
  }
  return calls;
}

function plan(options: LanguageModelV3CallOptions): Plan | Error {
  const prompt = options.prompt;
  const task = (options.providerOptions?.local as { task?: LocalTask } | undefined)?.task;
  if (task === "title") {
    const first = prompt.find((m) => m.role === "user");
    return textPlan(collapse(first ? textOf(first.content) : "").slice(0, titleLength), 1);
  }
  if (task === "summary") {
    const last = [...prompt].reverse().find((m) => m.role === "assistant");
    return textPlan(collapse(last ? textOf(last.content) : "").slice(0, summaryLength), 1);
  }

  const last = prompt[prompt.length - 1];
  if (last?.role === "tool") {
    const lines = last.content.flatMap((p) =>
      p.type === "tool-result"
        ? [
            `tool ${p.toolName} returned ${JSON.stringify("value" in p.output ? p.output.value : null)}`,
          ]
        : [],
    );
    return textPlan(lines.join("\n"));
  }
  const lastUser = [...prompt].reverse().find((m) => m.role === "user");
  const text = lastUser ? textOf(lastUser.content) : "";

  const scripted = scriptedCalls(text);
  if (typeof scripted === "string") return textPlan(scripted);
  if (scripted) return toolCallsPlan(scripted);
  const planned = /^\/plan\s+(?:--hold\s+(\d+)\s+)?([^\n]*)\n?([\s\S]*)$/.exec(text);
  if (planned) {
    return {
      ...toolCallPlan("propose_plan", {
        title: planned[2]!.trim(),
        plan_markdown: planned[3]!.trim() || planned[2]!.trim(),
      }),
      holdMs: Math.min(Number(planned[1] ?? 0), maxSleepMs),
    };
  }
  const ask = /^\/ask\s+([\s\S]+)$/.exec(text);
  if (ask) return toolCallPlan("ask_user_question", { question: ask[1]!.trim() });
  if (/^\/tools\s*$/.test(text)) {
    const names = (options.tools ?? []).map((t) => t.name).sort();
    return textPlan(`tools: ${names.join(", ") || "(none)"}`, 1);
  }
  const fail = /^\/fail\s+(\S+)\s*$/.exec(text);
  if (fail) {
    const f = failure(fail[1]!);
    if (f === "content-filter")
      return { content: [], chunks: [], finishReason: "content-filter", delayMs: 0 };
    return f;
  }
  const sleep = /^\/sleep\s+(\d+)\s*$/.exec(text);
  if (sleep) {
    const ms = Math.min(Number(sleep[1]), maxSleepMs);
    return textPlan(`echo: ${text}`, sleepParts, ms / sleepParts);
  }
  return textPlan(`echo: ${text}`);
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
}

function sleepFor(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function outputTokens(p: Plan): number {
  return p.content.reduce(
    (n, c) =>
      n + (c.type === "text" ? tokens(c.text) : c.type === "tool-call" ? tokens(c.input) : 0),
    0,
  );
}

/** The `local` provider's model by id; only `echo` exists. */
export function localModel(modelId: string): LanguageModelV3 | undefined {
  if (!(localModelIds as readonly string[]).includes(modelId)) return undefined;
  return {
    specificationVersion: "v3",
    provider: "local",
    modelId,
    supportedUrls: {},

    async doGenerate(options) {
      const p = plan(options);
      if (p instanceof Error) throw p;
      await sleepFor(p.delayMs * Math.max(0, p.chunks.length - 1), options.abortSignal);
      return {
        content: p.content,
        finishReason: { unified: p.finishReason, raw: p.finishReason },
        usage: usage(Math.ceil(promptChars(options.prompt) / 4), outputTokens(p)),
        response: { id: `local-${crypto.randomUUID()}`, modelId, timestamp: new Date() },
        warnings: [],
      };
    },

    async doStream(options) {
      const p = plan(options);
      if (p instanceof Error) throw p;
      const signal = options.abortSignal;
      const input = Math.ceil(promptChars(options.prompt) / 4);
      const stream = new ReadableStream<LanguageModelV3StreamPart>({
        async start(controller) {
          try {
            controller.enqueue({ type: "stream-start", warnings: [] });
            controller.enqueue({
              type: "response-metadata",
              id: `local-${crypto.randomUUID()}`,
              modelId,
              timestamp: new Date(),
            });
            if (p.chunks.length > 0 && p.content.some((c) => c.type === "text")) {
              controller.enqueue({ type: "text-start", id: "0" });
              for (const [i, chunk] of p.chunks.entries()) {
                if (i > 0 && p.delayMs > 0) await sleepFor(p.delayMs, signal);
                controller.enqueue({ type: "text-delta", id: "0", delta: chunk });
              }
              controller.enqueue({ type: "text-end", id: "0" });
            }
            for (const c of p.content) {
              if (c.type === "tool-call") controller.enqueue(c);
            }
            if (p.holdMs) await sleepFor(p.holdMs, signal);
            controller.enqueue({
              type: "finish",
              finishReason: { unified: p.finishReason, raw: p.finishReason },
              usage: usage(input, outputTokens(p)),
            });
            controller.close();
          } catch (err) {
            controller.error(err);
          }
        },
      });
      return { stream };
    },
  };
}
