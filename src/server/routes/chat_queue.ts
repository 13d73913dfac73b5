import { Hono } from "hono";
import { z } from "zod";
import { ChatMessage } from "../../api/schemas.ts";
import { deleteChatQueuedMessage, promoteChatQueuedMessage } from "../../generated/chat_queue.ts";
import { userOf } from "../auth.ts";
import { loadMessage } from "../chat_view.ts";
import type { AppEnv } from "../deps.ts";
import { operation } from "../openapi.ts";
import { uuid, validate } from "../validation.ts";

/*
 * The queue of a chat (docs/api.md): delete a queued message, or promote it. Messages are
 * queued by POST /{chat}/messages (chat_messages.ts); the rules are in
 * sql/functions/chat_queue.sql.
 */

const queuedParam = z.object({
  chat: uuid(),
  queued: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
});

export const chatQueueRoutes = new Hono<AppEnv>()
  .delete(
    "/:chat/queue/:queued",
    operation({
      summary: "Delete a queued message",
      tags: ["Queue"],
      responses: { 204: null },
      errors: [400, 404],
    }),
    validate("param", queuedParam),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { chat, queued } = c.req.valid("param");
      await deleteChatQueuedMessage(c.get("deps").db, {
        id: queued,
        chat_id: chat,
        owner_id: actor.user.id,
      });
      return c.body(null, 204);
    },
  )

  .post(
    "/:chat/queue/:queued/promote",
    operation({
      summary: "Send a queued message next",
      tags: ["Queue"],
      responses: { 202: z.object({ message: ChatMessage.optional() }) },
      errors: [400, 404, 409],
    }),
    validate("param", queuedParam),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { chat, queued } = c.req.valid("param");
      const db = c.get("deps").db;
      const promoted = await promoteChatQueuedMessage(db, {
        chat_id: chat,
        owner_id: actor.user.id,
        queued_id: queued,
      });
      const id = promoted.message_id;
      return c.json(id ? { message: await loadMessage(db, chat, id) } : {}, 202);
    },
  );
