import { beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { editChatMessage, sendChatMessage } from "../../src/generated/chat_messages.ts";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import { sqlError } from "../setup/sql.ts";

/*
 * The message rules where they live: sql/functions/chat_messages.sql and
 * sql/triggers/chat_messages.sql, called directly. test/server/chat_messages.test.ts checks the
 * same rules through the routes.
 */

let pool: Pool;
let orgId: string;

beforeAll(async () => {
  pool = (await testDb()).pool;
  orgId = (await gen.organization(pool)).id;
});

const text = (s: string) => ({ type: "text", text: s });

async function owner() {
  return (await gen.user(pool, { organizationIds: [orgId] })).id;
}

async function chatOf(ownerId: string, status = "waiting") {
  const chat = await gen.chat(pool, { ownerId, organizationId: orgId });
  await pool.query("UPDATE chats SET status = $2 WHERE id = $1", [chat.id, status]);
  return chat;
}

const call = (id: string, toolName = "read_file", args: unknown = { path: "a" }) => ({
  type: "tool-call",
  tool_call_id: id,
  tool_name: toolName,
  args,
});
const result = (id: string) => ({
  type: "tool-result",
  tool_call_id: id,
  tool_name: "x",
  result: 1,
});

describe("chat_prompt_text", () => {
  const promptText = async (content: unknown) => {
    const { rows } = await pool.query("SELECT chat_prompt_text($1::jsonb) AS t", [
      content === undefined ? null : JSON.stringify(content),
    ]);
    return rows[0].t as string | null;
  };

  it("joins text parts verbatim in authored order, skipping every other part", async () => {
    expect(await promptText([text("hello"), text(" "), text("world")])).toBe("hello world");
    expect(await promptText([text("world"), text(" "), text("hello")])).toBe("world hello");
    expect(
      await promptText([
        text("a"),
        { type: "file", file_id: "00000000-0000-4000-8000-000000000000" },
        { type: "reasoning", text: "thinking" },
        { type: "context-file", context_file_path: "p", context_file_content: "c" },
        { type: "tool-result", tool_call_id: "c", text: "nope" },
        text("b"),
      ]),
    ).toBe("ab");
    expect(await promptText([text("  padded\n"), text("\ttext  ")])).toBe("  padded\n\ttext  ");
    expect(await promptText([text("x"), { type: "text" }, text("y")])).toBe("xy");
  });

  it("is NULL for blank text, no text parts and content that is not an array", async () => {
    for (const content of [
      [],
      [text("")],
      [text("   ")],
      [text(" \n\t "), text("  ")],
      [{ type: "file", file_id: "00000000-0000-4000-8000-000000000000" }],
      [{ type: "reasoning", text: "only reasoning" }],
      "legacy string",
      { type: "text", text: "an object" },
      42,
      null,
      undefined,
    ]) {
      expect({ content, text: await promptText(content) }).toEqual({ content, text: null });
    }
  });

  it("ignores array elements that are not part objects", async () => {
    expect(await promptText(["bare", 1, null, [text("nested")], text("ok")])).toBe("ok");
  });
});

describe("chat_pending_tool_calls", () => {
  const pending = async (chatId: string) =>
    (
      await pool.query("SELECT tool_call_id, tool_name, args FROM chat_pending_tool_calls($1)", [
        chatId,
      ])
    ).rows.map((c) => [c.tool_call_id, c.tool_name, c.args]);

  it("lists the newest assistant message's unanswered calls in the order the model made them", async () => {
    const chat = await chatOf(await owner());
    expect(await pending(chat.id)).toEqual([]);
    await gen.chatMessage(pool, chat.id, {
      content: [text("looking"), call("call_2", "write", { n: 2 }), call("call_1", "read_file")],
    });
    expect(await pending(chat.id)).toEqual([
      ["call_2", "write", { n: 2 }],
      ["call_1", "read_file", { path: "a" }],
    ]);
    await gen.chatMessage(pool, chat.id, { role: "tool", content: [result("call_2")] });
    expect(await pending(chat.id)).toEqual([["call_1", "read_file", { path: "a" }]]);
    // A deleted answer does not count.
    const deleted = await gen.chatMessage(pool, chat.id, {
      role: "tool",
      content: [result("call_1")],
    });
    await pool.query("UPDATE chat_messages SET deleted = true WHERE id = $1", [deleted.id]);
    expect(await pending(chat.id)).toEqual([["call_1", "read_file", { path: "a" }]]);
    await gen.chatMessage(pool, chat.id, { role: "tool", content: [result("call_1")] });
    expect(await pending(chat.id)).toEqual([]);
  });

  it("only counts the newest assistant message, and only answers after it", async () => {
    const chat = await chatOf(await owner());
    await gen.chatMessage(pool, chat.id, { content: [call("old_unanswered")] });
    // An answer to call_3 from an earlier turn, before the call is made again.
    await gen.chatMessage(pool, chat.id, { role: "tool", content: [result("call_3")] });
    const newest = await gen.chatMessage(pool, chat.id, { content: [call("call_3")] });
    expect((await pending(chat.id)).map((c) => c[0])).toEqual(["call_3"]);
    // A newer assistant message without calls: nothing is pending.
    const plain = await gen.chatMessage(pool, chat.id, { text: "done" });
    expect(await pending(chat.id)).toEqual([]);
    // Deleting it makes the previous assistant message the newest again.
    await pool.query("UPDATE chat_messages SET deleted = true WHERE id = $1", [plain.id]);
    expect((await pending(chat.id)).map((c) => c[0])).toEqual(["call_3"]);
    await pool.query("UPDATE chat_messages SET deleted = true WHERE id = $1", [newest.id]);
    expect((await pending(chat.id)).map((c) => c[0])).toEqual(["old_unanswered"]);
  });

  it("treats an assistant message whose content is not an array as having no calls", async () => {
    const chat = await chatOf(await owner());
    await gen.chatMessage(pool, chat.id, { content: [call("c1")] });
    await gen.chatMessage(pool, chat.id, { content: "legacy" });
    expect(await pending(chat.id)).toEqual([]);
  });

  it("chat_fail_pending_tool_calls answers every pending call with an error in one tool message", async () => {
    const chat = await chatOf(await owner());
    await gen.chatMessage(pool, chat.id, { content: [call("a"), call("b", "write")] });
    const fail = async () =>
      (await pool.query("SELECT chat_fail_pending_tool_calls($1, 'why') AS n", [chat.id])).rows[0]
        .n;
    expect(await fail()).toBe(2);
    const { rows } = await pool.query(
      "SELECT role, content FROM chat_messages WHERE chat_id = $1 AND role = 'tool'",
      [chat.id],
    );
    expect(rows).toEqual([
      {
        role: "tool",
        content: [
          {
            type: "tool-result",
            tool_call_id: "a",
            tool_name: "read_file",
            result: { error: "why" },
            is_error: true,
          },
          {
            type: "tool-result",
            tool_call_id: "b",
            tool_name: "write",
            result: { error: "why" },
            is_error: true,
          },
        ],
      },
    ]);
    expect(await pending(chat.id)).toEqual([]);
    expect(await fail()).toBe(0);
  });
});

describe("chat_send_message", () => {
  it("raises PC429 for the 21st queued message and queues nothing more", async () => {
    const ownerId = await owner();
    const chat = await chatOf(ownerId, "running");
    const sendOne = (s: string) =>
      sendChatMessage(pool, {
        chat_id: chat.id,
        owner_id: ownerId,
        content: [text(s)],
        model_config_id: null,
        busy_behavior: "queue",
        api_key_id: null,
      });
    for (let i = 1; i <= 20; i++) {
      const sent = await sendOne(`q${i}`);
      expect(sent).toMatchObject({ message_id: null, queued_message_id: expect.any(Number) });
    }
    const err = await sqlError(() => sendOne("q21"));
    expect(err).toMatchObject({ code: "PC429", message: "The queue is full." });
    const { rows } = await pool.query(
      "SELECT position FROM chat_queued_messages WHERE chat_id = $1 ORDER BY position",
      [chat.id],
    );
    expect(rows.map((r) => Number(r.position))).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
  });

  it("uses the chat's own model while no default model is configured, and the default only when the chat's is unusable", async () => {
    const ownerId = await owner();
    const model = await gen.modelConfig(pool);
    const chat = await gen.chat(pool, {
      ownerId,
      organizationId: orgId,
      model_config_id: model.id,
    });
    await pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat.id]);
    const send = () =>
      sendChatMessage(pool, {
        chat_id: chat.id,
        owner_id: ownerId,
        content: [text("again")],
        model_config_id: null,
        busy_behavior: "queue",
        api_key_id: null,
      });
    const { rows } = await pool.query(
      "UPDATE chat_model_configs SET is_default = false WHERE is_default RETURNING id",
    );
    try {
      expect((await send())?.message_id).toEqual(expect.any(Number));
      await pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat.id]);
      await pool.query("UPDATE chat_model_configs SET enabled = false WHERE id = $1", [model.id]);
      expect(await sqlError(send)).toMatchObject({
        code: "PC400",
        message: "No default model is configured.",
      });
    } finally {
      await pool.query("UPDATE chat_model_configs SET is_default = true WHERE id = ANY($1)", [
        rows.map((r) => r.id),
      ]);
    }
    await pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat.id]);
    await send();
    const { rows: after } = await pool.query(
      "SELECT last_model_config_id FROM chats WHERE id = $1",
      [chat.id],
    );
    expect(after[0].last_model_config_id).toBe(rows[0].id);
  });

  it("raises PC404 for another owner's chat and PC400 for an archived one", async () => {
    const ownerId = await owner();
    const chat = await chatOf(ownerId);
    const args = {
      chat_id: chat.id,
      owner_id: await owner(),
      content: [text("x")],
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id: null,
    };
    expect((await sqlError(() => sendChatMessage(pool, args))).code).toBe("PC404");
    await pool.query("SELECT chat_archive($1, true)", [chat.id]);
    const err = await sqlError(() => sendChatMessage(pool, { ...args, owner_id: ownerId }));
    expect(err).toMatchObject({ code: "PC400", message: "Chat is archived." });
  });
});

