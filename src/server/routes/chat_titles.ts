import { Hono } from "hono";
import { Chat } from "../../api/schemas.ts";
import { regenerateChatTitle } from "../../models/index.ts";
import { userOf } from "../auth.ts";
import { loadChat } from "../chat_view.ts";
import type { AppEnv } from "../deps.ts";
import { modelFailed, unavailable } from "../errors.ts";
import { operation } from "../openapi.ts";
import { chatParam, validate } from "../validation.ts";

/*
 * POST /{chat}/title/regenerate: one regeneration at a time per chat across replicas
 * (sql/functions/chat_titles.sql); the model call itself is src/models/chat_titles.ts.
 */
export const chatTitlesRoutes = new Hono<AppEnv>().post(
  "/:chat/title/regenerate",
  operation({
    summary: "Generate the chat's title again from its conversation",
    tags: ["Chats"],
    responses: { 200: Chat },
    errors: [400, 404, 409],
  }),
  validate("param", chatParam),
  async (c) => {
    const actor = userOf(c.get("actor"));
    const { chat } = c.req.valid("param");
    const { db, models } = c.get("deps");
    if (!models) throw unavailable("Model calls are not configured on this server.");
    const result = await regenerateChatTitle({ db, models }, actor.user.id, chat);
    if (!result.ok) throw modelFailed(result.error);
    return c.json(await loadChat(db, actor.user.id, chat));
  },
);
