import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import {
  type FakeAnswer,
  type FakeOpenAI,
  type FakeRequest,
  fakeOpenAI,
} from "../setup/fake_openai.ts";
import { chatState, eventually, messagesOf, settled, testRunner, textOf } from "../setup/runner.ts";

/*
 * Turns on real provider code: the AI SDK's openai-compatible (and openai) providers talking HTTP
 * to a fake chat completions server on loopback. Providers and model configs are set up through
 * the owner routes, so the API key takes the real path: sealed at rest, opened by the runner.
 */

const base = "/api/experimental/chats";
const text = (s: string) => [{ type: "text", text: s }];

let t: Awaited<ReturnType<typeof testApp>>;
let fake: FakeOpenAI;
let ownerToken: string;
let ownerId: string;
let orgId: string;
/** What the fake answers for the next request whose last user text matches. */
const answers: { match: (r: FakeRequest) => boolean; answer: () => FakeAnswer }[] = [];

beforeAll(async () => {
  t = await testApp();
  fake = await fakeOpenAI((req) => {
    const hit = answers.find((a) => a.match(req));
    if (hit) return hit.answer();
    if (req.lastUser.includes("Write the title"))
      return { kind: "text", chunks: ["Title: “Fake Title From Model”"] };
    if (req.lastUser.includes("Summarise"))
      return { kind: "text", chunks: ["Fake summary of the turn."] };
    return {
      kind: "text",
      chunks: ["Hello", " from", " fake"],
      usage: { prompt_tokens: 10, completion_tokens: 5, cached_tokens: 4 },
    };
  });
  const org = await gen.organization(t.pool);
  orgId = org.id;
  const owner = await gen.user(t.pool, { owner: true, organizationIds: [org.id] });
  ownerId = owner.id;
  ownerToken = await gen.apiKey(t.pool, owner.id);
});

afterAll(async () => {
  await fake?.close();
});

const apiKey = () => `sk-test-${randomBytes(18).toString("hex")}`;

/** A provider at the fake server (a path per provider: one provider per endpoint) and a model. */
async function fakeModel(opts: { provider?: string; key?: string | null; pricing?: object } = {}) {
  const provider = await t.call("POST", `${base}/providers`, {
    token: ownerToken,
    body: {
      provider: opts.provider ?? "openai-compatible",
      base_url: `${fake.url}?p=${randomBytes(4).toString("hex")}`,
      ...(opts.key === null ? {} : { api_key: opts.key ?? apiKey() }),
    },
  });
  expect(provider.status, provider.text).toBe(201);
  const model = await t.call("POST", `${base}/model-configs`, {
    token: ownerToken,
    body: {
      provider_id: provider.json.id,
      model: "fake-model",
      context_limit: 32_000,
      pricing: opts.pricing,
    },
  });
  expect(model.status, model.text).toBe(201);
  return model.json.id as string;
}

async function chatOn(model: string, content: string, extra: Record<string, unknown> = {}) {
  const res = await t.call("POST", base, {
    token: ownerToken,
    body: { content: text(content), model_config_id: model, ...extra },
  });
  expect(res.status, res.text).toBe(201);
  return res.json.id as string;
}

const requestsFor = (s: string) => fake.requests.filter((r) => r.lastUser === s);