describe("chat_edit_message", () => {
  it("raises PC400 for assistant and tool messages, and PC404 for unknown or deleted ones and for those the client cannot see (system prompt, context files)", async () => {
    const ownerId = await owner();
    const chat = await gen.chat(pool, {
      ownerId,
      organizationId: orgId,
      system_prompt: "sys",
    });
    const editOne = (messageId: number) =>
      editChatMessage(pool, {
        chat_id: chat.id,
        owner_id: ownerId,
        message_id: messageId,
        content: [text("x")],
        api_key_id: null,
        model_config_id: null,
      });
    const { rows } = await pool.query(
      "SELECT id FROM chat_messages WHERE chat_id = $1 AND role = 'system'",
      [chat.id],
    );
    const assistant = await gen.chatMessage(pool, chat.id, { role: "assistant" });
    const tool = await gen.chatMessage(pool, chat.id, { role: "tool" });
    for (const id of [assistant.id, tool.id]) {
      const err = await sqlError(() => editOne(id));
      expect({ id, code: err.code }).toEqual({ id, code: "PC400" });
    }
    // A context-file message is a user message, but only the model sees it.
    const contextFile = await gen.chatMessage(pool, chat.id, {
      role: "user",
      visibility: "model",
      content: [
        { type: "context-file", context_file_path: "AGENTS.md", context_file_content: "x" },
      ],
    });
    for (const id of [rows[0].id as number, contextFile.id]) {
      const err = await sqlError(() => editOne(id));
      expect({ id, code: err.code }).toEqual({ id, code: "PC404" });
    }
    const gone = await gen.chatMessage(pool, chat.id, { role: "user", text: "gone" });
    await pool.query("UPDATE chat_messages SET deleted = true WHERE id = $1", [gone.id]);
    expect((await sqlError(() => editOne(gone.id))).code).toBe("PC404");
    expect((await sqlError(() => editOne(999_999_999))).code).toBe("PC404");
    const { rows: deleted } = await pool.query(
      "SELECT count(*)::int AS n FROM chat_messages WHERE chat_id = $1 AND deleted",
      [chat.id],
    );
    expect(deleted[0].n).toBe(1);
  });
});

