import { Hono } from "hono";
import { z } from "zod";
import { WorkspaceBuild } from "../../api/schemas.ts";
import { getWorkspaceByID, insertWorkspaceBuild } from "../../generated/workspaces.ts";
import { generateToken } from "../../lib/tokens.ts";
import { userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { notFound } from "../errors.ts";
import { operation } from "../openapi.ts";
import { resourceName, uuid, validate } from "../validation.ts";

/** A workspace with more agents than this is a configuration mistake, not a real template. */
const maxAgentsPerBuild = 32;

const workspaceParam = z.object({ workspace: uuid() });
const createBuildBody = z.strictObject({
  agents: z
    .array(z.strictObject({ name: resourceName(64) }))
    .max(maxAgentsPerBuild)
    .refine((agents) => new Set(agents.map((a) => a.name.toLowerCase())).size === agents.length, {
      message: "agent names must be unique within a build",
    }),
});

export const workspacesRoutes = new Hono<AppEnv>().post(
  "/workspaces/:workspace/builds",
  operation({
    summary: "Start a build of a workspace: its agents get ids and tokens",
    tags: ["Workspaces"],
    responses: { 201: WorkspaceBuild },
    errors: [400, 404],
  }),
  validate("param", workspaceParam),
  validate("json", createBuildBody),
  async (c) => {
    const actor = userOf(c.get("actor"));
    const { workspace: workspaceId } = c.req.valid("param");
    const { agents } = c.req.valid("json");
    const db = c.get("deps").db;
    const ws = await getWorkspaceByID(db, { id: workspaceId });
    if (!ws || (ws.owner_id !== actor.user.id && !actor.isOwner)) throw notFound("Workspace");
    const tokens = agents.map(() => generateToken());
    const build = await insertWorkspaceBuild(db, {
      workspace_id: ws.id,
      created_by: actor.user.id,
      agent_names: agents.map((a) => a.name),
      agent_token_ids: tokens.map((t) => t.id),
      agent_hashed_tokens: tokens.map((t) => t.hashedSecret),
    });
    if (!build) throw notFound("Workspace"); // deleted between the read and the insert
    return c.json(
      {
        id: build.id,
        workspace_id: build.workspace_id,
        build_number: build.build_number,
        agents: agents.map((a, i) => ({
          id: build.agent_ids[i],
          name: a.name,
          token: tokens[i]!.token,
        })),
      },
      201,
    );
  },
);
