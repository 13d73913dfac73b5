import { Hono } from "hono";
import { z } from "zod";
import {
  Chat,
  ChatMessage,
  EditedMessage,
  MessagesPage,
  Prompts,
  SentMessage,
} from "../../api/schemas.ts";
import { chatMessageJson, chatQueuedMessageJson } from "../../api/shapes.ts";
import { type Queryable, withTx } from "../../db/index.ts";
import {
  editChatMessage,
  interruptChat,
  listChatMessagesAfterIDByChatID,
  listChatMessagesByChatID,
  listChatPromptsByChatID,
  sendChatMessage,
  submitChatToolResults,
} from "../../generated/chat_messages.ts";
import {
  getChatQueuedMessageByID,
  listChatQueuedMessagesByChatID,
} from "../../generated/chat_queue.ts";
import { getChatExistsByIDForOwner, setChatPlanModeByID } from "../../generated/chats.ts";
import { userOf } from "../auth.ts";
import { loadChat, loadMessage } from "../chat_view.ts";
import { type AppEnv, readDb } from "../deps.ts";
import { notFound } from "../errors.ts";
import { operation } from "../openapi.ts";
import { chatParam, messageContent, planMode, uuid, validate } from "../validation.ts";

/** History pages (docs/api.md: limit 1..200, default 50). */
const maxHistoryPage = 200;
const defaultHistoryPage = 50;
/** Prompt history (docs/api.md: limit 0..2000; 0 means the default). */
const maxPrompts = 2000;
const defaultPrompts = 500;

const messageId = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const messageParam = z.object({ chat: uuid(), message: messageId });

const historyQuery = z
  .object({
    before_id: messageId.optional(),
    // 0 (ids start at 1): a poller's first page, oldest first from the first message.
    after_id: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    limit: z.coerce.number().int().min(1).max(maxHistoryPage).default(defaultHistoryPage),
  })
  .refine(
    (q) => q.after_id === undefined || q.before_id === undefined || q.after_id < q.before_id,
    {
      message: "after_id must be less than before_id",
      path: ["after_id"],
    },
  );
const promptsQuery = z.object({
  limit: z.coerce.number().int().min(0).max(maxPrompts).default(0),
});
const sendBody = z.strictObject({
  content: messageContent,
  model_config_id: uuid().optional(),
  busy_behavior: z.enum(["queue", "interrupt"]).default("queue"),
  plan_mode: planMode.optional(),
});
const editBody = z.strictObject({ content: messageContent, model_config_id: uuid().optional() });
const toolResultsBody = z.strictObject({
  results: z
    .array(
      z.strictObject({
        tool_call_id: z.string().min(1).max(256),
        output: z.unknown(),
        is_error: z.boolean().optional(),
      }),
    )
    .max(250),
});

/** 404 unless the chat is the caller's (reads only; transitions check inside their function). */
async function requireChat(db: Queryable, chatId: string, ownerId: string) {
  const found = await getChatExistsByIDForOwner(db, { id: chatId, owner_id: ownerId });
  if (!found.found) throw notFound("Chat");
}

