import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { base, chatRequests, type Member, text, wideClient } from "../setup/chat_requests.ts";

/*
 * The message routes of docs/api.md: history, send (queue, interrupt, model switch), edit,
 * prompts, tool results and interrupt (the queue's own routes: chat_queue.test.ts). There is no
 * runner here, so tests put chats into a status with SQL (worker_id set = a runner holds the
 * chat). The SQL-level rules are in test/sql/chat_messages.test.ts.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

const timestamp = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const unknownId = "00000000-0000-4000-8000-000000000000";

const {
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
  toolResults,
  interrupt,
  archive,
  enqueue,
} = chatRequests(() => ({ t, orgId }));

describe("GET /chats/{chat}/messages", () => {
  it("lists visible messages newest first, hiding deleted and model-only ones (the system prompt)", async () => {
    const u = await member();
    const chat = await gen.chat(t.pool, {
      ownerId: u.id,
      organizationId: orgId,
      system_prompt: "Be terse.",
    });
    const [system, hello] = await stored(chat.id);
    expect([system.role, system.visibility, hello.role]).toEqual(["system", "model", "user"]);
    const add = (opts: Parameters<typeof gen.chatMessage>[2]) =>
      gen.chatMessage(t.pool, chat.id, opts);
    const a1 = await add({ role: "assistant", text: "a1" });
    await add({ role: "assistant", text: "for the model only", visibility: "model" });
    const userOnly = await add({ role: "user", text: "shown to the user", visibility: "user" });
    const gone = await add({ role: "user", text: "gone" });
    await t.pool.query("UPDATE chat_messages SET deleted = true WHERE id = $1", [gone.id]);
    const tool = await add({
      role: "tool",
      content: [{ type: "tool-result", tool_call_id: "c", tool_name: "x", result: 1 }],
    });

    const res = await history(u, chat.id);
    expect(res.status).toBe(200);
    expect(res.json.messages.map((m: { id: number }) => m.id)).toEqual([
      tool.id,
      userOnly.id,
      a1.id,
      hello.id,
    ]);
    expect(res.json).toMatchObject({ queued_messages: [], has_more: false });
  });

  it("pages newest first with limit, before_id and after_id; has_more is true exactly when older matches remain", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const ids = [(await stored(chat.id))[0].id as number];
    for (let i = 1; i <= 6; i++) {
      ids.push((await gen.chatMessage(t.pool, chat.id, { text: `m${i}` })).id);
    }
    const m = (i: number) => ids[i]!;
    const page = async (query: string) => {
      const res = await history(u, chat.id, query);
      expect(res.status).toBe(200);
      return {
        ids: res.json.messages.map((x: { id: number }) => x.id),
        has_more: res.json.has_more,
      };
    };
    const desc = (...is: number[]) => is.map(m);
    expect(await page("?limit=3")).toEqual({ ids: desc(6, 5, 4), has_more: true });
    expect(await page(`?limit=3&before_id=${m(4)}`)).toEqual({
      ids: desc(3, 2, 1),
      has_more: true,
    });
    expect(await page(`?limit=3&before_id=${m(1)}`)).toEqual({ ids: desc(0), has_more: false });
    expect(await page(`?limit=3&before_id=${m(0)}`)).toEqual({ ids: [], has_more: false });
    expect(await page("?limit=7")).toEqual({ ids: desc(6, 5, 4, 3, 2, 1, 0), has_more: false });
    expect(await page("?limit=6")).toEqual({ ids: desc(6, 5, 4, 3, 2, 1), has_more: true });
    expect(await page(`?after_id=${m(2)}&before_id=${m(5)}&limit=2`)).toEqual({
      ids: desc(4, 3),
      has_more: false,
    });
    expect(await page(`?after_id=${m(2)}&before_id=${m(5)}&limit=1`)).toEqual({
      ids: desc(4),
      has_more: true,
    });
    expect(await page(`?after_id=${m(6)}`)).toEqual({ ids: [], has_more: false });
  });

  it("pages oldest first with after_id alone, so a poller advancing to each page's last id sees every message once", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const first = (await stored(chat.id))[0].id as number;
    const ids = [first];
    for (let i = 1; i <= 6; i++) {
      ids.push((await gen.chatMessage(t.pool, chat.id, { text: `m${i}` })).id);
    }
    await gen.chatMessage(t.pool, chat.id, { text: "hidden", visibility: "model" });
    const seen: number[] = [];
    let after = first;
    for (;;) {
      const res = await history(u, chat.id, `?after_id=${after}&limit=4`);
      expect(res.status).toBe(200);
      const page = res.json.messages.map((x: { id: number }) => x.id) as number[];
      seen.push(...page);
      if (!res.json.has_more) break;
      after = page.at(-1)!;
    }
    expect(seen).toEqual(ids.slice(1));
    // A message stored after the poll is the next poll's first.
    const late = await gen.chatMessage(t.pool, chat.id, { text: "late" });
    const next = await history(u, chat.id, `?after_id=${ids[6]}`);
    expect(next.json).toMatchObject({ messages: [{ id: late.id }], has_more: false });
    // after_id=0 is a poller's first page: from the first message, oldest first.
    const start = await history(u, chat.id, "?after_id=0&limit=3");
    expect(start.json.messages.map((x: { id: number }) => x.id)).toEqual(ids.slice(0, 3));
    expect(start.json.has_more).toBe(true);
  });

  it("refuses after_id at or above before_id with 400", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    for (const q of ["?after_id=5&before_id=5", "?after_id=6&before_id=5"]) {
      const res = await history(u, chat.id, q);
      expect(res.status, q).toBe(400);
      expect(res.text).toContain("after_id must be less than before_id");
    }
  });

  it("does not count hidden messages for has_more", async () => {
    const u = await member();
    const chat = await gen.chat(t.pool, {
      ownerId: u.id,
      organizationId: orgId,
      system_prompt: "Be terse.",
    });
    await t.pool.query("UPDATE chat_messages SET deleted = true WHERE chat_id = $1", [chat.id]);
    await gen.chatMessage(t.pool, chat.id, { text: "hidden", visibility: "model" });
    const a1 = await gen.chatMessage(t.pool, chat.id, { text: "a1" });
    const a2 = await gen.chatMessage(t.pool, chat.id, { text: "a2" });
    const two = await history(u, chat.id, "?limit=2");
    expect(two.json).toMatchObject({ has_more: false });
    expect(two.json.messages.map((x: { id: number }) => x.id)).toEqual([a2.id, a1.id]);
    expect((await history(u, chat.id, "?limit=1")).json.has_more).toBe(true);
    const older = await history(u, chat.id, `?before_id=${a1.id}`);
    expect(older.json).toMatchObject({ messages: [], has_more: false });
  });

  it("defaults to 50 per page and allows up to 200", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    await t.pool.query(
      `INSERT INTO chat_messages (chat_id, role, content)
       SELECT $1, 'assistant', jsonb_build_array(jsonb_build_object('type', 'text', 'text', 'm' || g))
       FROM generate_series(1, 54) g`,
      [chat.id],
    );
    const first = await history(u, chat.id);
    expect(first.json.messages).toHaveLength(50);
    expect(first.json.has_more).toBe(true);
    expect(firstText(first.json.messages[0])).toBe("m54");
    const all = await history(u, chat.id, "?limit=200");
    expect(all.json.messages).toHaveLength(55);
    expect(all.json.has_more).toBe(false);
    expect((await history(u, chat.id, "?limit=1")).json.messages).toHaveLength(1);
  });

  it("rejects a limit outside 1..200 and non-integer message ids with 400", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    for (const query of [
      "limit=0",
      "limit=201",
      "limit=x",
      "limit=1.5",
      "limit=-1",
      "before_id=x",
      "before_id=1.5",
      "before_id=0",
      "before_id=-3",
      "after_id=abc",
      "after_id=2.5",
    ]) {
      const res = await history(u, chat.id, `?${query}`);
      expect({ query, status: res.status }).toEqual({ query, status: 400 });
      expect(res.json.validations.length).toBeGreaterThan(0);
    }
    expect((await t.call("GET", `${base}/nope/messages`, { token: u.token })).status).toBe(400);
  });

  it("shows queued messages only on the first page (no before_id), oldest first", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const [hello] = await stored(chat.id);
    await enqueue(u, chat.id, ["q1", "q2", "q3"]);
    const first = await history(u, chat.id);
    expect(first.json.queued_messages.map(firstText)).toEqual(["q1", "q2", "q3"]);
    expect(first.json.queued_messages[0]).toEqual({
      id: expect.any(Number),
      chat_id: chat.id,
      content: text("q1"),
      created_at: expect.stringMatching(timestamp),
      model_config_id: chat.last_model_config_id,
      created_by: u.id,
    });
    const after = await history(u, chat.id, `?after_id=${hello.id}`);
    expect(after.json.queued_messages.map(firstText)).toEqual(["q1", "q2", "q3"]);
    const older = await history(u, chat.id, `?before_id=${hello.id + 1}`);
    expect(older.json.messages.map((x: { id: number }) => x.id)).toEqual([hello.id]);
    expect(older.json.queued_messages).toEqual([]);
  });

  it("answers 404 for another user's chat and for an unknown chat", async () => {
    const owner = await member();
    const other = await member();
    const chat = await chatIn(owner, "waiting");
    expect((await history(other, chat.id)).status).toBe(404);
    expect((await history(other, unknownId)).status).toBe(404);
  });

  it("shapes a ChatMessage: usage is null without usage columns and an object once they are set", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const reply = await gen.chatMessage(t.pool, chat.id, { text: "answer" });
    const res = await history(u, chat.id);
    const [assistant, user] = res.json.messages;
    expect(user).toEqual({
      id: expect.any(Number),
      chat_id: chat.id,
      created_at: expect.stringMatching(timestamp),
      role: "user",
      content: text("hello"),
      model_config_id: chat.last_model_config_id,
      created_by: u.id,
      usage: null,
      total_cost_micros: null,
      runtime_ms: null,
    });
    expect(assistant).toMatchObject({ id: reply.id, role: "assistant", created_by: null });
    expect(assistant.usage).toBeNull();

    // Usage is written once, with the message (as a turn stores it).
    const { rows } = await t.pool.query(
      `INSERT INTO chat_messages (chat_id, role, content, input_tokens, output_tokens,
         total_tokens, reasoning_tokens, cache_creation_tokens, cache_read_tokens, context_limit,
         total_cost_micros, runtime_ms)
       VALUES ($1, 'assistant', $2, 100, 20, 120, 5, 3, 40, 128000, 1234, 987)
       RETURNING id`,
      [chat.id, JSON.stringify(text("answer"))],
    );
    const withUsage = (await history(u, chat.id)).json.messages[0];
    expect(withUsage).toEqual({
      id: rows[0].id,
      chat_id: chat.id,
      created_at: expect.stringMatching(timestamp),
      role: "assistant",
      content: text("answer"),
      model_config_id: null,
      created_by: null,
      usage: {
        input_tokens: 100,
        output_tokens: 20,
        total_tokens: 120,
        reasoning_tokens: 5,
        cache_creation_tokens: 3,
        cache_read_tokens: 40,
        context_limit: 128000,
      },
      total_cost_micros: 1234,
      runtime_ms: 987,
    });
  });
});

describe("POST /chats/{chat}/messages", () => {
  it("admits a message on a waiting or error chat: stored, queued false, status pending, updated_at moves", async () => {
    for (const status of ["waiting", "error"] as const) {
      const u = await member();
      const chat = await chatIn(u, status);
      await t.pool.query("UPDATE chats SET updated_at = '2020-01-01Z' WHERE id = $1", [chat.id]);
      const res = await send(u, chat.id, { content: text(`after ${status}`) });
      expect(res.status).toBe(200);
      expect(res.json).toEqual({
        queued: false,
        message: {
          id: expect.any(Number),
          chat_id: chat.id,
          created_at: expect.stringMatching(timestamp),
          role: "user",
          content: text(`after ${status}`),
          model_config_id: chat.last_model_config_id,
          created_by: u.id,
          usage: null,
          total_cost_micros: null,
          runtime_ms: null,
        },
      });
      const rows = await stored(chat.id);
      expect(rows.at(-1)).toMatchObject({
        id: res.json.message.id,
        role: "user",
        visibility: "both",
        api_key_id: u.token.split("-")[0],
      });
      expect(await queue(chat.id)).toEqual([]);
      const after = await t.call("GET", `${base}/${chat.id}`, { token: u.token });
      expect(after.json.status).toBe("pending");
      expect(after.json.updated_at).not.toBe("2020-01-01T00:00:00.000000Z");
    }
  });

  it("queues FIFO while the chat is pending, running or requires_action, leaving the status alone", async () => {
    for (const status of ["pending", "running", "requires_action"] as const) {
      const u = await member();
      const chat = await chatIn(u, status);
      const before = await stored(chat.id);
      const first = await send(u, chat.id, { content: text("one") });
      expect(first.status).toBe(200);
      expect(first.json).toEqual({
        queued: true,
        queued_message: {
          id: expect.any(Number),
          chat_id: chat.id,
          content: text("one"),
          created_at: expect.stringMatching(timestamp),
          model_config_id: chat.last_model_config_id,
          created_by: u.id,
        },
      });
      await send(u, chat.id, { content: text("two") });
      expect((await queue(chat.id)).map(firstText)).toEqual(["one", "two"]);
      expect(await stored(chat.id)).toEqual(before);
      expect((await chatRow(chat.id)).status).toBe(status);
      const listed = await history(u, chat.id);
      expect(listed.json.queued_messages.map(firstText)).toEqual(["one", "two"]);
    }
  });

  it("queues on a waiting chat while its queue is not empty", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    await enqueue(u, chat.id, ["first"]);
    await setStatus(chat.id, "waiting");
    const res = await send(u, chat.id, { content: text("second") });
    expect(res.json).toMatchObject({ queued: true, queued_message: { content: text("second") } });
    expect((await queue(chat.id)).map(firstText)).toEqual(["first", "second"]);
    expect((await chatRow(chat.id)).status).toBe("waiting");
  });

  it("refuses the 21st queued message with 429 and stores nothing", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const texts = Array.from({ length: 20 }, (_, i) => `q${i + 1}`);
    await enqueue(u, chat.id, texts);
    const before = await stored(chat.id);
    const res = await send(u, chat.id, { content: text("q21") });
    expect(res.status).toBe(429);
    expect(res.json.message).toEqual(expect.any(String));
    expect((await queue(chat.id)).map(firstText)).toEqual(texts);
    expect(await stored(chat.id)).toEqual(before);
    // busy_behavior interrupt does not get around the limit either.
    const interrupting = await send(u, chat.id, {
      content: text("q21"),
      busy_behavior: "interrupt",
    });
    expect(interrupting.status).toBe(429);
    expect(await queue(chat.id)).toHaveLength(20);
    expect((await chatRow(chat.id)).status).toBe("running");
  });

  it("rejects a busy_behavior other than queue or interrupt, and malformed bodies, with 400", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const before = await stored(chat.id);
    for (const body of [
      { content: text("x"), busy_behavior: "later" },
      { content: text("x"), busy_behavior: "" },
      { content: text("x"), busy_behavior: 1 },
      { content: [] },
      { content: text("") },
      { content: [{ type: "image", url: "x" }] },
      { content: text("x"), surprise: true },
      { content: text("x"), model_config_id: "not-a-uuid" },
    ]) {
      const res = await send(u, chat.id, body);
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
    }
    expect(await queue(chat.id)).toEqual([]);
    expect(await stored(chat.id)).toEqual(before);
  });

  it("busy_behavior interrupt on a running chat held by a worker queues the message and sets waiting", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const before = await stored(chat.id);
    const res = await send(u, chat.id, {
      content: text("stop, do this instead"),
      busy_behavior: "interrupt",
    });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      queued: true,
      queued_message: { content: text("stop, do this instead") },
    });
    expect(res.json.message).toBeUndefined();
    expect((await chatRow(chat.id)).status).toBe("waiting");
    // The runner that holds the chat admits it when it stops; until then it stays queued.
    expect((await queue(chat.id)).map(firstText)).toEqual(["stop, do this instead"]);
    expect(await stored(chat.id)).toEqual(before);
  });

  it("busy_behavior interrupt on a pending chat with no worker admits this message at once when the queue was empty", async () => {
    const u = await member();
    const chat = await chatIn(u, "pending");
    const res = await send(u, chat.id, { content: text("now"), busy_behavior: "interrupt" });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      queued: false,
      message: { role: "user", content: text("now"), created_by: u.id },
    });
    expect(res.json.queued_message).toBeUndefined();
    expect(await queue(chat.id)).toEqual([]);
    expect((await stored(chat.id)).at(-1)).toMatchObject({ id: res.json.message.id, role: "user" });
    expect((await chatRow(chat.id)).status).toBe("pending");
  });

  it("busy_behavior interrupt on a pending chat with no worker admits the head of a non-empty queue", async () => {
    const u = await member();
    const chat = await chatIn(u, "pending");
    await enqueue(u, chat.id, ["head"]);
    const res = await send(u, chat.id, { content: text("tail"), busy_behavior: "interrupt" });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ queued: true, queued_message: { content: text("tail") } });
    expect((await queue(chat.id)).map(firstText)).toEqual(["tail"]);
    const last = (await stored(chat.id)).at(-1);
    expect(last).toMatchObject({ role: "user", content: text("head") });
    expect((await chatRow(chat.id)).status).toBe("pending");
  });

  it("busy_behavior interrupt on requires_action answers the pending calls with errors, then admits the message", async () => {
    const u = await member();
    const chat = await chatIn(u, "pending");
    const assistantId = await requireAction(chat.id, [call("call_1"), call("call_2", "write")]);
    const res = await send(u, chat.id, { content: text("never mind"), busy_behavior: "interrupt" });
    expect(res.json).toMatchObject({ queued: false, message: { content: text("never mind") } });
    const after = (await stored(chat.id)).filter((m) => m.id > assistantId);
    expect(after.map((m) => m.role)).toEqual(["tool", "user"]);
    expect(after[0].content).toEqual([
      expect.objectContaining({ type: "tool-result", tool_call_id: "call_1", is_error: true }),
      expect.objectContaining({ type: "tool-result", tool_call_id: "call_2", is_error: true }),
    ]);
    expect((await chatRow(chat.id)).status).toBe("pending");
  });

  it("switches the chat's model with the message when it names another usable model config", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const other = await gen.modelConfig(t.pool);
    expect(other.id).not.toBe(chat.last_model_config_id);
    const res = await send(u, chat.id, { content: text("on B"), model_config_id: other.id });
    expect(res.json.message.model_config_id).toBe(other.id);
    expect((await chatRow(chat.id)).last_model_config_id).toBe(other.id);
    // A later message without a model runs on the chat's (new) model.
    await setStatus(chat.id, "waiting");
    const next = await send(u, chat.id, { content: text("still B") });
    expect(next.json.message.model_config_id).toBe(other.id);
    // A queued message keeps the model it was sent with.
    await setStatus(chat.id, "running", true);
    const third = await gen.modelConfig(t.pool);
    const queued = await send(u, chat.id, { content: text("on C"), model_config_id: third.id });
    expect(queued.json.queued_message.model_config_id).toBe(third.id);
  });

  it("rejects an unknown or disabled model config with 400 and stores nothing", async () => {
    const u = await member();
    const disabled = await gen.modelConfig(t.pool, { enabled: false });
    const offProvider = await gen.modelConfig(t.pool, {
      providerId: (await gen.chatProvider(t.pool, { enabled: false })).id,
    });
    const deleted = await gen.modelConfig(t.pool);
    await t.pool.query("UPDATE chat_model_configs SET deleted = true WHERE id = $1", [deleted.id]);
    for (const status of ["waiting", "running"] as const) {
      const chat = await chatIn(u, status);
      const before = await stored(chat.id);
      for (const model of [unknownId, disabled.id, offProvider.id, deleted.id]) {
        const res = await send(u, chat.id, { content: text("x"), model_config_id: model });
        expect({ status, model, code: res.status }).toEqual({ status, model, code: 400 });
      }
      expect(await stored(chat.id)).toEqual(before);
      expect(await queue(chat.id)).toEqual([]);
      expect(await chatRow(chat.id)).toMatchObject({
        status,
        last_model_config_id: chat.last_model_config_id,
      });
    }
  });

  it("rejects a message to an archived chat with 400 and stores nothing", async () => {
    const u = await member();
    for (const status of ["waiting", "running"] as const) {
      const chat = await chatIn(u, status);
      await archive(u, chat.id);
      const before = await stored(chat.id);
      const res = await send(u, chat.id, { content: text("x") });
      expect(res.status).toBe(400);
      expect(res.json.message).toBe("Chat is archived.");
      expect(await stored(chat.id)).toEqual(before);
      expect(await queue(chat.id)).toEqual([]);
    }
  });

  it("accepts file parts naming the caller's files and rejects another user's file with 400", async () => {
    const u = await member();
    const other = await member();
    const mine = await gen.chatFile(t.pool, { ownerId: u.id, organizationId: orgId });
    const theirs = await gen.chatFile(t.pool, { ownerId: other.id, organizationId: orgId });
    const chat = await chatIn(u, "waiting");
    const before = await stored(chat.id);
    for (const fileId of [theirs.id, unknownId]) {
      const res = await send(u, chat.id, {
        content: [...text("see"), { type: "file", file_id: fileId }],
      });
      expect(res.status).toBe(400);
    }
    expect(await stored(chat.id)).toEqual(before);
    const links = async () =>
      (
        await t.pool.query("SELECT file_id FROM chat_file_links WHERE chat_id = $1", [chat.id])
      ).rows.map((r) => r.file_id);
    expect(await links()).toEqual([]);
    const ok = await send(u, chat.id, {
      content: [...text("see"), { type: "file", file_id: mine.id }],
    });
    expect(ok.status).toBe(200);
    expect(ok.json.message.content).toEqual([...text("see"), { type: "file", file_id: mine.id }]);
    expect(await links()).toEqual([mine.id]);
  });

  it("answers 404 for another user's chat and stores nothing", async () => {
    const owner = await member();
    const other = await member();
    const chat = await chatIn(owner, "waiting");
    const before = await stored(chat.id);
    expect((await send(other, chat.id, { content: text("x") })).status).toBe(404);
    expect((await send(other, unknownId, { content: text("x") })).status).toBe(404);
    expect(await stored(chat.id)).toEqual(before);
    expect((await chatRow(chat.id)).status).toBe("waiting");
  });
});

describe("PATCH /chats/{chat}/messages/{message}", () => {
  it("replaces a user message: deletes it and every later one, clears the queue, starts a turn", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const [hello] = await stored(chat.id);
    const a1 = await gen.chatMessage(t.pool, chat.id, { text: "a1" });
    const u2 = await send(u, chat.id, { content: text("u2") });
    const a3 = await gen.chatMessage(t.pool, chat.id, { text: "a3" });
    const hidden = await gen.chatMessage(t.pool, chat.id, { text: "model", visibility: "model" });
    await setStatus(chat.id, "running", true);
    await enqueue(u, chat.id, ["q1", "q2"]);

    const res = await edit(u, chat.id, u2.json.message.id, text("u2, better"));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      message: expect.objectContaining({
        role: "user",
        content: text("u2, better"),
        created_by: u.id,
      }),
      deleted_message_ids: [u2.json.message.id, a3.id, hidden.id],
    });
    const rows = await stored(chat.id);
    expect(rows.map((m) => [m.id, m.deleted])).toEqual([
      [hello.id, false],
      [a1.id, false],
      [u2.json.message.id, true],
      [a3.id, true],
      [hidden.id, true],
      [res.json.message.id, false],
    ]);
    expect(await queue(chat.id)).toEqual([]);
    expect((await chatRow(chat.id)).status).toBe("pending");

    const listed = await history(u, chat.id);
    expect(listed.json.messages.map((m: { id: number }) => m.id)).toEqual([
      res.json.message.id,
      a1.id,
      hello.id,
    ]);
    expect(listed.json.queued_messages).toEqual([]);
  });

  it("rejects editing an assistant or tool message with 400, and a message the client cannot see (system prompt, context files) with 404, changing nothing", async () => {
    const u = await member();
    const chat = await gen.chat(t.pool, {
      ownerId: u.id,
      organizationId: orgId,
      system_prompt: "sys",
    });
    await setStatus(chat.id, "waiting");
    const [system] = await stored(chat.id);
    const assistant = await gen.chatMessage(t.pool, chat.id, { role: "assistant" });
    const tool = await gen.chatMessage(t.pool, chat.id, { role: "tool" });
    const contextFile = await gen.chatMessage(t.pool, chat.id, {
      role: "user",
      visibility: "model",
      content: [
        { type: "context-file", context_file_path: "AGENTS.md", context_file_content: "x" },
      ],
    });
    const before = await stored(chat.id);
    for (const id of [assistant.id, tool.id]) {
      const res = await edit(u, chat.id, id, text("x"));
      expect({ id, status: res.status }).toEqual({ id, status: 400 });
    }
    for (const id of [system.id, contextFile.id]) {
      const res = await edit(u, chat.id, id, text("x"));
      expect({ id, status: res.status }).toEqual({ id, status: 404 });
    }
    expect(await stored(chat.id)).toEqual(before);
    expect((await chatRow(chat.id)).status).toBe("waiting");
  });

  it("answers 404 for a message of another chat, an unknown or deleted one, and another user's chat", async () => {
    const u = await member();
    const other = await member();
    const chat = await chatIn(u, "waiting");
    const elsewhere = await chatIn(u, "waiting");
    const [foreign] = await stored(elsewhere.id);
    const [own] = await stored(chat.id);
    const gone = await gen.chatMessage(t.pool, chat.id, { role: "user", text: "gone" });
    await t.pool.query("UPDATE chat_messages SET deleted = true WHERE id = $1", [gone.id]);
    expect((await edit(u, chat.id, foreign.id, text("x"))).status).toBe(404);
    expect((await edit(u, chat.id, 999_999_999, text("x"))).status).toBe(404);
    expect((await edit(u, chat.id, gone.id, text("x"))).status).toBe(404);
    expect((await edit(other, chat.id, own.id, text("x"))).status).toBe(404);
    expect((await edit(u, chat.id, "1.5", text("x"))).status).toBe(400);
    expect((await edit(u, chat.id, own.id, [])).status).toBe(400);
    expect((await stored(chat.id)).every((m) => m.id === gone.id || !m.deleted)).toBe(true);
    expect((await stored(elsewhere.id)).every((m) => !m.deleted)).toBe(true);
  });

  it("rejects an edit in an archived chat with 400", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const [hello] = await stored(chat.id);
    await archive(u, chat.id);
    const res = await edit(u, chat.id, hello.id, text("x"));
    expect(res.status).toBe(400);
    expect(res.json.message).toBe("Chat is archived.");
    expect((await stored(chat.id)).map((m) => m.deleted)).toEqual([false]);
  });
});

describe("GET /chats/{chat}/prompts", () => {
  const promptList = async (u: Member, chatId: string, query = "") => {
    const res = await prompts(u, chatId, query);
    expect(res.status).toBe(200);
    return res.json.prompts as { id: number; text: string }[];
  };

  it("joins a message's text parts verbatim in authored order and skips other parts", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const m = await gen.chatMessage(t.pool, chat.id, {
      role: "user",
      content: [
        { type: "text", text: "hello" },
        { type: "file", file_id: unknownId },
        { type: "reasoning", text: "NOT A PROMPT" },
        { type: "text", text: " " },
        { type: "context-file", context_file_path: "a", context_file_content: "NOPE" },
        { type: "text", text: "world" },
      ],
    });
    const sent = await send(u, chat.id, { content: [...text("  two\n"), ...text("parts ")] });
    const [hello] = await stored(chat.id);
    expect(await promptList(u, chat.id)).toEqual([
      { id: sent.json.message.id, text: "  two\nparts " },
      { id: m.id, text: "hello world" },
      { id: hello.id, text: "hello" },
    ]);
  });

  it("drops whitespace-only prompts and excludes deleted, model-only and non-user messages", async () => {
    const u = await member();
    const chat = await gen.chat(t.pool, {
      ownerId: u.id,
      organizationId: orgId,
      system_prompt: "system text",
    });
    const add = (opts: Parameters<typeof gen.chatMessage>[2]) =>
      gen.chatMessage(t.pool, chat.id, opts);
    await add({ role: "user", text: " \n\t " });
    await add({ role: "user", content: [...text(" "), ...text("\n")] });
    await add({ role: "user", content: [{ type: "file", file_id: unknownId }] });
    await add({ role: "user", text: "for the model", visibility: "model" });
    const userOnly = await add({ role: "user", text: "user visible", visibility: "user" });
    const gone = await add({ role: "user", text: "deleted" });
    await t.pool.query("UPDATE chat_messages SET deleted = true WHERE id = $1", [gone.id]);
    await add({ role: "assistant", text: "assistant text" });
    await add({ role: "tool", text: "tool text" });
    await add({ role: "system", text: "system text 2", visibility: "both" });
    const [, hello] = await stored(chat.id);
    expect(await promptList(u, chat.id)).toEqual([
      { id: userOnly.id, text: "user visible" },
      { id: hello.id, text: "hello" },
    ]);
  });

  it("skips rows whose content is not a JSON array, without error", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    await gen.chatMessage(t.pool, chat.id, { role: "user", content: "legacy string" });
    await gen.chatMessage(t.pool, chat.id, {
      role: "user",
      content: { type: "text", text: "an object" },
    });
    await gen.chatMessage(t.pool, chat.id, { role: "user", content: 42 });
    await gen.chatMessage(t.pool, chat.id, { role: "user", content: ["bare", 1, null] });
    const last = await gen.chatMessage(t.pool, chat.id, { role: "user", text: "fine" });
    const [hello] = await stored(chat.id);
    expect(await promptList(u, chat.id)).toEqual([
      { id: last.id, text: "fine" },
      { id: hello.id, text: "hello" },
    ]);
    // The history still lists them as they are (content other than Part[] is outside the
    // documented contract: the API never stores it).
    const listed = await t.call("GET", `/api/experimental/chats/${chat.id}/messages`, {
      token: u.token,
      unchecked: "message rows with legacy content, stored behind the API's back",
    });
    expect(listed.status).toBe(200);
    expect(listed.json.messages.map((m: { content: unknown }) => m.content)).toContain(
      "legacy string",
    );
  });

  it("lists newest first; limit 2 gives the two newest, 0 or none means 500, 2000 is allowed", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    await t.pool.query(
      `INSERT INTO chat_messages (chat_id, role, content)
       SELECT $1, 'user', jsonb_build_array(jsonb_build_object('type', 'text', 'text', 'p' || g))
       FROM generate_series(1, 501) g`,
      [chat.id],
    );
    const ids = (await stored(chat.id)).map((m) => m.id as number).reverse();
    expect(ids).toHaveLength(502);
    const two = await promptList(u, chat.id, "?limit=2");
    expect(two).toEqual([
      { id: ids[0], text: "p501" },
      { id: ids[1], text: "p500" },
    ]);
    for (const query of ["", "?limit=0"]) {
      const page = await promptList(u, chat.id, query);
      expect(page.map((p) => p.id)).toEqual(ids.slice(0, 500));
    }
    const all = await promptList(u, chat.id, "?limit=2000");
    expect(all.map((p) => p.id)).toEqual(ids);
    expect(all.at(-1)).toEqual({ id: ids.at(-1), text: "hello" });
    expect((await promptList(u, chat.id, "?limit=1")).map((p) => p.text)).toEqual(["p501"]);
  });

  it("returns every prompt for limit 0 when there are fewer than 500", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    for (const s of ["one", "two", "three"]) {
      await gen.chatMessage(t.pool, chat.id, { role: "user", text: s });
    }
    const page = await promptList(u, chat.id, "?limit=0");
    expect(page.map((p) => p.text)).toEqual(["three", "two", "one", "hello"]);
  });

  it("rejects a limit of 2001, 5000, -1, 1.5 or x with 400", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    for (const limit of ["2001", "5000", "-1", "1.5", "x"]) {
      const res = await prompts(u, chat.id, `?limit=${limit}`);
      expect({ limit, status: res.status }).toEqual({ limit, status: 400 });
    }
  });

  it("answers 404 for another user's chat", async () => {
    const owner = await member();
    const other = await member();
    const chat = await chatIn(owner, "waiting");
    expect((await prompts(other, chat.id)).status).toBe(404);
    expect((await prompts(other, unknownId)).status).toBe(404);
  });

  it("answers an empty list for a chat without prompts", async () => {
    const u = await member();
    const file = await gen.chatFile(t.pool, { ownerId: u.id, organizationId: orgId });
    const chat = await chatIn(u, "waiting");
    // Its only user message carries a file and no text.
    await t.pool.query("UPDATE chat_messages SET content = $2 WHERE chat_id = $1", [
      chat.id,
      JSON.stringify([{ type: "file", file_id: file.id }]),
    ]);
    const res = await prompts(u, chat.id);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ prompts: [] });
  });

  it("creates a chat from a file part alone (201, empty title), which has no prompts", async () => {
    const u = await member();
    const file = await gen.chatFile(t.pool, { ownerId: u.id, organizationId: orgId });
    const created = await t.call("POST", base, {
      token: u.token,
      body: { content: [{ type: "file", file_id: file.id }] },
    });
    expect(created.status).toBe(201);
    expect(created.json.title).toBe("");
    expect((await prompts(u, created.json.id)).json).toEqual({ prompts: [] });
  });

  it("drops an edited message's prompt and lists its replacement's", async () => {
    const u = await member();
    const chat = await chatIn(u, "waiting");
    const [hello] = await stored(chat.id);
    const second = await send(u, chat.id, { content: text("second") });
    expect((await promptList(u, chat.id)).map((p) => p.text)).toEqual(["second", "hello"]);
    const edited = await edit(u, chat.id, second.json.message.id, text("second, edited"));
    expect(await promptList(u, chat.id)).toEqual([
      { id: edited.json.message.id, text: "second, edited" },
      { id: hello.id, text: "hello" },
    ]);
    const first = await edit(u, chat.id, hello.id, text("start over"));
    expect(await promptList(u, chat.id)).toEqual([
      { id: first.json.message.id, text: "start over" },
    ]);
  });
});

describe("POST /chats/{chat}/tool-results", () => {
  it("answers 409 when the chat is not waiting for tool results", async () => {
    const u = await member();
    for (const status of ["waiting", "pending", "running", "error"] as const) {
      const chat = await chatIn(u, status);
      const res = await toolResults(u, chat.id, [{ tool_call_id: "call_1", output: "x" }]);
      expect({ status, code: res.status }).toEqual({ status, code: 409 });
    }
  });

  it("answers 400 unless the ids are exactly the pending call ids, storing nothing", async () => {
    const u = await member();
    const chat = await chatIn(u, "pending");
    await requireAction(chat.id, [call("call_1"), call("call_2")]);
    const before = await stored(chat.id);
    const r = (id: string) => ({ tool_call_id: id, output: "ok" });
    for (const results of [
      [],
      [r("call_1")],
      [r("call_1"), r("call_2"), r("call_3")],
      [r("call_1"), r("call_3")],
      [r("call_1"), r("call_1"), r("call_2")],
      [r("call_1"), r("call_1")],
    ]) {
      const res = await toolResults(u, chat.id, results);
      expect({ results, status: res.status }).toEqual({ results, status: 400 });
    }
    expect(await stored(chat.id)).toEqual(before);
    expect((await chatRow(chat.id)).status).toBe("requires_action");
  });

  it("stores a valid submission as one tool message, with tool names from the calls, and starts a turn", async () => {
    const u = await member();
    const chat = await chatIn(u, "pending");
    const assistantId = await requireAction(chat.id, [call("call_1"), call("call_2", "write")]);
    const res = await toolResults(u, chat.id, [
      { tool_call_id: "call_2", output: { error: "disk full" }, is_error: true },
      { tool_call_id: "call_1", output: "file contents" },
    ]);
    expect(res.status).toBe(200);
    const after = (await stored(chat.id)).filter((m) => m.id > assistantId);
    expect(after).toHaveLength(1);
    expect(after[0]).toMatchObject({ role: "tool", visibility: "both", created_by: u.id });
    expect(after[0].content).toHaveLength(2);
    expect(after[0].content).toEqual(
      expect.arrayContaining([
        {
          type: "tool-result",
          tool_call_id: "call_1",
          tool_name: "read_file",
          result: "file contents",
          is_error: false,
        },
        {
          type: "tool-result",
          tool_call_id: "call_2",
          tool_name: "write",
          result: { error: "disk full" },
          is_error: true,
        },
      ]),
    );
    expect((await chatRow(chat.id)).status).toBe("pending");

    const second = await toolResults(u, chat.id, [
      { tool_call_id: "call_1", output: "again" },
      { tool_call_id: "call_2", output: "again" },
    ]);
    expect(second.status).toBe(409);
    expect((await stored(chat.id)).filter((m) => m.id > assistantId)).toHaveLength(1);
  });

  it("rejects tool results in an archived chat with 400", async () => {
    const u = await member();
    const chat = await chatIn(u, "pending");
    await requireAction(chat.id);
    await archive(u, chat.id);
    const before = await stored(chat.id);
    const res = await toolResults(u, chat.id, [{ tool_call_id: "call_1", output: "x" }]);
    expect(res.status).toBe(400);
    expect(res.json.message).toBe("Chat is archived.");
    expect(await stored(chat.id)).toEqual(before);
  });

  it("answers 404 for another user's chat and 400 for a malformed body", async () => {
    const u = await member();
    const other = await member();
    const chat = await chatIn(u, "pending");
    await requireAction(chat.id);
    const ok = [{ tool_call_id: "call_1", output: "x" }];
    expect((await toolResults(other, chat.id, ok)).status).toBe(404);
    for (const results of [
      undefined,
      "x",
      [{ output: "x" }],
      [{ tool_call_id: "", output: "x" }],
      [{ tool_call_id: "call_1", output: "x", is_error: "yes" }],
      [{ tool_call_id: "call_1", output: "x", extra: 1 }],
    ]) {
      const res = await toolResults(u, chat.id, results);
      expect({ results, status: res.status }).toEqual({ results, status: 400 });
    }
    expect((await chatRow(chat.id)).status).toBe("requires_action");
  });
});

describe("POST /chats/{chat}/interrupt", () => {
  it("on requires_action answers the pending calls with error results and sets waiting", async () => {
    const u = await member();
    const chat = await chatIn(u, "pending");
    const assistantId = await requireAction(chat.id, [call("call_1"), call("call_2", "write")]);
    const res = await interrupt(u, chat.id);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ id: chat.id, status: "waiting" });
    const after = (await stored(chat.id)).filter((m) => m.id > assistantId);
    expect(after).toHaveLength(1);
    expect(after[0].role).toBe("tool");
    expect(after[0].content).toEqual([
      expect.objectContaining({
        type: "tool-result",
        tool_call_id: "call_1",
        tool_name: "read_file",
        is_error: true,
      }),
      expect.objectContaining({
        type: "tool-result",
        tool_call_id: "call_2",
        tool_name: "write",
        is_error: true,
      }),
    ]);
    // The calls are answered: submitting results now is a conflict.
    const late = await toolResults(u, chat.id, [{ tool_call_id: "call_1", output: "x" }]);
    expect(late.status).toBe(409);
  });

  it("sets a pending or running chat waiting and leaves a waiting chat waiting", async () => {
    const u = await member();
    for (const [status, worker] of [
      ["pending", false],
      ["running", true],
      ["waiting", false],
    ] as const) {
      const chat = await chatIn(u, status, { worker });
      const before = await stored(chat.id);
      const res = await interrupt(u, chat.id);
      expect({ status, code: res.status, after: res.json.status }).toEqual({
        status,
        code: 200,
        after: "waiting",
      });
      expect(await stored(chat.id)).toEqual(before);
      expect((await chatRow(chat.id)).status).toBe("waiting");
    }
  });

  it("answers 404 for another user's chat and leaves it alone", async () => {
    const u = await member();
    const other = await member();
    const chat = await chatIn(u, "running", { worker: true });
    expect((await interrupt(other, chat.id)).status).toBe(404);
    expect((await chatRow(chat.id)).status).toBe("running");
  });
});

describe("concurrency", () => {
  let wide: ReturnType<typeof wideClient>;
  beforeAll(() => {
    wide = wideClient(t.db.url);
  });

  it("lets exactly one of 20 concurrent tool-result submissions win; the others get 409", async () => {
    const u = await member();
    for (let round = 0; round < 3; round++) {
      const chat = await chatIn(u, "pending");
      const assistantId = await requireAction(chat.id, [call("call_1"), call("call_2")]);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          wide("POST", `${base}/${chat.id}/tool-results`, u.token, {
            results: [
              { tool_call_id: "call_1", output: `r${i}` },
              { tool_call_id: "call_2", output: `r${i}` },
            ],
          }),
        ),
      );
      const codes = results.map((r) => r.status).sort();
      expect(codes).toEqual([200, ...Array(19).fill(409)]);
      const tools = (await stored(chat.id)).filter((m) => m.id > assistantId);
      expect(tools).toHaveLength(1);
      expect(tools[0].role).toBe("tool");
      expect((await chatRow(chat.id)).status).toBe("pending");
    }
  });

  it("queues exactly 20 of 30 concurrent sends to a running chat, FIFO in commit order, and refuses 10 with 429", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const before = await stored(chat.id);
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        wide("POST", `${base}/${chat.id}/messages`, u.token, { content: text(`m${i}`) }),
      ),
    );
    const accepted = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(accepted).toHaveLength(20);
    expect(refused).toHaveLength(10);
    for (const r of accepted) expect(r.json.queued).toBe(true);

    const rows = await queue(chat.id);
    expect(rows.map((q) => Number(q.position))).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    // Ids are assigned while the chat row is locked, so ascending ids are the commit order.
    const ids = rows.map((q) => q.id as number);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    const acceptedIds = accepted.map((r) => r.json.queued_message.id as number);
    expect([...acceptedIds].sort((a, b) => a - b)).toEqual(ids);
    const texts = rows.map(firstText);
    expect(new Set(texts).size).toBe(20);
    expect(new Set(texts)).toEqual(new Set(accepted.map((r) => firstText(r.json.queued_message))));
    expect(await stored(chat.id)).toEqual(before);
    expect((await chatRow(chat.id)).status).toBe("running");
  });
});