describe("an OpenAI-compatible provider", () => {
  it("streams a reply, records its usage and its cost from the model's pricing, and titles and summarises the chat", async () => {
    const key = apiKey();
    const model = await fakeModel({
      key,
      pricing: { input: 1_000_000, output: 2_000_000, cache_read: 100_000, cache_write: 0 },
    });
    const { runner, published } = await testRunner({ secrets: t.secrets });
    const chat = await chatOn(model, "hi fake");
    runner.wake();
    await settled(t.pool, chat, "waiting");
    const [request] = requestsFor("hi fake");
    expect(request!.headers.authorization).toBe(`Bearer ${key}`);
    expect(request!.body.stream).toBe(true);
    const [, reply] = await messagesOf(t.pool, chat);
    expect(textOf(reply!)).toBe("Hello from fake");
    // 6 uncached input tokens at 1 $/M, 4 cached at 0.1 $/M, 5 output at 2 $/M: 16.4 micros.
    expect(reply).toMatchObject({
      input_tokens: 10,
      output_tokens: 5,
      total_tokens: 15,
      total_cost_micros: 16,
      context_limit: 32_000,
    });
    const streamed = published
      .filter((p) => p.chatId === chat && p.event === "message_part")
      .map((p) => (p.data as { part: { text: string } }).part.text)
      .join("");
    expect(streamed).toBe("Hello from fake");
    const state = await eventually(async () => {
      const s = await chatState(t.pool, chat);
      return s.title === "Fake Title From Model" && s.last_turn_summary ? s : undefined;
    }, "the generated title and summary");
    expect(state.last_turn_summary).toBe("Fake summary of the turn.");
  });

  it("sends the chat's client tools and ends in requires_action on a tool call", async () => {
    const model = await fakeModel();
    answers.push({
      match: (r) => r.lastUser === "use the tool",
      answer: () => ({ kind: "tool", name: "lookup", args: { q: "x" }, id: "call_42" }),
    });
    const { runner } = await testRunner({ secrets: t.secrets });
    const chat = await chatOn(model, "use the tool", {
      unsafe_dynamic_tools: [
        {
          name: "lookup",
          description: "Looks up.",
          input_schema: { type: "object", properties: { q: { type: "string" } } },
        },
      ],
    });
    runner.wake();
    await settled(t.pool, chat, "requires_action");
    const [request] = requestsFor("use the tool");
    expect(request!.body.tools.map((x: { function: { name: string } }) => x.function.name)).toEqual(
      ["lookup"],
    );
    const [, call] = await messagesOf(t.pool, chat);
    expect(call!.content).toEqual([
      { type: "tool-call", tool_call_id: "call_42", tool_name: "lookup", args: { q: "x" } },
    ]);
  });

  it("sends the chat's uploaded image with the message that names it", async () => {
    const model = await fakeModel();
    const bytes = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
    const file = await gen.chatFile(t.pool, {
      ownerId,
      organizationId: orgId,
      name: "shot.png",
      mimetype: "image/png",
      data: bytes,
    });
    const { runner } = await testRunner({ secrets: t.secrets });
    const res = await t.call("POST", base, {
      token: ownerToken,
      body: {
        content: [
          { type: "text", text: "look at this" },
          { type: "file", file_id: file.id },
        ],
        model_config_id: model,
      },
    });
    expect(res.status, res.text).toBe(201);
    runner.wake();
    await settled(t.pool, res.json.id, "waiting");
    const [request] = requestsFor("look at this");
    const user = request!.body.messages.find((m: { role: string }) => m.role === "user");
    expect(user.content).toContainEqual({
      type: "image_url",
      image_url: { url: `data:image/png;base64,${bytes.toString("base64")}` },
    });
  });

  it("puts the chat's pinned instruction files and skills into the prompt, after its system prompt", async () => {
    const model = await fakeModel();
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId });
    const agent = (await gen.build(t.pool, ws.id)).agents[0]!;
    const pushed = await t.call("PUT", "/api/v2/workspaceagents/me/context", {
      headers: { "coder-agent-token": agent.token },
      body: {
        resources: [
          { source: "AGENTS.md", kind: "instruction_file", body: "Always answer in French." },
          { source: "skills/sql/SKILL.md", kind: "skill", body: "Write SQL in upper case." },
          { source: ".mcp.json", kind: "mcp_config", body: "{}" },
          { source: "big.md", kind: "instruction_file", body: "", status: "oversize" },
        ],
      },
    });
    expect(pushed.status, pushed.text).toBe(200);
    const { runner } = await testRunner({ secrets: t.secrets });
    const chat = await chatOn(model, "with context", {
      workspace_id: ws.id,
      system_prompt: "You are terse.",
    });
    runner.wake();
    await settled(t.pool, chat, "waiting");
    const [request] = requestsFor("with context");
    const system = request!.body.messages.filter((m: { role: string }) => m.role === "system");
    expect(system[0].content).toBe("You are terse.");
    expect(system[1].content).toBe(
      [
        "Context from the workspace:",
        '<instruction-file source="AGENTS.md">\nAlways answer in French.\n</instruction-file>',
        '<skill source="skills/sql/SKILL.md">\nWrite SQL in upper case.\n</skill>',
      ].join("\n\n"),
    );
    expect(request!.body.messages.at(-1)).toMatchObject({ role: "user" });
    // What the model saw, for a UI ("this answer used AGENTS.md @ …") and for a DBA.
    const sha = (s: string) => createHash("sha256").update(s).digest("hex");
    const shown = await t.call("GET", `${base}/${chat}`, { token: ownerToken });
    expect(shown.json.last_injected_context).toEqual({
      resources: [
        {
          source: "AGENTS.md",
          kind: "instruction_file",
          sha256: sha("Always answer in French."),
          bytes: 24,
        },
        {
          source: "skills/sql/SKILL.md",
          kind: "skill",
          sha256: sha("Write SQL in upper case."),
          bytes: 24,
        },
      ],
      context_files: [],
    });

    // The agent adds a context file; the next turn carries it too.
    const added = await t.call("POST", "/api/v2/workspaceagents/me/chat-context", {
      headers: { "coder-agent-token": agent.token },
      body: { chat_id: chat, files: [{ path: "docs/rules.md", content: "Be kind." }] },
    });
    expect(added.status, added.text).toBe(200);
    const next = await t.call("POST", `${base}/${chat}/messages`, {
      token: ownerToken,
      body: { content: text("again with context") },
    });
    expect(next.status, next.text).toBe(200);
    runner.wake();
    await settled(t.pool, chat, "waiting");
    const again = await t.call("GET", `${base}/${chat}`, { token: ownerToken });
    expect(again.json.last_injected_context.context_files).toEqual([
      { path: "docs/rules.md", sha256: sha("Be kind."), bytes: 8, message_id: expect.any(Number) },
    ]);

    // The agent drops everything; once the chat is re-pinned, the next turn carried nothing.
    const cleared = await t.call(
      "DELETE",
      `/api/v2/workspaceagents/me/chat-context?chat_id=${chat}`,
      {
        headers: { "coder-agent-token": agent.token },
      },
    );
    expect(cleared.status, cleared.text).toBe(200);
    const emptied = await t.call("PUT", "/api/v2/workspaceagents/me/context", {
      headers: { "coder-agent-token": agent.token },
      body: { resources: [] },
    });
    expect(emptied.status, emptied.text).toBe(200);
    const repinned = await t.call("PUT", `${base}/${chat}/context`, { token: ownerToken });
    expect(repinned.status, repinned.text).toBe(200);
    await t.call("POST", `${base}/${chat}/messages`, {
      token: ownerToken,
      body: { content: text("without context") },
    });
    runner.wake();
    await settled(t.pool, chat, "waiting");
    expect(requestsFor("without context")).toHaveLength(1);
    const last = await t.call("GET", `${base}/${chat}`, { token: ownerToken });
    expect(last.json.last_injected_context).toBeNull();
  });

  it("answers a chat whose agent never pushed context, recording why it has none", async () => {
    const model = await fakeModel();
    const ws = await gen.workspace(t.pool, { organizationId: orgId, ownerId });
    await gen.build(t.pool, ws.id);
    const { runner } = await testRunner({ secrets: t.secrets });
    const chat = await chatOn(model, "no context yet", { workspace_id: ws.id });
    runner.wake();
    await settled(t.pool, chat, "waiting");
    const got = await t.call("GET", `${base}/${chat}`, { token: ownerToken });
    expect(got.json.context.error).toBe("The workspace agent has not pushed its context yet.");
    // Nothing was injected: the column is never written. The one system message says why the
    // workspace tools are missing (the agent never connected), not what the workspace holds.
    expect(got.json.last_injected_context).toBeNull();
    expect(
      requestsFor("no context yet")[0]!.body.messages.filter(
        (m: { role: string }) => m.role === "system",
      ),
    ).toEqual([
      {
        role: "system",
        content: expect.stringMatching(
          /^The workspace agent is offline \(it has never connected\)/,
        ),
      },
    ]);
  });

  it("retries a 429 after the wait it asks for, announcing the retry, and then answers", async () => {
    const model = await fakeModel();
    let calls = 0;
    answers.push({
      match: (r) => r.lastUser === "busy provider",
      answer: () =>
        ++calls === 1
          ? {
              kind: "status",
              status: 429,
              body: { error: { message: "slow down", type: "rate_limit" } },
              headers: { "retry-after-ms": "30" },
            }
          : { kind: "text", chunks: ["after the wait"] },
    });
    const { runner, published } = await testRunner({
      secrets: t.secrets,
      retry: { retries: 3, baseDelayMs: 1, maxDelayMs: 1_000 },
    });
    const chat = await chatOn(model, "busy provider");
    runner.wake();
    await settled(t.pool, chat, "waiting");
    expect(requestsFor("busy provider")).toHaveLength(2);
    const retries = published.filter((p) => p.chatId === chat && p.event === "retry");
    expect(retries).toHaveLength(1);
    expect(retries[0]!.data).toMatchObject({
      attempt: 2,
      error: { kind: "rate_limit", status_code: 429 },
    });
    // At least what Retry-After asked for.
    expect((retries[0]!.data as { delay_ms: number }).delay_ms).toBeGreaterThanOrEqual(30);
    expect(textOf((await messagesOf(t.pool, chat))[1]!)).toBe("after the wait");
  });

  it("fails a turn the provider answers 401 with kind auth, without the key in the error or the logs", async () => {
    const key = apiKey();
    const model = await fakeModel({ key });
    answers.push({
      match: (r) => r.lastUser === "bad key",
      answer: () => ({
        kind: "status",
        status: 401,
        body: { error: { message: `Incorrect API key provided: ${key}` } },
      }),
    });
    const { runner, logLines } = await testRunner({ secrets: t.secrets });
    const chat = await chatOn(model, "bad key");
    runner.wake();
    const state = await settled(t.pool, chat, "error");
    expect(state.last_error).toMatchObject({
      kind: "auth",
      status_code: 401,
      retryable: false,
      provider: "openai-compatible",
    });
    expect(requestsFor("bad key")).toHaveLength(1);
    expect(JSON.stringify(state.last_error)).not.toContain(key);
    expect(logLines.join("")).not.toContain(key);
    expect(t.logLines.join("")).not.toContain(key);
  });

  it("classifies a 5xx after its retries as a generic, retryable error with the provider's message", async () => {
    const model = await fakeModel();
    answers.push({
      match: (r) => r.lastUser === "server down",
      answer: () => ({
        kind: "status",
        status: 500,
        body: { error: { message: "internal failure" } },
      }),
    });
    const { runner } = await testRunner({
      secrets: t.secrets,
      retry: { retries: 1, baseDelayMs: 1, maxDelayMs: 2 },
    });
    const chat = await chatOn(model, "server down");
    runner.wake();
    const state = await settled(t.pool, chat, "error");
    expect(state.last_error).toMatchObject({
      kind: "generic",
      status_code: 500,
      retryable: true,
      detail: "internal failure",
    });
    expect(requestsFor("server down")).toHaveLength(2);
  });
});

