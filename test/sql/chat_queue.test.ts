import { beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { interruptChat, sendChatMessage } from "../../src/generated/chat_messages.ts";
import {
  deleteChatQueuedMessage,
  promoteChatQueuedMessage,
} from "../../src/generated/chat_queue.ts";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import { blocked, outcome, session } from "../setup/sessions.ts";

/*
 * The queue's rules where they live: sql/functions/chat_queue.sql, called directly, on two real
 * sessions where a rule is about a race. test/server/chat_queue.test.ts checks them through the
 * routes.
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
  await gen.chatStatus(pool, chat.id, status);
  return chat;
}

describe("deleting a queued message, on two sessions", () => {
  /** A chat that is busy (running, as a runner holds it) with one queued message. */
  async function busyWithQueued(ownerId: string, body: string) {
    const chat = await chatOf(ownerId, "running");
    const sent = await sendChatMessage(pool, {
      chat_id: chat.id,
      owner_id: ownerId,
      content: [text(body)],
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id: null,
    });
    return { chat, queuedId: sent!.queued_message_id! };
  }
  const userTexts = async (chatId: string) =>
    (
      await pool.query(
        "SELECT content FROM chat_messages WHERE chat_id = $1 AND role = 'user' ORDER BY id",
        [chatId],
      )
    ).rows.map((r) => r.content[0]?.text);

  it("a promotion waiting for a delete of the same message finds it gone and sends nothing", async () => {
    const ownerId = await owner();
    const { chat, queuedId } = await busyWithQueued(ownerId, "deleted before it was sent");
    await pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat.id]);
    const deleting = await session(pool);
    const promoting = await session(pool);
    try {
      await deleting.client.query("BEGIN");
      await deleteChatQueuedMessage(deleting.client, {
        chat_id: chat.id,
        owner_id: ownerId,
        id: queuedId,
      });
      const promotion = outcome(
        promoteChatQueuedMessage(promoting.client, {
          chat_id: chat.id,
          owner_id: ownerId,
          queued_id: queuedId,
        }),
      );
      await blocked(pool, promoting.pid);
      await deleting.client.query("COMMIT");
      expect(await promotion).toMatchObject({ ok: false, code: "PC404" });
    } finally {
      deleting.release();
      promoting.release();
    }
    expect(await userTexts(chat.id)).toEqual(["hello"]);
    expect(
      (await pool.query("SELECT status FROM chats WHERE id = $1", [chat.id])).rows[0].status,
    ).toBe("waiting");
  });

  it("an interrupt admitting the queue head while a delete of it is open never sends it", async () => {
    const ownerId = await owner();
    const { chat, queuedId } = await busyWithQueued(ownerId, "deleted before it was sent");
    const deleting = await session(pool);
    const interrupting = await session(pool);
    try {
      await deleting.client.query("BEGIN");
      await deleteChatQueuedMessage(deleting.client, {
        chat_id: chat.id,
        owner_id: ownerId,
        id: queuedId,
      });
      const interrupt = outcome(
        interruptChat(interrupting.client, { chat_id: chat.id, owner_id: ownerId }),
      );
      await blocked(pool, interrupting.pid);
      await deleting.client.query("COMMIT");
      expect(await interrupt).toMatchObject({ ok: true });
    } finally {
      deleting.release();
      interrupting.release();
    }
    expect(await userTexts(chat.id)).toEqual(["hello"]);
  });

  it("a delete waiting for a promotion of the same message answers PC404 once it was sent", async () => {
    const ownerId = await owner();
    const { chat, queuedId } = await busyWithQueued(ownerId, "sent before the delete");
    await pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat.id]);
    const promoting = await session(pool);
    const deleting = await session(pool);
    try {
      await promoting.client.query("BEGIN");
      await promoteChatQueuedMessage(promoting.client, {
        chat_id: chat.id,
        owner_id: ownerId,
        queued_id: queuedId,
      });
      const deletion = outcome(
        deleteChatQueuedMessage(deleting.client, {
          chat_id: chat.id,
          owner_id: ownerId,
          id: queuedId,
        }),
      );
      await blocked(pool, deleting.pid);
      await promoting.client.query("COMMIT");
      expect(await deletion).toMatchObject({ ok: false, code: "PC404" });
    } finally {
      promoting.release();
      deleting.release();
    }
    expect(await userTexts(chat.id)).toEqual(["hello", "sent before the delete"]);
  });
});
