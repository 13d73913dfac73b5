import { Hono } from "hono";
import { z } from "zod";
import {
  GroupOverride,
  UsageLimitConfig,
  UsageLimitStatus,
  UserOverride,
} from "../../api/schemas.ts";
import { usageLimitConfigJson, usageLimitStatusJson } from "../../api/shapes.ts";
import { type Queryable, withTx } from "../../db/index.ts";
import {
  getChatUsageLimitConfig,
  getChatUsageLimitStatus,
  listChatUsageLimitGroupOverrides,
  listChatUsageLimitUserOverrides,
  setChatUsageLimitConfig,
  setChatUsageLimitGroupOverride,
  setChatUsageLimitUserOverride,
} from "../../generated/chat_usage_limits.ts";
import { requireOwner, userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { forbidden } from "../errors.ts";
import { operation } from "../openapi.ts";
import { uuid, validate } from "../validation.ts";

/*
 * Spend limits (docs/api.md "Spend limits"): the deployment's limit and its user and group
 * overrides (site owners; every change audited), and the caller's own status. Resolution, the
 * period and the check inside create and send are SQL (sql/functions/chat_usage_limits.sql).
 */

/** A positive amount of micros within JavaScript's safe integers (0 would block everyone). */
const limitMicros = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

const configBody = z.strictObject({
  spend_limit_micros: limitMicros.nullable(),
  /** Omitted, the period stays as it is. */
  period: z.enum(["day", "week", "month"]).optional(),
});
const overrideBody = z.strictObject({ spend_limit_micros: limitMicros });
const userParam = z.object({ user: uuid() });
const groupParam = z.object({ group: uuid() });
const statusQuery = z.object({
  /** The organization to report on; default the caller's first. */
  organization_id: uuid().optional(),
});

/**
 * One read after another, not in parallel: the writes pass their transaction's client, and a
 * client runs one statement at a time (node-postgres queues the rest, a queue pg 9 removes).
 */
async function loadConfig(db: Queryable) {
  const config = await getChatUsageLimitConfig(db);
  const overrides = await listChatUsageLimitUserOverrides(db, { target_user_id: null });
  const groupOverrides = await listChatUsageLimitGroupOverrides(db, { group_id: null });
  return usageLimitConfigJson(config!, overrides, groupOverrides);
}

export const chatUsageLimitsRoutes = new Hono<AppEnv>()
  .get(
    "/status",
    operation({
      summary: "The caller's spend against their limit",
      tags: ["Spend limits"],
      responses: { 200: UsageLimitStatus },
      errors: [400, 403],
    }),
    validate("query", statusQuery),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const requested = c.req.valid("query").organization_id;
      if (requested && !actor.user.organization_ids.includes(requested)) {
        throw forbidden("You are not a member of this organization.");
      }
      const organizationId = requested ?? actor.user.organization_ids[0];
      if (!organizationId) throw forbidden("You are not a member of any organization.");
      const status = await getChatUsageLimitStatus(c.get("deps").db, {
        user_id: actor.user.id,
        organization_id: organizationId,
      });
      return c.json(usageLimitStatusJson(status!));
    },
  )

  .get(
    "/",
    operation({
      summary: "The spend limit and its overrides (site owners)",
      tags: ["Spend limits"],
      responses: { 200: UsageLimitConfig },
      errors: [403],
    }),
    requireOwner,
    async (c) => c.json(await loadConfig(c.get("deps").db)),
  )

  .put(
    "/",
    operation({
      summary: "Set the spend limit and its period; null turns limiting off (site owners)",
      tags: ["Spend limits"],
      responses: { 200: UsageLimitConfig },
      errors: [400, 403],
    }),
    requireOwner,
    validate("json", configBody),
    async (c) => {
      const body = c.req.valid("json");
      // Written and read in one transaction: the answer is this request's change, not that of
      // another one committed in between.
      const config = await withTx(c.get("deps").db, async (tx) => {
        await setChatUsageLimitConfig(tx, {
          actor_id: userOf(c.get("actor")).user.id,
          spend_limit_micros: body.spend_limit_micros,
          period: body.period ?? null,
        });
        return loadConfig(tx);
      });
      return c.json(config);
    },
  )

  .put(
    "/overrides/:user",
    operation({
      summary: "Set a user's own limit (site owners)",
      tags: ["Spend limits"],
      responses: { 200: UserOverride },
      errors: [400, 403, 404],
    }),
    requireOwner,
    validate("param", userParam),
    validate("json", overrideBody),
    async (c) => {
      const userId = c.req.valid("param").user;
      // In one transaction, which holds the user's row from the write on: a DELETE or another PUT
      // committed between the write and the read would make this answer theirs, or nothing at all.
      const override = await withTx(c.get("deps").db, async (tx) => {
        await setChatUsageLimitUserOverride(tx, {
          actor_id: userOf(c.get("actor")).user.id,
          target_user_id: userId,
          spend_limit_micros: c.req.valid("json").spend_limit_micros,
        });
        const [row] = await listChatUsageLimitUserOverrides(tx, { target_user_id: userId });
        return row;
      });
      return c.json(override);
    },
  )

  .delete(
    "/overrides/:user",
    operation({
      summary: "Remove a user's own limit (site owners)",
      tags: ["Spend limits"],
      responses: { 204: null },
      errors: [400, 403, 404],
    }),
    requireOwner,
    validate("param", userParam),
    async (c) => {
      await setChatUsageLimitUserOverride(c.get("deps").db, {
        actor_id: userOf(c.get("actor")).user.id,
        target_user_id: c.req.valid("param").user,
        spend_limit_micros: null,
      });
      return c.body(null, 204);
    },
  )

  .put(
    "/group-overrides/:group",
    operation({
      summary: "Set a group's limit (site owners)",
      tags: ["Spend limits"],
      responses: { 200: GroupOverride },
      errors: [400, 403, 404],
    }),
    requireOwner,
    validate("param", groupParam),
    validate("json", overrideBody),
    async (c) => {
      const groupId = c.req.valid("param").group;
      // One transaction, as for a user's override above.
      const override = await withTx(c.get("deps").db, async (tx) => {
        await setChatUsageLimitGroupOverride(tx, {
          actor_id: userOf(c.get("actor")).user.id,
          group_id: groupId,
          spend_limit_micros: c.req.valid("json").spend_limit_micros,
        });
        const [row] = await listChatUsageLimitGroupOverrides(tx, { group_id: groupId });
        return row;
      });
      return c.json(override);
    },
  )

  .delete(
    "/group-overrides/:group",
    operation({
      summary: "Remove a group's limit (site owners)",
      tags: ["Spend limits"],
      responses: { 204: null },
      errors: [400, 403, 404],
    }),
    requireOwner,
    validate("param", groupParam),
    async (c) => {
      await setChatUsageLimitGroupOverride(c.get("deps").db, {
        actor_id: userOf(c.get("actor")).user.id,
        group_id: c.req.valid("param").group,
        spend_limit_micros: null,
      });
      return c.body(null, 204);
    },
  );