describe("provider keys", () => {
  it("fails closed with missing_key for an openai provider without a key, even with OPENAI_API_KEY set, calling nothing", async () => {
    const model = await fakeModel({ provider: "openai", key: null });
    const { runner } = await testRunner({ secrets: t.secrets });
    const before = process.env.OPENAI_API_KEY;
    process.env.OPENAI_API_KEY = "sk-from-the-environment";
    try {
      const chat = await chatOn(model, "no key here");
      runner.wake();
      const state = await settled(t.pool, chat, "error");
      expect(state.last_error).toMatchObject({ kind: "missing_key", retryable: false });
      expect(fake.requests.filter((r) => r.lastUser === "no key here")).toHaveLength(0);
    } finally {
      if (before === undefined) delete process.env.OPENAI_API_KEY;
      else process.env.OPENAI_API_KEY = before;
    }
  });

  it("fails with kind config when the runner's secret key cannot open the stored API key", async () => {
    const model = await fakeModel();
    // A runner with another secret key than the server that sealed the API key.
    const { runner } = await testRunner();
    const chat = await chatOn(model, "wrong secret key");
    runner.wake();
    const state = await settled(t.pool, chat, "error");
    expect(state.last_error).toMatchObject({ kind: "config" });
    expect(fake.requests.filter((r) => r.lastUser === "wrong secret key")).toHaveLength(0);
  });
});

