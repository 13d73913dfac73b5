import { Hono } from "hono";
import { z } from "zod";
import { ChatCost, CostSummary, CostUsers } from "../../api/schemas.ts";
import { type CostWindow, costSummaryJson, costUsersJson } from "../../api/shapes.ts";
import {
  getChatCostByChatID,
  listChatCostByUser,
  listChatCostSummaryByOwner,
} from "../../generated/chat_costs.ts";
import { getChatUsageLimitStatus } from "../../generated/chat_usage_limits.ts";
import { getUserByID } from "../../generated/users.ts";
import { requireOwner, userOf } from "../auth.ts";
import { type AppEnv, readDb } from "../deps.ts";
import { badRequest, notFound } from "../errors.ts";
import { operation } from "../openapi.ts";
import { chatParam, uuid, validate } from "../validation.ts";

/*
 * Cost analytics (docs/api.md "Cost and limit bodies"): a user's summary, every user's cost for
 * site owners, and a chat's cost with its descendants. Each rollup is one query of
 * sql/queries/chat_costs.sql over the daily rollup (docs/sql.md "Cost and spend limits").
 */

const dayMs = 86_400_000;
/**
 * The default window: the 30 UTC days ending with today (end_date is the coming midnight). A
 * window from midnight to midnight is answered from the daily rollup alone, without reading a
 * message; a window with other bounds also reads the messages of its partial first and last days.
 */
const defaultWindowDays = 30;

/** An RFC 3339 date-time with an offset, or a date (its UTC midnight). */
const instant = z
  .union([z.iso.datetime({ offset: true }), z.iso.date()])
  .transform((s) => new Date(s.length === 10 ? `${s}T00:00:00Z` : s))
  .refine((d) => !Number.isNaN(d.getTime()), "must be a valid date");

const windowQuery = z.object({
  start_date: instant.optional(),
  end_date: instant.optional(),
});

/** RFC 3339 in UTC with microseconds, like every timestamp of the API. */
const rfc3339 = (d: Date) => `${d.toISOString().slice(0, 23)}000Z`;

function costWindow(query: z.infer<typeof windowQuery>): CostWindow {
  const now = Date.now();
  const end = query.end_date ?? new Date(Math.floor(now / dayMs) * dayMs + dayMs);
  const start = query.start_date ?? new Date(end.getTime() - defaultWindowDays * dayMs);
  if (start.getTime() >= end.getTime()) {
    throw badRequest("start_date must be before end_date.");
  }
  return { start_date: rfc3339(start), end_date: rfc3339(end) };
}

const summaryParam = z.object({ user: z.union([z.literal("me"), uuid()]) });
const summaryQuery = windowQuery.extend({
  /** The organization whose spend limit the summary reports; default the user's first. */
  organization_id: uuid().optional(),
});

const maxPageSize = 200;
const defaultPageSize = 50;
/** The page lists users, at most one per account: no deployment has more. */
const maxOffset = 1_000_000;
const usersQuery = windowQuery.extend({
  username: z.string().max(256).default(""),
  limit: z.coerce.number().int().min(1).max(maxPageSize).default(defaultPageSize),
  offset: z.coerce.number().int().min(0).max(maxOffset).default(0),
});

export const chatCostsRoutes = new Hono<AppEnv>()
  .get(
    "/cost/users",
    operation({
      summary: "Spend by user in a window (site owners)",
      tags: ["Cost"],
      responses: { 200: CostUsers },
      errors: [400, 403],
    }),
    requireOwner,
    validate("query", usersQuery),
    async (c) => {
      const query = c.req.valid("query");
      const window = costWindow(query);
      // Cost reads run on a standby when there is one (src/db/replica.ts).
      const rows = await listChatCostByUser(await readDb(c.get("deps")), {
        ...window,
        search: query.username,
        limit: query.limit,
        offset: query.offset,
      });
      return c.json(costUsersJson(window, rows));
    },
  )

  .get(
    "/cost/:user/summary",
    operation({
      summary:
        "A user's spend in a window, by model and by chat (`me`, or any user for site owners)",
      tags: ["Cost"],
      responses: { 200: CostSummary },
      errors: [400, 404],
    }),
    validate("param", summaryParam),
    validate("query", summaryQuery),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const db = await readDb(c.get("deps"));
      const param = c.req.valid("param").user;
      const query = c.req.valid("query");
      const userId = param === "me" ? actor.user.id : param;
      // A member may read only their own summary; anyone else's looks missing.
      if (userId !== actor.user.id && !actor.isOwner) throw notFound("User");
      const user = userId === actor.user.id ? actor.user : await getUserByID(db, { id: userId });
      if (!user) throw notFound("User");
      if (query.organization_id && !user.organization_ids.includes(query.organization_id)) {
        throw badRequest("The user is not a member of this organization.");
      }
      const organizationId = query.organization_id ?? user.organization_ids[0];
      const window = costWindow(query);
      const [rows, limit] = await Promise.all([
        listChatCostSummaryByOwner(db, { ...window, owner_id: userId }),
        organizationId
          ? getChatUsageLimitStatus(db, { user_id: userId, organization_id: organizationId })
          : null,
      ]);
      return c.json(costSummaryJson(window, rows, limit));
    },
  )

  .get(
    "/:chat/cost",
    operation({
      summary: "The cost of a chat and its subagents",
      tags: ["Cost"],
      responses: { 200: ChatCost },
      errors: [400, 404],
    }),
    validate("param", chatParam),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const row = await getChatCostByChatID(await readDb(c.get("deps")), {
        chat_id: c.req.valid("param").chat,
        owner_id: actor.user.id,
      });
      if (!row) throw notFound("Chat");
      return c.json(row);
    },
  );
