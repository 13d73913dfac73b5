import { Hono } from "hono";
import { z } from "zod";
import {
  getChatHousekeepingConfig,
  setChatAutoArchiveDays,
  setChatRetentionDays,
} from "../../generated/chat_housekeeping.ts";
import { requireOwner, userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { operation } from "../openapi.ts";
import { validate } from "../validation.ts";

/*
 * Housekeeping settings (docs/api.md "Housekeeping"), site owners only, audited: how long archived
 * chats are kept, and after how many days without activity roots are archived. Stored in
 * chat_housekeeping_config (sql/functions/chat_housekeeping.sql).
 */

/** Ten years: the schema's bound too (chat_housekeeping_config's CHECKs). */
const maxDays = 3650;
const days = z.number().int().min(0).max(maxDays);
const retentionBody = z.strictObject({ retention_days: days });
const autoArchiveBody = z.strictObject({ auto_archive_days: days });

export const chatHousekeepingRoutes = new Hono<AppEnv>()
  .use(requireOwner)

  .get(
    "/retention",
    operation({
      summary: "How long archived chats are kept (site owners)",
      tags: ["Housekeeping"],
      responses: { 200: z.object({ retention_days: z.number().int() }) },
      errors: [403],
    }),
    async (c) => {
      const config = await getChatHousekeepingConfig(c.get("deps").db);
      return c.json({ retention_days: config!.retention_days });
    },
  )

  .put(
    "/retention",
    operation({
      summary: "Set how long archived chats are kept; 0 keeps them (site owners)",
      tags: ["Housekeeping"],
      responses: { 200: z.object({ retention_days: z.number().int() }) },
      errors: [400, 403],
    }),
    validate("json", retentionBody),
    async (c) => {
      const row = await setChatRetentionDays(c.get("deps").db, {
        actor_id: userOf(c.get("actor")).user.id,
        retention_days: c.req.valid("json").retention_days,
      });
      return c.json({ retention_days: row!.retention_days });
    },
  )

  .get(
    "/auto-archive",
    operation({
      summary: "After how many idle days chats are archived (site owners)",
      tags: ["Housekeeping"],
      responses: { 200: z.object({ auto_archive_days: z.number().int() }) },
      errors: [403],
    }),
    async (c) => {
      const config = await getChatHousekeepingConfig(c.get("deps").db);
      return c.json({ auto_archive_days: config!.auto_archive_days });
    },
  )

  .put(
    "/auto-archive",
    operation({
      summary: "Set after how many idle days chats are archived; 0 never (site owners)",
      tags: ["Housekeeping"],
      responses: { 200: z.object({ auto_archive_days: z.number().int() }) },
      errors: [400, 403],
    }),
    validate("json", autoArchiveBody),
    async (c) => {
      const row = await setChatAutoArchiveDays(c.get("deps").db, {
        actor_id: userOf(c.get("actor")).user.id,
        auto_archive_days: c.req.valid("json").auto_archive_days,
      });
      return c.json({ auto_archive_days: row!.auto_archive_days });
    },
  );