describe("POST /{chat}/title/regenerate", () => {
  /** A chat with `turns` user messages, each answered; no runner touches it. */
  async function chatWithTurns(model: string, turns: number, prefix = "turn") {
    const chat = await chatOn(model, `${prefix} 1`);
    await t.pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat]);
    await gen.chatMessage(t.pool, chat, { text: "reply 1" });
    for (let i = 2; i <= turns; i++) {
      await gen.chatMessage(t.pool, chat, { role: "user", text: `${prefix} ${i}` });
      await gen.chatMessage(t.pool, chat, { text: `reply ${i}` });
    }
    return chat;
  }

  it("titles the chat from its first turn and its last three, marking the turns left out", async () => {
    const model = await fakeModel();
    const chat = await chatWithTurns(model, 7);
    const res = await t.call("POST", `${base}/${chat}/title/regenerate`, { token: ownerToken });
    expect(res.status, res.text).toBe(200);
    expect(res.json.title).toBe("Fake Title From Model");
    // This chat's title request: a turn's follow-up of an earlier test may reach the fake late.
    const request = fake.requests.findLast(
      (r) =>
        r.lastUser.includes("Write the title") &&
        r.body.messages.some((m: { content: unknown }) => m.content === "turn 7"),
    )!;
    const convo = request.body.messages
      .filter((m: { role: string }) => m.role !== "system")
      .map(
        (m: { role: string; content: unknown }) =>
          `${m.role}: ${typeof m.content === "string" ? m.content : JSON.stringify(m.content)}`,
      );
    expect(convo).toEqual([
      "user: turn 1",
      "assistant: reply 1",
      "user: [… 3 turns left out …]",
      "user: turn 5",
      "assistant: reply 5",
      "user: turn 6",
      "assistant: reply 6",
      "user: turn 7",
      "assistant: reply 7",
      "user: Write the title of the conversation above.",
    ]);
    // A regenerated title replaces one the user set: they asked for it.
    await t.call("PATCH", `${base}/${chat}`, { token: ownerToken, body: { title: "mine" } });
    const again = await t.call("POST", `${base}/${chat}/title/regenerate`, { token: ownerToken });
    expect(again.json.title).toBe("Fake Title From Model");
  });

  it("runs one regeneration of a chat at a time: a second one meanwhile gets 409", async () => {
    const model = await fakeModel();
    const chat = await chatWithTurns(model, 1);
    // The row a regeneration in progress holds (chat_title_regeneration_begin).
    await t.pool.query("INSERT INTO chat_title_regenerations (chat_id) VALUES ($1)", [chat]);
    const meanwhile = await t.call("POST", `${base}/${chat}/title/regenerate`, {
      token: ownerToken,
    });
    expect(meanwhile.status).toBe(409);
    await t.pool.query("DELETE FROM chat_title_regenerations WHERE chat_id = $1", [chat]);
    const after = await t.call("POST", `${base}/${chat}/title/regenerate`, { token: ownerToken });
    expect(after.status).toBe(200);
    // Done: the next one may run.
    const next = await t.call("POST", `${base}/${chat}/title/regenerate`, { token: ownerToken });
    expect(next.status).toBe(200);
  });

  it("answers 404 for another user's chat and 502 with the ChatError kind when the provider fails", async () => {
    const model = await fakeModel();
    const chat = await chatWithTurns(model, 1);
    const stranger = await gen.user(t.pool, { organizationIds: [orgId] });
    const res = await t.call("POST", `${base}/${chat}/title/regenerate`, {
      token: await gen.apiKey(t.pool, stranger.id),
    });
    expect(res.status).toBe(404);

    const failing = await chatWithTurns(model, 1, "doomed");
    answers.push({
      match: (r) =>
        r.lastUser.includes("Write the title") &&
        r.body.messages.some((m: { content: unknown }) => m.content === "doomed 1"),
      answer: () => ({ kind: "status", status: 503, body: { error: { message: "overloaded" } } }),
    });
    const failed = await t.call("POST", `${base}/${failing}/title/regenerate`, {
      token: ownerToken,
    });
    expect(failed.status).toBe(502);
    expect(failed.json).toMatchObject({ message: "The model provider is overloaded." });
    expect(failed.json.detail).toMatch(/^overloaded/);
    // The chat can be retitled once the provider is back.
    answers.pop();
    const retried = await t.call("POST", `${base}/${failing}/title/regenerate`, {
      token: ownerToken,
    });
    expect(retried.status).toBe(200);
  });
});