describe("chat_submit_tool_results", () => {
  it("raises PC409 unless requires_action and PC400 for ids other than the pending set", async () => {
    const ownerId = await owner();
    const chat = await chatOf(ownerId);
    const submit = (results: unknown) =>
      pool.query("SELECT chat_submit_tool_results($1, $2, $3, NULL)", [
        chat.id,
        ownerId,
        JSON.stringify(results),
      ]);
    const r = (id: string) => ({ tool_call_id: id, output: "ok" });
    expect((await sqlError(() => submit([r("a")]))).code).toBe("PC409");
    await gen.chatMessage(pool, chat.id, { content: [call("a"), call("b")] });
    await pool.query("UPDATE chats SET status = 'requires_action' WHERE id = $1", [chat.id]);
    for (const results of [[r("a")], [r("a"), r("b"), r("c")], [r("a"), r("a"), r("b")]]) {
      expect({ results, code: (await sqlError(() => submit(results))).code }).toEqual({
        results,
        code: "PC400",
      });
    }
    await submit([r("b"), r("a")]);
    expect((await sqlError(() => submit([r("a"), r("b")]))).code).toBe("PC409");
  });
});

describe("chat_prompts trigger", () => {
  const promptOf = async (messageId: number) => {
    const { rows } = await pool.query(
      "SELECT chat_id, text FROM chat_prompts WHERE message_id = $1",
      [messageId],
    );
    return rows[0] as { chat_id: string; text: string } | undefined;
  };
  const update = (messageId: number, set: string, value: unknown) =>
    pool.query(`UPDATE chat_messages SET ${set} = $2 WHERE id = $1`, [messageId, value]);

  it("writes a prompt row with the message for user-visible user messages with text only", async () => {
    const chat = await chatOf(await owner());
    const { rows } = await pool.query("SELECT id FROM chat_messages WHERE chat_id = $1", [chat.id]);
    expect(await promptOf(rows[0].id)).toEqual({ chat_id: chat.id, text: "hello" });
    const add = (opts: Parameters<typeof gen.chatMessage>[2]) =>
      gen.chatMessage(pool, chat.id, opts);
    expect(await promptOf((await add({ role: "user", text: "both" })).id)).toEqual({
      chat_id: chat.id,
      text: "both",
    });
    expect(
      (await promptOf((await add({ role: "user", text: "u", visibility: "user" })).id))?.text,
    ).toBe("u");
    for (const opts of [
      { role: "user", text: "m", visibility: "model" },
      { role: "user", text: "   " },
      { role: "user", content: "legacy" },
      { role: "assistant", text: "a" },
      { role: "system", text: "s" },
      { role: "tool", text: "t" },
    ] as const) {
      expect({ opts, prompt: await promptOf((await add(opts)).id) }).toEqual({
        opts,
        prompt: undefined,
      });
    }
  });

  it("keeps the row in step with soft-delete, visibility, content and role changes", async () => {
    const chat = await chatOf(await owner());
    const m = await gen.chatMessage(pool, chat.id, { role: "user", text: "first" });
    const now = async () => (await promptOf(m.id))?.text;
    expect(await now()).toBe("first");

    await update(m.id, "deleted", true);
    expect(await now()).toBeUndefined();
    await update(m.id, "deleted", false);
    expect(await now()).toBe("first");

    await update(m.id, "visibility", "model");
    expect(await now()).toBeUndefined();
    await update(m.id, "visibility", "user");
    expect(await now()).toBe("first");
    await update(m.id, "visibility", "both");
    expect(await now()).toBe("first");

    await update(m.id, "content", JSON.stringify([text("second"), text(" try")]));
    expect(await now()).toBe("second try");
    await update(m.id, "content", JSON.stringify([text("  ")]));
    expect(await now()).toBeUndefined();
    await update(m.id, "content", JSON.stringify("not an array"));
    expect(await now()).toBeUndefined();
    await update(m.id, "content", JSON.stringify([text("third")]));
    expect(await now()).toBe("third");

    await update(m.id, "role", "system");
    expect(await now()).toBeUndefined();
    await update(m.id, "role", "user");
    expect(await now()).toBe("third");

    // Unrelated columns leave it alone; a hard delete takes it along.
    await update(m.id, "input_tokens", 5);
    expect(await now()).toBe("third");
    await pool.query("DELETE FROM chat_messages WHERE id = $1", [m.id]);
    expect(await now()).toBeUndefined();
  });

  it("follows an edit: the edited and later prompts go, the replacement's comes", async () => {
    const ownerId = await owner();
    const chat = await chatOf(ownerId);
    const later = await gen.chatMessage(pool, chat.id, { role: "user", text: "later" });
    const { rows } = await pool.query(
      "SELECT id FROM chat_messages WHERE chat_id = $1 ORDER BY id LIMIT 1",
      [chat.id],
    );
    const edited = await editChatMessage(pool, {
      chat_id: chat.id,
      owner_id: ownerId,
      message_id: rows[0].id,
      content: [text("replaced")],
      api_key_id: null,
      model_config_id: null,
    });
    const { rows: left } = await pool.query(
      "SELECT message_id, text FROM chat_prompts WHERE chat_id = $1",
      [chat.id],
    );
    expect(left).toEqual([{ message_id: edited!.message_id, text: "replaced" }]);
    expect(await promptOf(later.id)).toBeUndefined();
  });

  it("matches chat_prompt_text over every message in the database", async () => {
    const { rows } = await pool.query(
      `WITH expected AS (
         SELECT id, chat_id, chat_prompt_text(content) AS text
         FROM chat_messages
         WHERE role = 'user' AND NOT deleted AND visibility IN ('user', 'both')
           AND chat_prompt_text(content) IS NOT NULL
       )
       SELECT e.id, p.message_id
       FROM expected e
       FULL JOIN chat_prompts p ON p.message_id = e.id
       WHERE e.id IS NULL OR p.message_id IS NULL OR p.text <> e.text OR p.chat_id <> e.chat_id`,
    );
    expect(rows).toEqual([]);
    const { rows: count } = await pool.query("SELECT count(*)::int AS n FROM chat_prompts");
    expect(count[0].n).toBeGreaterThan(5);
  });
});

describe("tool results without pending calls", () => {
  it("answers PC409 when a requires_action chat has no pending tool calls", async () => {
    const db = await testDb();
    const org = await gen.organization(db.pool);
    const u = await gen.user(db.pool, { organizationIds: [org.id] });
    const chat = await gen.chat(db.pool, { ownerId: u.id, organizationId: org.id });
    await db.pool.query("UPDATE chats SET status = 'requires_action' WHERE id = $1", [chat.id]);
    const err = await db.pool
      .query("SELECT chat_submit_tool_results($1, $2, '[]', NULL)", [chat.id, u.id])
      .then(
        () => null,
        (e: { code: string; message: string }) => e,
      );
    expect(err).toMatchObject({ code: "PC409", message: "The chat has no pending tool calls." });
  });
});
