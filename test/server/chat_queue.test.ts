import { beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import { base, chatRequests, type Member, text, wideClient } from "../setup/chat_requests.ts";

/*
 * The queue routes of docs/api.md: delete a queued message, promote one. Messages are queued by
 * POST /{chat}/messages (test/server/chat_messages.test.ts); the SQL-level rules are in
 * test/sql/chat_queue.test.ts.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  orgId = (await gen.organization(t.pool)).id;
});

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
  history,
  promote,
  archive,
  enqueue,
} = chatRequests(() => ({ t, orgId }));

describe("DELETE /chats/{chat}/queue/{queued}", () => {
  it("removes a queued message (204)", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const [a, b] = await enqueue(u, chat.id, ["a", "b"]);
    const res = await t.call("DELETE", `${base}/${chat.id}/queue/${a}`, { token: u.token });
    expect(res.status).toBe(204);
    expect(res.text).toBe("");
    expect((await queue(chat.id)).map((q) => q.id)).toEqual([b]);
    const listed = await history(u, chat.id);
    expect(listed.json.queued_messages.map((q: { id: number }) => q.id)).toEqual([b]);
    const again = await t.call("DELETE", `${base}/${chat.id}/queue/${a}`, { token: u.token });
    expect(again.status).toBe(404);
  });

  it("answers 404 for an unknown id, another chat's queued message and another user's chat", async () => {
    const u = await member();
    const other = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const elsewhere = await chatIn(u, "running", { worker: true });
    const [mine] = await enqueue(u, chat.id, ["mine"]);
    const [foreign] = await enqueue(u, elsewhere.id, ["foreign"]);
    const del = (who: Member, chatId: string, id: number | string) =>
      t.call("DELETE", `${base}/${chatId}/queue/${id}`, { token: who.token });
    expect((await del(u, chat.id, 999_999_999)).status).toBe(404);
    expect((await del(u, chat.id, foreign!)).status).toBe(404);
    expect((await del(other, chat.id, mine!)).status).toBe(404);
    expect((await del(u, chat.id, "x")).status).toBe(400);
    expect(await queue(chat.id)).toHaveLength(1);
    expect(await queue(elsewhere.id)).toHaveLength(1);
  });
});

describe("POST /chats/{chat}/queue/{queued}/promote", () => {
  it("admits the message now on a waiting chat (202 with the message)", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const [q1, q2, q3] = await enqueue(u, chat.id, ["q1", "q2", "q3"]);
    await setStatus(chat.id, "waiting");
    const res = await promote(u, chat.id, q2!);
    expect(res.status).toBe(202);
    expect(res.json).toEqual({
      message: expect.objectContaining({
        role: "user",
        content: text("q2"),
        created_by: u.id,
        model_config_id: chat.last_model_config_id,
      }),
    });
    expect((await queue(chat.id)).map((q) => q.id)).toEqual([q1, q3]);
    expect((await stored(chat.id)).at(-1)).toMatchObject({ id: res.json.message.id });
    expect((await chatRow(chat.id)).status).toBe("pending");
  });

  it("admits with the model the message was queued with, or the chat's when that one was disabled", async () => {
    const u = await member();
    const modelB = await gen.modelConfig(t.pool);
    const modelC = await gen.modelConfig(t.pool);
    const chat = await chatIn(u, "running", { worker: true });
    const [kept] = await enqueue(u, chat.id, ["on B"], modelB.id);
    const [fallback] = await enqueue(u, chat.id, ["on B too"], modelB.id);
    expect((await queue(chat.id)).map((q) => q.model_config_id)).toEqual([modelB.id, modelB.id]);

    await t.pool.query(
      "UPDATE chats SET last_model_config_id = $2, status = 'waiting', worker_id = NULL WHERE id = $1",
      [chat.id, modelC.id],
    );
    const first = await promote(u, chat.id, kept!);
    expect(first.json.message.model_config_id).toBe(modelB.id);
    expect((await chatRow(chat.id)).last_model_config_id).toBe(modelB.id);

    await t.pool.query(
      "UPDATE chats SET last_model_config_id = $2, status = 'waiting' WHERE id = $1",
      [chat.id, modelC.id],
    );
    await t.pool.query("UPDATE chat_model_configs SET enabled = false WHERE id = $1", [modelB.id]);
    const second = await promote(u, chat.id, fallback!);
    expect(second.status).toBe(202);
    expect(second.json.message.model_config_id).toBe(modelC.id);
    expect((await chatRow(chat.id)).last_model_config_id).toBe(modelC.id);
  });

  it("on a running chat makes the message the head of the queue and lets the turn run on", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const [q1, q2, q3] = await enqueue(u, chat.id, ["q1", "q2", "q3"]);
    const before = await stored(chat.id);
    const order = async () =>
      (await history(u, chat.id)).json.queued_messages.map((q: { id: number }) => q.id);

    const res = await promote(u, chat.id, q3!);
    expect(res.status).toBe(202);
    expect(res.json).toEqual({});
    expect(await order()).toEqual([q3, q1, q2]);
    expect((await promote(u, chat.id, q3!)).status).toBe(202);
    expect(await order()).toEqual([q3, q1, q2]);
    await promote(u, chat.id, q2!);
    expect(await order()).toEqual([q2, q3, q1]);
    const [q4] = await enqueue(u, chat.id, ["q4"]);
    expect(await order()).toEqual([q2, q3, q1, q4]);
    expect(await stored(chat.id)).toEqual(before);
    expect((await chatRow(chat.id)).status).toBe("running");
  });

  it("on requires_action first answers the pending calls with error results, then admits the message", async () => {
    const u = await member();
    const chat = await chatIn(u, "pending");
    const assistantId = await requireAction(chat.id, [call("call_1"), call("call_2", "write")]);
    const [q] = await enqueue(u, chat.id, ["do something else"]);
    const res = await promote(u, chat.id, q!);
    expect(res.status).toBe(202);
    expect(res.json.message).toMatchObject({ role: "user", content: text("do something else") });
    const after = (await stored(chat.id)).filter((m) => m.id > assistantId);
    expect(after.map((m) => m.role)).toEqual(["tool", "user"]);
    expect(after[0].content).toEqual([
      {
        type: "tool-result",
        tool_call_id: "call_1",
        tool_name: "read_file",
        result: expect.anything(),
        is_error: true,
      },
      {
        type: "tool-result",
        tool_call_id: "call_2",
        tool_name: "write",
        result: expect.anything(),
        is_error: true,
      },
    ]);
    expect(after[1].id).toBe(res.json.message.id);
    expect(await queue(chat.id)).toEqual([]);
    expect((await chatRow(chat.id)).status).toBe("pending");
  });

  it("rejects a promotion in an archived chat with 400", async () => {
    const u = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const [q] = await enqueue(u, chat.id, ["q"]);
    await archive(u, chat.id);
    await setStatus(chat.id, "waiting");
    const before = await stored(chat.id);
    const res = await promote(u, chat.id, q!);
    expect(res.status).toBe(400);
    expect(res.json.message).toBe("Chat is archived.");
    expect(await stored(chat.id)).toEqual(before);
    expect(await queue(chat.id)).toHaveLength(1);
  });

  it("answers 404 for an unknown queued id, another chat's, and another user's chat", async () => {
    const u = await member();
    const other = await member();
    const chat = await chatIn(u, "running", { worker: true });
    const elsewhere = await chatIn(u, "running", { worker: true });
    const [mine] = await enqueue(u, chat.id, ["mine"]);
    const [foreign] = await enqueue(u, elsewhere.id, ["foreign"]);
    await setStatus(chat.id, "waiting");
    expect((await promote(u, chat.id, 999_999_999)).status).toBe(404);
    expect((await promote(u, chat.id, foreign!)).status).toBe(404);
    expect((await promote(other, chat.id, mine!)).status).toBe(404);
    expect((await promote(u, chat.id, "nope")).status).toBe(400);
    expect(await queue(chat.id)).toHaveLength(1);
    expect(await queue(elsewhere.id)).toHaveLength(1);
    expect((await chatRow(chat.id)).status).toBe("waiting");
  });
});

describe("concurrency", () => {
  let wide: ReturnType<typeof wideClient>;
  beforeAll(() => {
    wide = wideClient(t.db.url);
  });

  it("admits a queued message once when two promotions of it race on a waiting chat", async () => {
    const u = await member();
    for (let round = 0; round < 5; round++) {
      const chat = await chatIn(u, "running", { worker: true });
      const [q] = await enqueue(u, chat.id, ["only once"]);
      await setStatus(chat.id, "waiting");
      const before = (await stored(chat.id)).length;
      const results = await Promise.all(
        [0, 1].map(() => wide("POST", `${base}/${chat.id}/queue/${q}/promote`, u.token)),
      );
      expect(results.map((r) => r.status).sort()).toEqual([202, 404]);
      const winner = results.find((r) => r.status === 202)!;
      expect(winner.json.message).toMatchObject({ content: text("only once") });
      const rows = await stored(chat.id);
      expect(rows).toHaveLength(before + 1);
      expect(rows.filter((m) => firstText(m) === "only once")).toHaveLength(1);
      expect(await queue(chat.id)).toEqual([]);
      expect((await chatRow(chat.id)).status).toBe("pending");
    }
  });
});
