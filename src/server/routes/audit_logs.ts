import { Hono } from "hono";
import { z } from "zod";
import { AuditEntries } from "../../api/schemas.ts";
import {
  type ListAuditLogsRow,
  listAuditLogs,
  listAuditLogsByChatID,
} from "../../generated/audit_logs.ts";
import { getChatExistsByIDForOwner } from "../../generated/chats.ts";
import { requireOwner, userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { notFound } from "../errors.ts";
import { operation } from "../openapi.ts";
import { chatParam, rowId, uuid, validate } from "../validation.ts";

/*
 * The audit log (docs/api.md "Audit log"): who did what to which chat, with which API key.
 * A chat's owner reads the chat's entries; site owners read the whole deployment's, optionally
 * one key's (what did a leaked key do?) or one chat's. Newest first, keyset pages by after_id.
 */

const maxPageSize = 200;
const defaultPageSize = 50;

const page = {
  after_id: rowId("an audit entry").optional(),
  limit: z.coerce.number().int().min(1).max(maxPageSize).default(defaultPageSize),
};
const chatQuery = z.object(page);
const deploymentQuery = z.object({
  ...page,
  // api_keys.id's format: anything else cannot name a key.
  api_key_id: z
    .string()
    .regex(/^[a-z0-9]{10}$/, "must be an API key id")
    .optional(),
  chat_id: uuid().optional(),
});

function pageJson(rows: ListAuditLogsRow[], limit: number) {
  return {
    entries: rows.slice(0, limit).map((a) => ({
      id: Number(a.id),
      time: a.time,
      action: a.action,
      actor_user_id: a.actor_user_id,
      actor_agent_id: a.actor_agent_id,
      api_key_id: a.api_key_id,
      chat_id: a.chat_id,
      agent_id: a.agent_id,
      detail: a.detail ?? {},
    })),
    has_more: rows.length > limit,
  };
}

export const auditLogsRoutes = new Hono<AppEnv>()
  .get(
    "/audit",
    operation({
      summary: "The deployment's audit log, newest first (site owners)",
      tags: ["Audit"],
      responses: { 200: AuditEntries },
      errors: [400, 403],
    }),
    requireOwner,
    validate("query", deploymentQuery),
    async (c) => {
      const query = c.req.valid("query");
      const rows = await listAuditLogs(c.get("deps").db, {
        api_key_id: query.api_key_id ?? null,
        chat_id: query.chat_id ?? null,
        after_id: query.after_id ?? null,
        page_limit: query.limit + 1,
      });
      return c.json(pageJson(rows, query.limit));
    },
  )

  .get(
    "/:chat/audit",
    operation({
      summary: "A chat's audit log, newest first",
      tags: ["Audit"],
      responses: { 200: AuditEntries },
      errors: [400, 404],
    }),
    validate("param", chatParam),
    validate("query", chatQuery),
    async (c) => {
      const db = c.get("deps").db;
      const ownerId = userOf(c.get("actor")).user.id;
      const chatId = c.req.valid("param").chat;
      const query = c.req.valid("query");
      const rows = await listAuditLogsByChatID(db, {
        chat_id: chatId,
        owner_id: ownerId,
        after_id: query.after_id ?? null,
        page_limit: query.limit + 1,
      });
      // No rows: another owner's chat (404, like every chat route) or a page past the end.
      if (
        rows.length === 0 &&
        !(await getChatExistsByIDForOwner(db, { id: chatId, owner_id: ownerId })).found
      )
        throw notFound("Chat");
      return c.json(pageJson(rows, query.limit));
    },
  );
