import {
  AbstractChat,
  type ChatInit,
  type ChatState,
  type ChatStatus,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithToolCalls,
  type UIMessage,
} from "ai";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { createEphemeralPublisher } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { fakeOpenAI } from "../setup/fake_openai.ts";
import { eventually, messagesOf, settled, testRunner } from "../setup/runner.ts";
import { type TestServer, testServer } from "../setup/server.ts";

/*
 * The AI SDK's own client against pgchatd (docs/api.md "The AI SDK's useChat"): the `ai`
 * package's AbstractChat (what useChat wraps) with its DefaultChatTransport, over real sockets,
 * with pgchatd's runner answering. Only the chat state (React's, in a browser) is this file's.
 */

const base = "/api/experimental/chats";
let server: TestServer;
let orgId: string;

beforeAll(async () => {
  server = await testServer();
  orgId = (await gen.organization(server.pool)).id;
});
afterAll(() => server?.close());

/** The plain state useChat keeps in React, as arrays. */
class ArrayState implements ChatState<UIMessage> {
  status: ChatStatus = "ready";
  error: Error | undefined = undefined;
  messages: UIMessage[] = [];
  pushMessage = (m: UIMessage) => {
    this.messages = [...this.messages, m];
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (i: number, m: UIMessage) => {
    this.messages = [...this.messages.slice(0, i), m, ...this.messages.slice(i + 1)];
  };
  snapshot = <T>(thing: T): T => structuredClone(thing);
}

class NodeChat extends AbstractChat<UIMessage> {
  constructor(init: Omit<ChatInit<UIMessage>, "messages">) {
    super({ ...init, state: new ArrayState() });
  }
}

function transport(token: string) {
  return new DefaultChatTransport({
    api: `${server.url}${base}/ai-sdk`,
    headers: { authorization: `Bearer ${token}` },
  });
}

async function createChat(token: string, body: Record<string, unknown>) {
  const res = await fetch(`${server.url}${base}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

/** A chat whose first turn has run, so the next message starts a turn of its own. */
async function idleChat(token: string, extra: Record<string, unknown> = {}) {
  const chat = await createChat(token, { content: [{ type: "text", text: "hi" }], ...extra });
  await settled(server.pool, chat, "waiting");
  return chat;
}

function runner() {
  return testRunner({
    dbUrl: server.dbUrl,
    partFlushMs: 5,
    publish: createEphemeralPublisher(server.pool),
  });
}

const textOf = (m: UIMessage | undefined) =>
  (m?.parts ?? [])
    .filter((p) => p.type === "text")
    .map((p) => (p as { text: string }).text)
    .join("");

describe("DefaultChatTransport against /ai-sdk", () => {
  it("sends the last message and streams the turn into the assistant's message", async () => {
    await runner();
    const u = await gen.member(server.pool, { organizationIds: [orgId] });
    const chatId = await idleChat(u.token);
    const chat = new NodeChat({ id: chatId, transport: transport(u.token) });
    await chat.sendMessage({ text: "echo this back" });
    expect(chat.status).toBe("ready");
    expect(chat.error).toBeUndefined();
    expect(chat.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    const stored = (await messagesOf(server.pool, chatId)).filter((m) => m.role === "assistant");
    const answer = stored
      .at(-1)!
      .content.map((p) => p.text ?? "")
      .join("");
    expect(answer).toContain("echo this back");
    expect(textOf(chat.messages[1])).toBe(answer);
  });

  it("runs a client tool the model calls and sends its output back, and the turn goes on", async () => {
    await runner();
    const u = await gen.member(server.pool, { organizationIds: [orgId] });
    const chatId = await idleChat(u.token, {
      unsafe_dynamic_tools: [
        { name: "get_weather", description: "the weather", input_schema: { type: "object" } },
      ],
    });
    const calls: unknown[] = [];
    const chat: NodeChat = new NodeChat({
      id: chatId,
      transport: transport(u.token),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
      onToolCall: ({ toolCall }) => {
        calls.push(toolCall.input);
        // Not awaited, as the SDK's docs say: the output waits for this call's own job.
        void chat.addToolOutput({
          tool: toolCall.toolName as never,
          toolCallId: toolCall.toolCallId,
          output: { celsius: 21 } as never,
        });
      },
    });
    await chat.sendMessage({ text: '/tool get_weather {"city": "Paris"}' });
    await eventually(
      async () => (chat.status === "ready" && chat.messages.length === 2 ? true : undefined),
      "the automatic send of the tool output to finish",
    );
    await settled(server.pool, chatId, "waiting");
    expect(calls).toEqual([{ city: "Paris" }]);
    const stored = await messagesOf(server.pool, chatId);
    const result = stored.at(-2)!;
    expect(result.role).toBe("tool");
    expect(result.content[0]).toMatchObject({
      tool_call_id: expect.any(String),
      result: { celsius: 21 },
    });
    expect(textOf(chat.messages[1])).toBe('tool get_weather returned {"celsius":21}');
  });

  it("resumes a turn from another client mid-stream, from its start, and answers 204 once it is over", async () => {
    let release!: () => void;
    const until = new Promise<void>((r) => {
      release = r;
    });
    const fake = await fakeOpenAI(() => ({
      kind: "text",
      chunks: ["Hel", "lo, ", "wor", "ld"],
      pause: { at: 2, until },
    }));
    onTestFinished(async () => {
      release();
      await fake.close();
    });
    const provider = await gen.chatProvider(server.pool, { baseUrl: fake.url });
    const model = await gen.modelConfig(server.pool, { providerId: provider.id });
    await runner();
    const u = await gen.member(server.pool, { organizationIds: [orgId] });
    const chatId = await createChat(u.token, {
      content: [{ type: "text", text: "first" }],
      model_config_id: model.id,
    });
    // The first turn stops mid-stream; a second client (another tab, a reload) resumes it.
    await eventually(async () => {
      const { rows } = await server.pool.query(
        "SELECT 1 FROM chat_stream_parts WHERE chat_id = $1 AND body LIKE '%lo, %'",
        [chatId],
      );
      return rows.length > 0 ? true : undefined;
    }, "the first parts");
    const other = new NodeChat({ id: chatId, transport: transport(u.token) });
    const resumed = other.resumeStream();
    await eventually(
      async () => (textOf(other.messages[0]) === "Hello, " ? true : undefined),
      "the resumed stream to start with the turn's text so far",
    );
    release();
    await resumed;
    expect(other.messages.map((m) => m.role)).toEqual(["assistant"]);
    expect(textOf(other.messages[0])).toBe("Hello, world");
    expect(other.status).toBe("ready");
    // Nothing running: 204, and the client adds nothing.
    await settled(server.pool, chatId, "waiting");
    const late = new NodeChat({ id: chatId, transport: transport(u.token) });
    await late.resumeStream();
    expect(late.messages).toEqual([]);
    const res = await fetch(`${server.url}${base}/ai-sdk/${chatId}/stream`, {
      headers: { authorization: `Bearer ${u.token}` },
    });
    expect(res.status).toBe(204);
  });

  it("ends the stream cleanly when the turn is interrupted", async () => {
    let release!: () => void;
    const until = new Promise<void>((r) => {
      release = r;
    });
    const fake = await fakeOpenAI((req) =>
      req.lastUser === "hold on"
        ? { kind: "text", chunks: ["partial ", "never"], pause: { at: 1, until } }
        : { kind: "text", chunks: ["ok"] },
    );
    onTestFinished(async () => {
      release();
      await fake.close();
    });
    const provider = await gen.chatProvider(server.pool, { baseUrl: fake.url });
    const model = await gen.modelConfig(server.pool, { providerId: provider.id });
    await runner();
    const u = await gen.member(server.pool, { organizationIds: [orgId] });
    const chatId = await idleChat(u.token, { model_config_id: model.id });
    const chat = new NodeChat({ id: chatId, transport: transport(u.token) });
    const sent = chat.sendMessage({ text: "hold on" });
    await eventually(
      async () => (textOf(chat.messages[1]) === "partial " ? true : undefined),
      "the first part",
    );
    const stop = await fetch(`${server.url}${base}/${chatId}/interrupt`, {
      method: "POST",
      headers: { authorization: `Bearer ${u.token}` },
    });
    expect(stop.status).toBeLessThan(300);
    await sent;
    expect(chat.status).toBe("ready");
    expect(chat.error).toBeUndefined();
    // Were the model called twice for the turn, the text would be too: the message names why.
    const why = JSON.stringify({
      requests: fake.requests.map((r) => r.lastUser),
      stored: (await messagesOf(server.pool, chatId)).map((m) => [m.role, m.content]),
    });
    expect(textOf(chat.messages[1]), why).toBe("partial ");
  });

  it("refuses what it cannot take with 4xx, changing nothing", async () => {
    const u = await gen.member(server.pool, { organizationIds: [orgId] });
    const stranger = await gen.member(server.pool, { organizationIds: [orgId] });
    const chatId = await createChat(u.token, { content: [{ type: "text", text: "hi" }] });
    const before = (await messagesOf(server.pool, chatId)).length;
    const post = (token: string, body: unknown) =>
      fetch(`${server.url}${base}/ai-sdk`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const user = (parts: unknown[]) => ({ id: chatId, messages: [{ role: "user", parts }] });
    expect((await post(u.token, { id: chatId, messages: [] })).status).toBe(400);
    expect((await post(u.token, { ...user([]), id: "not-a-uuid" })).status).toBe(400);
    expect((await post(u.token, user([{ type: "file", url: "data:," }]))).status).toBe(400);
    expect((await post(u.token, user([]))).status).toBe(400);
    expect((await post(stranger.token, user([{ type: "text", text: "x" }]))).status).toBe(404);
    expect((await messagesOf(server.pool, chatId)).length).toBe(before);
  });
});
