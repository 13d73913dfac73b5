import { Hono } from "hono";
import { z } from "zod";
import { Group, Workspace } from "../../api/schemas.ts";
import { getGroupByID, insertGroup, upsertGroupMember } from "../../generated/groups.ts";
import {
  getOrganizationByID,
  insertOrganization,
  upsertOrganizationMember,
} from "../../generated/organizations.ts";
import { insertWorkspace } from "../../generated/workspaces.ts";
import { requireOwner, userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { forbidden, notFound } from "../errors.ts";
import { operation } from "../openapi.ts";
import { micros, resourceName, uuid, validate } from "../validation.ts";

const orgParam = z.object({ org: uuid() });
const orgUserParam = z.object({ org: uuid(), user: uuid() });
const groupMemberParam = z.object({ org: uuid(), group: uuid(), user: uuid() });

const createOrgBody = z.strictObject({ name: resourceName(64) });
const createGroupBody = z.strictObject({
  name: z.string().trim().min(1).max(64),
  chat_spend_limit_micros: micros().nullable().optional(),
});
const createWorkspaceBody = z.strictObject({
  name: resourceName(64),
  owner_id: uuid().optional(),
});

export const organizationsRoutes = new Hono<AppEnv>()
  .post(
    "/organizations",
    operation({
      summary: "Create an organization (site owners)",
      tags: ["Organizations"],
      responses: { 201: z.object({ id: z.string(), name: z.string() }) },
      errors: [400, 403, 409],
    }),
    requireOwner,
    validate("json", createOrgBody),
    async (c) => {
      const org = await insertOrganization(c.get("deps").db, { name: c.req.valid("json").name });
      return c.json({ id: org.id, name: org.name }, 201);
    },
  )

  .put(
    "/organizations/:org/members/:user",
    operation({
      summary: "Add a user to an organization (site owners)",
      tags: ["Organizations"],
      responses: { 200: z.object({ organization_id: z.string(), user_id: z.string() }) },
      errors: [400, 403, 404],
    }),
    requireOwner,
    validate("param", orgUserParam),
    async (c) => {
      const { org, user } = c.req.valid("param");
      const db = c.get("deps").db;
      if (!(await getOrganizationByID(db, { id: org }))) throw notFound("Organization");
      // An unknown user fails the foreign key: 404 (see errors.ts).
      await upsertOrganizationMember(db, { organization_id: org, user_id: user });
      return c.json({ organization_id: org, user_id: user }, 200);
    },
  )

  .post(
    "/organizations/:org/groups",
    operation({
      summary: "Create a group in an organization (site owners)",
      tags: ["Organizations"],
      responses: { 201: Group },
      errors: [400, 403, 404, 409],
    }),
    requireOwner,
    validate("param", orgParam),
    validate("json", createGroupBody),
    async (c) => {
      const { org } = c.req.valid("param");
      const body = c.req.valid("json");
      const db = c.get("deps").db;
      if (!(await getOrganizationByID(db, { id: org }))) throw notFound("Organization");
      const group = await insertGroup(db, {
        organization_id: org,
        name: body.name,
        chat_spend_limit_micros: body.chat_spend_limit_micros ?? null,
      });
      return c.json(group!, 201);
    },
  )

  .put(
    "/organizations/:org/groups/:group/members/:user",
    operation({
      summary: "Add a member of the organization to a group (site owners)",
      tags: ["Organizations"],
      responses: { 200: z.object({ group_id: z.string(), user_id: z.string() }) },
      errors: [400, 403, 404],
    }),
    requireOwner,
    validate("param", groupMemberParam),
    async (c) => {
      const { org, group, user } = c.req.valid("param");
      const db = c.get("deps").db;
      const found = await getGroupByID(db, { id: group });
      if (!found || found.organization_id !== org) throw notFound("Group");
      // A user outside the organization fails group_members_organization_member_fkey: 400.
      await upsertGroupMember(db, { group_id: group, organization_id: org, user_id: user });
      return c.json({ group_id: group, user_id: user }, 200);
    },
  )

  .post(
    "/organizations/:org/workspaces",
    operation({
      summary: "Create a workspace in an organization",
      tags: ["Workspaces"],
      responses: { 201: Workspace },
      errors: [400, 403, 404, 409],
    }),
    validate("param", orgParam),
    validate("json", createWorkspaceBody),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const { org } = c.req.valid("param");
      const body = c.req.valid("json");
      const db = c.get("deps").db;
      if (!(await getOrganizationByID(db, { id: org }))) throw notFound("Organization");
      if (!actor.isOwner && !actor.user.organization_ids.includes(org)) {
        throw forbidden("You are not a member of this organization.");
      }
      const ownerId = body.owner_id ?? actor.user.id;
      if (ownerId !== actor.user.id && !actor.isOwner) {
        throw forbidden("Only site owners may create workspaces for other users.");
      }
      const ws = await insertWorkspace(db, {
        organization_id: org,
        owner_id: ownerId,
        name: body.name,
      });
      return c.json(
        {
          id: ws.id,
          name: ws.name,
          owner_id: ws.owner_id,
          organization_id: ws.organization_id,
        },
        201,
      );
    },
  );
