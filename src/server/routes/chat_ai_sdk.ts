import { createUIMessageStream, createUIMessageStreamResponse, type UIMessage } from "ai";
import { Hono } from "hono";
import { z } from "zod";
import { EventStream } from "../../api/schemas.ts";
import type { Queryable } from "../../db/index.ts";
import { getChatLastUserMessageByChatID } from "../../generated/chat_messages.ts";
import { listChatQueuedMessagesByChatID } from "../../generated/chat_queue.ts";
import { getChatByIDForOwner } from "../../generated/chats.ts";
import type { Logger } from "../../log.ts";
import { pumpUiStream } from "../../watch/ui_stream.ts";
import { applyUiRequest } from "../ai_sdk.ts";
import { userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { notFound } from "../errors.ts";
import { operation } from "../openapi.ts";
import { watchOf } from "../streaming.ts";
import { chatParam, uuid, validate } from "../validation.ts";

/*
 * The Vercel AI SDK's chat transport (docs/api.md "The AI SDK's useChat"): `DefaultChatTransport`
 * posts here and reads the turn as a UI message stream; `resumeStream()` reconnects to
 * `/{chat}/stream`. Backed by the chat's own queue, runner and stream: no store of its own.
 */

/** Messages the client may send along; only the last is read, the server holds the history. */
const maxUiMessages = 10_000;

const uiPart = z.looseObject({
  type: z.string().max(128),
  text: z.string().max(1_000_000).optional(),
  toolCallId: z.string().max(256).optional(),
  state: z.string().max(64).optional(),
  output: z.unknown().optional(),
  errorText: z.string().max(100_000).optional(),
});
// Loose objects: the SDK's messages and request carry fields pgchatd has no use for (metadata,
// the client's own `body` option), and a UI that upgrades its SDK should not start failing.
const uiRequestBody = z.looseObject({
  id: uuid(),
  messages: z
    .array(
      z.looseObject({
        id: z.string().max(256).optional(),
        role: z.enum(["user", "assistant", "system"]),
        parts: z.array(uiPart).max(1_000),
      }),
    )
    .min(1)
    .max(maxUiMessages),
  trigger: z.enum(["submit-message", "regenerate-message"]).default("submit-message"),
  messageId: z.string().max(256).optional(),
});

/** A turn is under way: the runner has it, or will soon. */
const turnUnderWay = (status: string) => status === "pending" || status === "running";

/** The chat waits for someone else now (its turn is over and nothing is queued behind it). */
async function chatSettled(db: Queryable, ownerId: string, chatId: string): Promise<boolean> {
  const [chat, queue] = await Promise.all([
    getChatByIDForOwner(db, { id: chatId, owner_id: ownerId }),
    listChatQueuedMessagesByChatID(db, { chat_id: chatId }),
  ]);
  if (!chat) return true;
  return !turnUnderWay(chat.status) && queue.length === 0;
}

/**
 * The chat's turn as a UI message stream, from `sub` (registered before anything it must show
 * was committed) until the chat has settled; the subscriber closes with the stream.
 */
function uiStreamResponse(
  opts: Omit<Parameters<typeof pumpUiStream>[0], "writer" | "settled"> & {
    ownerId: string;
    logger: Logger;
    /** The client's messages, when the turn may go on in its last one (tool outputs). */
    originalMessages?: UIMessage[];
  },
): Response {
  const { ownerId, logger, originalMessages, ...pump } = opts;
  return createUIMessageStreamResponse({
    stream: createUIMessageStream({
      originalMessages,
      execute: ({ writer }) =>
        pumpUiStream({
          ...pump,
          writer,
          settled: () => chatSettled(pump.db, ownerId, pump.chatId),
        }).finally(() => pump.sub.close("client")),
      onError: (err) => {
        logger.error({ err, chat: pump.chatId }, "AI SDK stream failed");
        return "The stream failed; the turn goes on: reconnect to see it.";
      },
    }),
  });
}

export const chatAiSdkRoutes = new Hono<AppEnv>()
  .post(
    "/",
    operation({
      summary:
        "The AI SDK's useChat transport: send the last message, read the turn as a UI message stream",
      tags: ["AI SDK"],
      responses: {
        200: {
          schema: EventStream,
          description: "A UI message stream (header x-vercel-ai-ui-message-stream: v1)",
          media: "text/event-stream",
        },
      },
      errors: [400, 404, 409, 429],
    }),
    validate("json", uiRequestBody),
    async (c) => {
      const { db, logger } = c.get("deps");
      const watch = watchOf(c);
      const actor = userOf(c.get("actor"));
      const body = c.req.valid("json");
      const chat = await getChatByIDForOwner(db, { id: body.id, owner_id: actor.user.id });
      if (!chat) throw notFound("Chat");
      // Registered before the request's write commits: the stream has every event of its turn.
      await watch.beforeSubscribe();
      const sub = watch.hub.subscribeChat(actor.user.id, chat.id);
      c.req.raw.signal.addEventListener("abort", () => sub.close("client"), { once: true });
      try {
        await applyUiRequest(db, actor, body);
      } catch (err) {
        sub.close("client");
        throw err;
      }
      return uiStreamResponse({
        db,
        sub,
        chatId: chat.id,
        ownerId: actor.user.id,
        logger,
        // The client's last message: when it is the assistant's (tool outputs), the turn goes on
        // in that message instead of a new one.
        originalMessages: body.messages as UIMessage[],
      });
    },
  )

  .get(
    "/:chat/stream",
    operation({
      summary: "The AI SDK's resumeStream: the running turn from its start, or 204 when none runs",
      tags: ["AI SDK"],
      responses: {
        200: {
          schema: EventStream,
          description: "A UI message stream",
          media: "text/event-stream",
        },
        204: null,
      },
      errors: [400, 404],
    }),
    validate("param", chatParam),
    async (c) => {
      const { db, logger } = c.get("deps");
      const watch = watchOf(c);
      const owner = userOf(c.get("actor")).user.id;
      const chat = await getChatByIDForOwner(db, {
        id: c.req.valid("param").chat,
        owner_id: owner,
      });
      if (!chat) throw notFound("Chat");
      await watch.beforeSubscribe();
      const sub = watch.hub.subscribeChat(owner, chat.id);
      c.req.raw.signal.addEventListener("abort", () => sub.close("client"), { once: true });
      // Read after registering: a turn that starts now is in the stream; one that ended is not.
      const now = await getChatByIDForOwner(db, { id: chat.id, owner_id: owner });
      if (!now || !turnUnderWay(now.status)) {
        sub.close("client");
        return c.body(null, 204);
      }
      const last = await getChatLastUserMessageByChatID(db, { chat_id: chat.id });
      return uiStreamResponse({
        db,
        sub,
        chatId: chat.id,
        ownerId: owner,
        logger,
        replayAfterMessageId: last?.id ?? 0,
      });
    },
  );
