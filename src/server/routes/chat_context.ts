import { Hono } from "hono";
import { z } from "zod";
import { Chat } from "../../api/schemas.ts";
import {
  addChatContextFiles,
  clearChatContextFiles,
  pushWorkspaceAgentContext,
  repinChatContextByID,
} from "../../generated/chat_context.ts";
import { agentOf, userOf } from "../auth.ts";
import { loadChat } from "../chat_view.ts";
import type { AppEnv } from "../deps.ts";
import { operation } from "../openapi.ts";
import { chatParam, uuid, validate } from "../validation.ts";

/*
 * The workspace agent's own routes (`/api/v2/workspaceagents/me/...`, agent token): its context
 * snapshot, and context files for the chats bound to it. Rules in sql/functions/chat_context.sql;
 * an agent acts only on chats bound to itself (another's look missing: 404).
 */

/** Resources per snapshot: instruction files, skills and MCP configs of one workspace. */
const maxResources = 256;
/** Files per chat-context request. */
const maxContextFiles = 64;
/**
 * Characters of one resource body or context file: a large instruction file fits, and the 1 MiB
 * request limit bounds the total.
 */
const maxBodyLength = 256 * 1024;
/** A path or source: longer than any real path, short enough to index and show. */
const maxSourceLength = 1024;
const maxErrorLength = 4096;

/** Text Postgres can store: no NUL characters. */
const storable = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !s.includes("\u0000"), "must not contain NUL characters");

const contextPush = z.strictObject({
  resources: z
    .array(
      z.strictObject({
        source: storable(maxSourceLength).min(1),
        kind: z.enum(["instruction_file", "skill", "mcp_config"]),
        body: storable(maxBodyLength),
        status: z.enum(["ok", "oversize", "unreadable", "invalid", "excluded"]).optional(),
        error: storable(maxErrorLength).nullable().optional(),
      }),
    )
    .max(maxResources)
    .refine((rs) => new Set(rs.map((r) => r.source)).size === rs.length, {
      message: "sources must be unique",
    }),
  error: storable(maxErrorLength).nullable().optional(),
});

const contextFiles = z.strictObject({
  chat_id: uuid().optional(),
  files: z
    .array(
      z.strictObject({
        path: storable(maxSourceLength).min(1),
        content: storable(maxBodyLength),
      }),
    )
    .min(1)
    .max(maxContextFiles),
});

const chatQuery = z.object({ chat_id: uuid().optional() });

export const chatContextAgentRoutes = new Hono<AppEnv>()
  .put(
    "/me/context",
    operation({
      summary: "The agent's context snapshot: chats pinned to other content are marked dirty",
      tags: ["Workspace agents"],
      responses: { 200: z.object({ aggregate_hash: z.string(), marked_dirty: z.number().int() }) },
      errors: [400],
      auth: "agent",
    }),
    validate("json", contextPush),
    async (c) => {
      const agent = agentOf(c.get("actor"));
      const body = c.req.valid("json");
      const pushed = await pushWorkspaceAgentContext(c.get("deps").db, {
        agent_id: agent.id,
        resources: body.resources,
        error: body.error ?? null,
      });
      return c.json({ aggregate_hash: pushed.aggregate_hash, marked_dirty: pushed.marked_dirty });
    },
  )

  .post(
    "/me/chat-context",
    operation({
      summary: "Add files to the context of the agent's chat",
      tags: ["Workspace agents"],
      responses: { 200: z.object({ chat_id: z.string(), added: z.number().int() }) },
      errors: [400, 404],
      auth: "agent",
    }),
    validate("json", contextFiles),
    async (c) => {
      const agent = agentOf(c.get("actor"));
      const body = c.req.valid("json");
      const added = await addChatContextFiles(c.get("deps").db, {
        agent_id: agent.id,
        chat_id: body.chat_id ?? null,
        files: body.files,
      });
      return c.json({ chat_id: added.chat_id, added: added.added });
    },
  )

  .delete(
    "/me/chat-context",
    operation({
      summary: "Remove the context files of the agent's chat",
      tags: ["Workspace agents"],
      responses: { 200: z.object({ chat_id: z.string(), removed: z.number().int() }) },
      errors: [400, 404],
      auth: "agent",
    }),
    validate("query", chatQuery),
    async (c) => {
      const agent = agentOf(c.get("actor"));
      const cleared = await clearChatContextFiles(c.get("deps").db, {
        agent_id: agent.id,
        chat_id: c.req.valid("query").chat_id ?? null,
      });
      return c.json({ chat_id: cleared.chat_id, removed: cleared.removed });
    },
  );

/** PUT /chats/{chat}/context (the chat's owner): re-pins the agent's current snapshot. */
export const chatContextRoutes = new Hono<AppEnv>().put(
  "/:chat/context",
  operation({
    summary: "Pin the bound agent's current context to the chat, clearing dirty",
    tags: ["Chats"],
    responses: { 200: Chat },
    errors: [400, 404, 409],
  }),
  validate("param", chatParam),
  async (c) => {
    const actor = userOf(c.get("actor"));
    const { chat } = c.req.valid("param");
    const db = c.get("deps").db;
    await repinChatContextByID(db, { chat_id: chat, owner_id: actor.user.id });
    return c.json(await loadChat(db, actor.user.id, chat));
  },
);