export const chatMessagesRoutes = new Hono<AppEnv>()
  .get(
    "/:chat/messages",
    operation({
      summary: "A page of a chat's history, and its queue on the first page",
      tags: ["Messages"],
      responses: { 200: MessagesPage },
      errors: [400, 404],
    }),
    validate("param", chatParam),
    validate("query", historyQuery),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { chat } = c.req.valid("param");
      const q = c.req.valid("query");
      // History reads a standby when there is one (src/db/replica.ts).
      const db = await readDb(c.get("deps"));
      await requireChat(db, chat, actor.user.id);
      // after_id alone is a poller's page: oldest first from there, so it can move after_id to
      // the page's last id without skipping messages (docs/api.md "Messages").
      const rows =
        q.after_id !== undefined && q.before_id === undefined
          ? await listChatMessagesAfterIDByChatID(db, {
              chat_id: chat,
              after_id: q.after_id,
              page_limit: q.limit + 1,
            })
          : await listChatMessagesByChatID(db, {
              chat_id: chat,
              before_id: q.before_id ?? null,
              after_id: q.after_id ?? null,
              page_limit: q.limit + 1,
            });
      const firstPage = q.before_id === undefined;
      const queued = firstPage ? await listChatQueuedMessagesByChatID(db, { chat_id: chat }) : [];
      return c.json({
        messages: rows.slice(0, q.limit).map(chatMessageJson),
        queued_messages: queued.map(chatQueuedMessageJson),
        has_more: rows.length > q.limit,
      });
    },
  )

  .post(
    "/:chat/messages",
    operation({
      summary: "Send a message: admitted now, or queued while the chat is busy",
      tags: ["Messages"],
      responses: { 200: SentMessage },
      errors: [400, 404, 409, 429, 507],
    }),
    validate("param", chatParam),
    validate("json", sendBody),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { chat } = c.req.valid("param");
      const body = c.req.valid("json");
      const db = c.get("deps").db;
      const sent = await withTx(db, async (tx) => {
        const sent = await sendChatMessage(tx, {
          chat_id: chat,
          owner_id: actor.user.id,
          content: body.content,
          model_config_id: body.model_config_id ?? null,
          busy_behavior: body.busy_behavior,
          api_key_id: actor.apiKeyId,
        });
        // As PATCH would set it, with the message: the turn this message starts runs in it.
        if (body.plan_mode !== undefined) {
          await setChatPlanModeByID(tx, {
            id: chat,
            owner_id: actor.user.id,
            plan_mode: body.plan_mode,
          });
        }
        return sent;
      });
      if (sent.message_id) {
        return c.json({ message: await loadMessage(db, chat, sent.message_id), queued: false });
      }
      const queued = await getChatQueuedMessageByID(db, {
        id: sent.queued_message_id!,
        chat_id: chat,
      });
      return c.json({
        queued_message: queued ? chatQueuedMessageJson(queued) : undefined,
        queued: true,
      });
    },
  )

  .patch(
    "/:chat/messages/:message",
    operation({
      summary: "Edit a user message: later messages are deleted and the turn runs again",
      tags: ["Messages"],
      responses: { 200: EditedMessage },
      errors: [400, 404, 409],
    }),
    validate("param", messageParam),
    validate("json", editBody),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { chat, message } = c.req.valid("param");
      const db = c.get("deps").db;
      const edited = await editChatMessage(db, {
        chat_id: chat,
        owner_id: actor.user.id,
        message_id: message,
        content: c.req.valid("json").content,
        api_key_id: actor.apiKeyId,
        model_config_id: c.req.valid("json").model_config_id ?? null,
      });
      return c.json({
        message: await loadMessage(db, chat, edited.message_id!),
        deleted_message_ids: edited.deleted_message_ids ?? [],
      });
    },
  )

  .get(
    "/:chat/prompts",
    operation({
      summary: "The chat's user prompts as text, newest first",
      tags: ["Messages"],
      responses: { 200: Prompts },
      errors: [400, 404],
    }),
    validate("param", chatParam),
    validate("query", promptsQuery),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { chat } = c.req.valid("param");
      const limit = c.req.valid("query").limit || defaultPrompts;
      const db = await readDb(c.get("deps"));
      await requireChat(db, chat, actor.user.id);
      const prompts = await listChatPromptsByChatID(db, { chat_id: chat, page_limit: limit });
      return c.json({ prompts: prompts.map((p) => ({ id: p.id, text: p.text })) });
    },
  )

  .post(
    "/:chat/tool-results",
    operation({
      summary: "Answer the pending calls of client-declared tools",
      tags: ["Messages"],
      responses: { 200: z.object({ message: ChatMessage }) },
      errors: [400, 404, 409],
    }),
    validate("param", chatParam),
    validate("json", toolResultsBody),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { chat } = c.req.valid("param");
      const db = c.get("deps").db;
      const stored = await submitChatToolResults(db, {
        chat_id: chat,
        owner_id: actor.user.id,
        results: c.req.valid("json").results,
        api_key_id: actor.apiKeyId,
      });
      return c.json({ message: await loadMessage(db, chat, stored.message_id!) });
    },
  )

  .post(
    "/:chat/interrupt",
    operation({
      summary: "Stop the running turn",
      tags: ["Chats"],
      responses: { 200: Chat },
      errors: [400, 404],
    }),
    validate("param", chatParam),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { chat } = c.req.valid("param");
      const db = c.get("deps").db;
      await interruptChat(db, { chat_id: chat, owner_id: actor.user.id });
      return c.json(await loadChat(db, actor.user.id, chat));
    },
  );
