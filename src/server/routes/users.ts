import { Hono } from "hono";
import { z } from "zod";
import { User } from "../../api/schemas.ts";
import { userJson } from "../../api/shapes.ts";
import { insertAPIKey } from "../../generated/api_keys.ts";
import { getOrganizationByName } from "../../generated/organizations.ts";
import { getUserByID, insertUser } from "../../generated/users.ts";
import { generateToken } from "../../lib/tokens.ts";
import { requireOwner, userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { notFound } from "../errors.ts";
import { operation } from "../openapi.ts";
import { micros, resourceName, uuid, validate } from "../validation.ts";

/** Keys last 30 days unless the caller asks otherwise. */
const defaultKeyLifetimeSeconds = 30 * 24 * 3600;
/** Ten years: longer lifetimes are almost always a mistake (and overflow nothing). */
const maxKeyLifetimeSeconds = 10 * 365 * 24 * 3600;

const createUserBody = z.strictObject({
  username: resourceName(32),
  name: z.string().max(128).optional(),
  email: z.email().max(320).optional(),
  roles: z
    .array(z.enum(["owner", "member"]))
    .max(2)
    .optional(),
  organization_ids: z.array(uuid()).max(100).optional(),
  chat_spend_limit_micros: micros().nullable().optional(),
});

const userParam = z.object({ user: z.union([z.literal("me"), uuid()]) });

const createKeyBody = z.strictObject({
  lifetime_seconds: z.number().int().min(1).max(maxKeyLifetimeSeconds).optional(),
});

export const usersRoutes = new Hono<AppEnv>()
  .get(
    "/users/me",
    operation({
      summary: "The caller",
      tags: ["Users"],
      responses: { 200: User },
    }),
    (c) => c.json(userJson(userOf(c.get("actor")).user)),
  )

  .post(
    "/users",
    operation({
      summary: "Create a user (site owners)",
      tags: ["Users"],
      responses: { 201: User },
      errors: [400, 403, 409],
    }),
    requireOwner,
    validate("json", createUserBody),
    async (c) => {
      const body = c.req.valid("json");
      const db = c.get("deps").db;
      let organizationIds = body.organization_ids;
      if (!organizationIds) {
        const org = await getOrganizationByName(db, { name: "default" });
        organizationIds = org ? [org.id] : [];
      }
      const user = await insertUser(db, {
        username: body.username,
        name: body.name ?? "",
        email: body.email ?? null,
        roles: body.roles && body.roles.length > 0 ? [...new Set(body.roles)] : ["member"],
        chat_spend_limit_micros: body.chat_spend_limit_micros ?? null,
        organization_ids: organizationIds,
      });
      return c.json(userJson(user!), 201);
    },
  )

  .post(
    "/users/:user/keys",
    operation({
      summary: "Create an API key for the caller (`me`), or for any user (site owners)",
      tags: ["Users"],
      responses: {
        201: {
          schema: z.object({ key: z.string() }),
          description: "The key, shown once: only a hash of its secret is stored",
        },
      },
      errors: [400, 404],
    }),
    validate("param", userParam),
    validate("json", createKeyBody),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { user: target } = c.req.valid("param");
      const userId = target === "me" ? actor.user.id : target;
      if (userId !== actor.user.id && !actor.isOwner) {
        // Another member's id: indistinguishable from a missing user.
        throw notFound("User");
      }
      const db = c.get("deps").db;
      if (userId !== actor.user.id && !(await getUserByID(db, { id: userId })))
        throw notFound("User");
      const token = generateToken();
      const lifetime = c.req.valid("json").lifetime_seconds ?? defaultKeyLifetimeSeconds;
      await insertAPIKey(db, {
        id: token.id,
        user_id: userId,
        hashed_secret: token.hashedSecret,
        lifetime_seconds: lifetime,
      });
      return c.json({ key: token.token }, 201);
    },
  );
