import { Hono } from "hono";
import { z } from "zod";
import { ChatStreamEvent, WatchStreamEvent } from "../../api/schemas.ts";
import { getChatExistsByIDForOwner } from "../../generated/chats.ts";
import { resolveResume, runChatStream, runWatchStream } from "../../watch/index.ts";
import { userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { notFound } from "../errors.ts";
import { operation } from "../openapi.ts";
import { lastEventId, sseResponse, watchOf } from "../streaming.ts";
import { chatParam, validate } from "../validation.ts";

/** A cursor is "<xid>.<id>"; anything up to this length is parsed (and malformed means resync). */
const cursorQuery = z.string().max(64).optional();
const watchQuery = z.object({ after: cursorQuery });
const streamQuery = z.object({
  after: cursorQuery,
  after_id: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
});

/** GET /watch and GET /{chat}/stream (docs/api.md "Streams"); the lifecycle is in ../streams.ts. */
export const chatEventsRoutes = new Hono<AppEnv>()
  .get(
    "/watch",
    operation({
      summary: "Live events of the caller's chats (SSE), resumable with Last-Event-ID",
      tags: ["Streams"],
      responses: {
        200: {
          schema: WatchStreamEvent,
          description:
            'Events named by their kind, each with `{kind, chat, tool_calls?}` as data (docs/api.md "Streams"); `resync` when the cursor is unknown or expired. The schema is one event\'s.',
          media: "text/event-stream",
        },
      },
      errors: [400],
    }),
    validate("query", watchQuery),
    async (c) => {
      const { db, logger } = c.get("deps");
      const watch = watchOf(c);
      const owner = userOf(c.get("actor")).user.id;
      const resume = await resolveResume(
        db,
        lastEventId(c.req.header("last-event-id"), c.req.valid("query").after),
      );
      // Before the response starts: the subscriber is registered by the time the client sees the
      // stream open, so nothing committed after that is missed.
      await watch.beforeSubscribe();
      return sseResponse(
        c,
        (stream) => runWatchStream({ stream, watch, db, logger }, owner, resume),
        (err) => logger.error({ err }, "watch stream failed"),
      );
    },
  )
  .get(
    "/:chat/stream",
    operation({
      summary: "A chat's state, then its live events (SSE), resumable with Last-Event-ID",
      tags: ["Streams"],
      responses: {
        200: {
          schema: ChatStreamEvent,
          description:
            "`status`, then by state `error`, `action_required`, `retry`, each `message`, the running turn's `message_part`s so far, then live events (docs/api.md \"Streams\"). The schema is one event's.",
          media: "text/event-stream",
        },
      },
      errors: [400, 404],
    }),
    validate("param", chatParam),
    validate("query", streamQuery),
    async (c) => {
      const { db, logger } = c.get("deps");
      const watch = watchOf(c);
      const owner = userOf(c.get("actor")).user.id;
      const { chat } = c.req.valid("param");
      const q = c.req.valid("query");
      if (!(await getChatExistsByIDForOwner(db, { id: chat, owner_id: owner })).found) {
        throw notFound("Chat");
      }
      const resume = await resolveResume(db, lastEventId(c.req.header("last-event-id"), q.after));
      await watch.beforeSubscribe();
      return sseResponse(
        c,
        (stream) => runChatStream({ stream, watch, db, logger }, owner, chat, q.after_id, resume),
        (err) => logger.error({ err, chat }, "chat stream failed"),
      );
    },
  );
