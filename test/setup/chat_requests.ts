import { expect } from "vitest";
import { createApp } from "../../src/server/app.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger, type testApp } from "./app.ts";
import { newPool } from "./db.ts";
import { checkResponse } from "./openapi.ts";

/*
 * Requests and reads shared by the message and queue route tests (test/server/chat_messages.test.ts,
 * test/server/chat_queue.test.ts). There is no runner in these tests, so chats are put into a
 * status with SQL (worker_id set = a runner holds the chat).
 */

export const base = "/api/experimental/chats";
export const text = (s: string) => [{ type: "text", text: s }];

/**
 * A second app on the file's database with its own 30-connection pool, so concurrent requests
 * really run in parallel (the file's app shares a pool of 10 with its fixtures).
 */
export function wideClient(dbUrl: string) {
  const app = createApp({ db: newPool(dbUrl, 30), logger: captureLogger().logger });
  return async (method: string, path: string, token: string, body?: unknown) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await app.request(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const raw = await res.text();
    // biome-ignore lint/suspicious/noExplicitAny: response JSON of any shape.
    const json: any = raw ? JSON.parse(raw) : undefined;
    await checkResponse(method, path, res.status, res.headers.get("content-type"), json);
    return { status: res.status, json };
  };
}

export type Status = "waiting" | "pending" | "running" | "requires_action" | "error";
export interface Member {
  id: string;
  token: string;
}

/** The helpers, bound to the file's app and organization once its beforeAll has made them. */
export function chatRequests(ctx: () => { t: Awaited<ReturnType<typeof testApp>>; orgId: string }) {
  type ChatOpts = Omit<Parameters<typeof gen.chat>[1], "ownerId">;

  const member = (): Promise<Member> =>
    gen.member(ctx().t.pool, { organizationIds: [ctx().orgId] });

  /** Puts a chat into `status`; `worker` simulates a runner holding it. */
  async function setStatus(chatId: string, status: Status, worker = false) {
    await gen.chatStatus(ctx().t.pool, chatId, status, { worker });
  }

  /** A chat of `u` (first message: a user "hello") in `status`. */
  async function chatIn(u: Member, status: Status, opts: ChatOpts & { worker?: boolean } = {}) {
    const { worker, ...rest } = opts;
    const chat = await gen.chat(ctx().t.pool, {
      ownerId: u.id,
      organizationId: ctx().orgId,
      ...rest,
    });
    await setStatus(chat.id, status, worker);
    return chat;
  }

  const call = (id: string, toolName = "read_file") => ({
    type: "tool-call",
    tool_call_id: id,
    tool_name: toolName,
    args: { path: "a" },
  });

  /** The model called client tools: an assistant message with tool calls, status requires_action. */
  async function requireAction(chatId: string, calls = [call("call_1")]) {
    const m = await gen.chatMessage(ctx().t.pool, chatId, {
      role: "assistant",
      content: [{ type: "text", text: "let me look" }, ...calls],
    });
    await setStatus(chatId, "requires_action");
    return m.id;
  }

  async function chatRow(chatId: string) {
    const { rows } = await ctx().t.pool.query(
      "SELECT status, worker_id, last_model_config_id, updated_at, archived FROM chats WHERE id = $1",
      [chatId],
    );
    return rows[0];
  }

  /** Every message of the chat, deleted and model-only ones included, oldest first. */
  async function stored(chatId: string) {
    const { rows } = await ctx().t.pool.query(
      `SELECT id, role, content, visibility, deleted, model_config_id, created_by, api_key_id
       FROM chat_messages WHERE chat_id = $1 ORDER BY id`,
      [chatId],
    );
    return rows;
  }

  /** The queue, in admission order. */
  async function queue(chatId: string) {
    const { rows } = await ctx().t.pool.query(
      `SELECT id, position, content, model_config_id FROM chat_queued_messages
       WHERE chat_id = $1 ORDER BY position`,
      [chatId],
    );
    return rows;
  }

  const firstText = (m: { content: { text?: string }[] }) => m.content[0]?.text;

  const send = (u: Member, chatId: string, body: unknown) =>
    ctx().t.call("POST", `${base}/${chatId}/messages`, { token: u.token, body });
  const history = (u: Member, chatId: string, query = "") =>
    ctx().t.call("GET", `${base}/${chatId}/messages${query}`, { token: u.token });
  const prompts = (u: Member, chatId: string, query = "") =>
    ctx().t.call("GET", `${base}/${chatId}/prompts${query}`, { token: u.token });
  const edit = (u: Member, chatId: string, messageId: number | string, content: unknown) =>
    ctx().t.call("PATCH", `${base}/${chatId}/messages/${messageId}`, {
      token: u.token,
      body: { content },
    });
  const promote = (u: Member, chatId: string, queuedId: number | string) =>
    ctx().t.call("POST", `${base}/${chatId}/queue/${queuedId}/promote`, { token: u.token });
  const toolResults = (u: Member, chatId: string, results: unknown) =>
    ctx().t.call("POST", `${base}/${chatId}/tool-results`, { token: u.token, body: { results } });
  const interrupt = (u: Member, chatId: string) =>
    ctx().t.call("POST", `${base}/${chatId}/interrupt`, { token: u.token });
  const archive = async (u: Member, chatId: string) => {
    const res = await ctx().t.call("PATCH", `${base}/${chatId}`, {
      token: u.token,
      body: { archived: true },
    });
    expect(res.status).toBe(204);
  };

  /** Queues `texts` on a busy chat, in order; returns the queued ids. */
  async function enqueue(u: Member, chatId: string, texts: string[], modelConfigId?: string) {
    const ids: number[] = [];
    for (const s of texts) {
      const res = await send(u, chatId, { content: text(s), model_config_id: modelConfigId });
      expect(res.json).toMatchObject({ queued: true });
      ids.push(res.json.queued_message.id);
    }
    return ids;
  }

  return {
    member,
    setStatus,
    chatIn,
    call,
    requireAction,
    chatRow,
    stored,
    queue,
    firstText,
    send,
    history,
    prompts,
    edit,
    promote,
    toolResults,
    interrupt,
    archive,
    enqueue,
  };
}
