import { Hono } from "hono";
import { z } from "zod";
import { Notifications } from "../../api/schemas.ts";
import {
  listNotificationsByUserID,
  markAllNotificationsReadByUserID,
  markNotificationReadByID,
} from "../../generated/notifications.ts";
import { userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { notFound } from "../errors.ts";
import { operation } from "../openapi.ts";
import { rowId, validate } from "../validation.ts";

/*
 * The caller's inbox (docs/api.md "Notifications"): what the server tells a user, such as the
 * daily digest of chats the housekeeping job archived. Newest first, keyset pages by after_id.
 */

const maxPageSize = 200;
const defaultPageSize = 50;
const notificationId = rowId("a notification");

const listQuery = z.object({
  unread: z
    .enum(["true", "false"])
    .optional()
    .transform((v) => v === "true"),
  after_id: notificationId.optional(),
  limit: z.coerce.number().int().min(1).max(maxPageSize).default(defaultPageSize),
});
const idParam = z.object({ id: notificationId });

export const notificationsRoutes = new Hono<AppEnv>()
  .get(
    "/notifications",
    operation({
      summary: "The caller's notifications, newest first",
      tags: ["Notifications"],
      responses: { 200: Notifications },
      errors: [400],
    }),
    validate("query", listQuery),
    async (c) => {
      const query = c.req.valid("query");
      const rows = await listNotificationsByUserID(c.get("deps").db, {
        user_id: userOf(c.get("actor")).user.id,
        after_id: query.after_id ?? null,
        unread_only: query.unread,
        page_limit: query.limit + 1,
      });
      return c.json({
        notifications: rows.slice(0, query.limit).map((n) => ({
          id: Number(n.id),
          kind: n.kind,
          title: n.title,
          body: n.body,
          created_at: n.created_at,
          read_at: n.read_at,
        })),
        has_more: rows.length > query.limit,
      });
    },
  )

  // Before /notifications/:id/read, which would take "read-all" as an id (and refuse it).
  .put(
    "/notifications/read-all",
    operation({
      summary: "Mark every notification of the caller read",
      tags: ["Notifications"],
      responses: { 204: null },
    }),
    async (c) => {
      await markAllNotificationsReadByUserID(c.get("deps").db, {
        user_id: userOf(c.get("actor")).user.id,
      });
      return c.body(null, 204);
    },
  )

  .put(
    "/notifications/:id/read",
    operation({
      summary: "Mark a notification read",
      tags: ["Notifications"],
      responses: { 204: null },
      errors: [400, 404],
    }),
    validate("param", idParam),
    async (c) => {
      const found = await markNotificationReadByID(c.get("deps").db, {
        id: c.req.valid("param").id,
        user_id: userOf(c.get("actor")).user.id,
      });
      // Another user's notification looks missing, like a chat does.
      if (found === 0) throw notFound("Notification");
      return c.body(null, 204);
    },
  );
