import { generateText, streamText } from "ai";
import { describe, expect, it } from "vitest";
import { classifyError } from "../../src/models/chat_error.ts";
import { localModel } from "../../src/models/local_model.ts";
import { buildTools } from "../../src/models/prompt.ts";

/* The built-in local/echo model (docs/api.md "Turns", the local model) through the AI SDK, as turns
 * call it. */

const echo = localModel("echo")!;

async function stream(
  prompt: string,
  opts: { signal?: AbortSignal; tools?: boolean; onDelta?: () => void } = {},
) {
  const result = streamText({
    model: echo,
    prompt,
    maxRetries: 0,
    abortSignal: opts.signal,
    tools: opts.tools
      ? buildTools([{ name: "lookup", input_schema: { type: "object" } }])
      : undefined,
    onError: () => {},
  });
  const deltas: string[] = [];
  const calls: unknown[] = [];
  let error: unknown;
  let finish: string | undefined;
  let usage: { inputTokens?: number; outputTokens?: number } | undefined;
  for await (const part of result.fullStream) {
    if (part.type === "text-delta") {
      deltas.push(part.text);
      opts.onDelta?.();
    }
    if (part.type === "tool-call") calls.push({ name: part.toolName, input: part.input });
    if (part.type === "error") error = part.error;
    if (part.type === "finish-step") {
      finish = part.finishReason;
      usage = part.usage;
    }
  }
  return { deltas, calls, error, finish, usage };
}

describe("local/echo", () => {
  it("answers the last user text as 'echo: <text>' in a few streamed parts, with tokens = characters / 4", async () => {
    const r = await stream("hello there, model");
    expect(r.deltas.join("")).toBe("echo: hello there, model");
    expect(r.deltas.length).toBeGreaterThan(1);
    expect(r.usage).toMatchObject({
      inputTokens: Math.ceil("hello there, model".length / 4),
      outputTokens: Math.ceil("echo: hello there, model".length / 4),
    });
  });

  it("calls a tool for '/tool <name> <json>'", async () => {
    const r = await stream('/tool lookup {"q": "x y"}', { tools: true });
    expect(r.calls).toEqual([{ name: "lookup", input: { q: "x y" } }]);
    expect(r.finish).toBe("tool-calls");
  });

  it("says so instead of calling a tool when the arguments are not JSON", async () => {
    const r = await stream("/tool lookup {not json", { tools: true });
    expect(r.calls).toEqual([]);
    expect(r.deltas.join("")).toMatch(/^echo: \/tool needs JSON arguments/);
  });

  it("fails like a provider for '/fail <kind>'", async () => {
    const kinds = [
      "rate_limit",
      "overloaded",
      "timeout",
      "auth",
      "config",
      "usage_limit",
      "missing_key",
      "generic",
    ];
    for (const kind of kinds) {
      const r = await stream(`/fail ${kind}`);
      expect(classifyError(r.error, "local").kind, kind).toBe(kind);
    }
    const filtered = await stream("/fail content_filter");
    expect(filtered.finish).toBe("content-filter");
    expect(filtered.deltas).toEqual([]);
  });

  it("streams '/sleep <ms>' slowly and stops at once when aborted", async () => {
    const controller = new AbortController();
    const started = Date.now();
    // Aborted once the first part is out (the next one is due 6 s later), not after a fixed
    // delay, which a loaded machine may let pass before the first part.
    const r = await stream("/sleep 60000", {
      signal: controller.signal,
      onDelta: () => controller.abort(),
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    const text = r.deltas.join("");
    expect(text.length).toBeGreaterThan(0);
    expect("echo: /sleep 60000".startsWith(text)).toBe(true);
    expect(text).not.toBe("echo: /sleep 60000");
  });

  it("answers tool results as 'tool <name> returned <result json>'", async () => {
    const { text } = await generateText({
      model: echo,
      messages: [
        { role: "user", content: "/tool lookup {}" },
        {
          role: "assistant",
          content: [{ type: "tool-call", toolCallId: "c1", toolName: "lookup", input: {} }],
        },
        {
          role: "tool",
          content: [
            {
              type: "tool-result",
              toolCallId: "c1",
              toolName: "lookup",
              output: { type: "json", value: { ok: true } },
            },
          ],
        },
      ],
    });
    expect(text).toBe('tool lookup returned {"ok":true}');
  });

  it("titles a conversation with its first user text (60 characters) and summarises its last reply", async () => {
    const messages = [
      { role: "user" as const, content: `  first   question ${"x".repeat(80)}` },
      { role: "assistant" as const, content: "the answer" },
      { role: "user" as const, content: "Write the title." },
    ];
    const title = await generateText({
      model: echo,
      messages,
      providerOptions: { local: { task: "title" } },
    });
    expect(title.text).toBe(`first question ${"x".repeat(80)}`.slice(0, 60));
    const summary = await generateText({
      model: echo,
      messages,
      providerOptions: { local: { task: "summary" } },
    });
    expect(summary.text).toBe("the answer");
  });

  it("has no model but echo", () => {
    expect(localModel("gpt-5")).toBeUndefined();
  });
});
