import { Hono } from "hono";
import { z } from "zod";
import { Chat } from "../../api/schemas.ts";
import { withTx } from "../../db/index.ts";
import {
  getChatExistsByIDForOwner,
  insertChat,
  listChatsByOwner,
  listLatestChatIDsByWorkspaceIDs,
} from "../../generated/chats.ts";
import { userOf } from "../auth.ts";
import { patchChat } from "../chat_patch.ts";
import { loadChat, loadChatResolved, withChildren } from "../chat_view.ts";
import { type AppEnv, readDb } from "../deps.ts";
import { badRequest, forbidden } from "../errors.ts";
import { operation } from "../openapi.ts";
import { labelsSchema, parseChatSearch, parseLabelFilters } from "../search.ts";
import { chatParam, messageContent, planMode, uuid, validate } from "../validation.ts";

/** A page holds at most this many root chats (docs/api.md: limit 1..200, default 50). */
const maxPageSize = 200;
const defaultPageSize = 50;
/** Deep offsets cost a scan of everything skipped; keyset (after_id) is the way to go deeper. */
const maxOffset = 100_000;
/** GET /by-workspace answers for at most this many workspaces at once (docs/api.md). */
const maxWorkspaceIds = 25;
/** Dynamic tools per chat (docs/api.md). */
const maxDynamicTools = 250;
/**
 * The total JSON of a chat's dynamic tools: the database refuses more (chats__check_dynamic_tools,
 * chat_dynamic_tools_max_bytes(), measured on the stored form); checked here too so the client
 * learns which field is too large.
 */
const maxDynamicToolsBytes = 256 * 1024;
/** Tool names as model providers accept them (OpenAI and Anthropic: [a-zA-Z0-9_-]{1,64}). */
const toolNamePattern = /^[a-zA-Z0-9_-]{1,64}$/;

const dynamicTool = z.strictObject({
  name: z.string().regex(toolNamePattern, "must be 1-64 letters, digits, '_' or '-'"),
  description: z.string().max(10_000).default(""),
  input_schema: z.record(z.string(), z.unknown()),
});

/** The values OpenAI's reasoning models take; accepted and ignored (docs/api.md "Create"). */
const reasoningEffort = z.enum(["none", "minimal", "low", "medium", "high", "xhigh"]);
/** A chat names at most this many MCP servers: a bound on a stored array, not a policy. */
const maxMcpServers = 64;

const createChatBody = z.strictObject({
  organization_id: uuid().optional(),
  content: messageContent,
  workspace_id: uuid().optional(),
  model_config_id: uuid().optional(),
  system_prompt: z.string().max(10_000).optional(),
  labels: labelsSchema.optional(),
  unsafe_dynamic_tools: z
    .array(dynamicTool)
    .max(maxDynamicTools)
    .refine((tools) => new Set(tools.map((t) => t.name)).size === tools.length, {
      message: "dynamic tool names must be unique",
    })
    .refine((tools) => Buffer.byteLength(JSON.stringify(tools)) <= maxDynamicToolsBytes, {
      message: `dynamic tools may take at most ${maxDynamicToolsBytes} bytes of JSON`,
    })
    .optional(),
  mode: z
    .string()
    .regex(/^[a-z][a-z0-9_-]{0,63}$/, "must be a lower-case identifier of at most 64 characters")
    .nullable()
    .optional(),
  plan_mode: planMode.optional(),
  client_type: z.enum(["ui", "api"]).optional(),
  parent_chat_id: uuid().optional(),
  mcp_server_ids: z
    .array(uuid())
    .max(maxMcpServers)
    .refine((ids) => new Set(ids).size === ids.length, { message: "ids must be unique" })
    .optional(),
  // Sent by the reference system's clients; the model config decides (docs/api.md "Create").
  reasoning_effort: reasoningEffort.optional(),
});

const updateChatBody = z.strictObject({
  title: z.string().max(256).optional(),
  archived: z.boolean().optional(),
  pin_order: z.number().int().min(0).max(1_000_000).optional(),
  labels: labelsSchema.optional(),
  workspace_id: uuid().nullable().optional(),
  plan_mode: planMode.optional(),
});

const listQuery = z.object({
  q: z.string().optional(),
  label: z.union([z.string(), z.array(z.string())]).optional(),
  after_id: uuid().optional(),
  offset: z.coerce.number().int().min(0).max(maxOffset).default(0),
  limit: z.coerce.number().int().min(1).max(maxPageSize).default(defaultPageSize),
});

const byWorkspaceQuery = z.object({
  workspace_ids: z
    .string()
    .default("")
    .transform((s) =>
      s
        .split(",")
        .map((id) => id.trim())
        .filter(Boolean),
    )
    .pipe(z.array(uuid()).max(maxWorkspaceIds)),
});

export const chatsRoutes = new Hono<AppEnv>()
  .get(
    "/",
    operation({
      summary: "The caller's root chats, pinned first, then the most recently updated",
      tags: ["Chats"],
      responses: { 200: z.array(Chat) },
      errors: [400],
    }),
    validate("query", listQuery),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const query = c.req.valid("query");
      const search = parseChatSearch(query.q);
      const labelFilters = parseLabelFilters(
        query.label === undefined ? [] : Array.isArray(query.label) ? query.label : [query.label],
      );
      // List and search read a standby when there is one (src/db/replica.ts).
      const db = await readDb(c.get("deps"));
      const rows = await listChatsByOwner(db, {
        owner_id: actor.user.id,
        archived: search.archived,
        after_id: query.after_id ?? null,
        title: search.title ?? null,
        has_unread: search.hasUnread ?? null,
        labels: Object.keys(labelFilters).length > 0 ? labelFilters : null,
        pr: search.pr ?? null,
        repo: search.repo ?? null,
        pr_title: search.prTitle ?? null,
        pr_status: search.prStatus ?? null,
        diff_url: search.diffUrl ?? null,
        page_limit: query.limit,
        page_offset: query.offset,
      });
      if (rows.length === 0 && query.after_id) {
        const cursor = await getChatExistsByIDForOwner(db, {
          id: query.after_id,
          owner_id: actor.user.id,
        });
        if (!cursor.found) throw badRequest("after_id does not name one of your chats.");
      }
      return c.json(await withChildren(db, rows, search.archived));
    },
  )

  .post(
    "/",
    operation({
      summary: "Create a chat with its first message",
      tags: ["Chats"],
      responses: { 201: Chat },
      errors: [400, 403, 404, 409, 507],
    }),
    validate("json", createChatBody),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const body = c.req.valid("json");
      let organizationId: string | null = body.organization_id ?? null;
      if (organizationId && !actor.user.organization_ids.includes(organizationId)) {
        throw forbidden("You are not a member of this organization.");
      }
      if (!organizationId && !body.parent_chat_id) {
        organizationId = actor.user.organization_ids[0] ?? null;
        if (!organizationId) throw forbidden("You are not a member of any organization.");
      }
      // Created and read in one transaction: the 201 shows the chat as created (pending), not as a
      // runner that claims it the moment it commits has already changed it.
      const chat = await withTx(c.get("deps").db, async (tx) => {
        const created = await insertChat(tx, {
          owner_id: actor.user.id,
          organization_id: organizationId,
          workspace_id: body.workspace_id ?? null,
          model_config_id: body.model_config_id ?? null,
          parent_chat_id: body.parent_chat_id ?? null,
          client_type: body.client_type ?? null,
          mode: body.mode ?? null,
          plan_mode: body.plan_mode ?? null,
          labels: body.labels ?? null,
          dynamic_tools: body.unsafe_dynamic_tools ?? null,
          system_prompt: body.system_prompt ?? null,
          content: body.content,
          api_key_id: actor.apiKeyId,
          mcp_server_ids: body.mcp_server_ids ?? null,
        });
        return loadChat(tx, actor.user.id, created.id!);
      });
      return c.json(chat, 201);
    },
  )

  .get(
    "/by-workspace",
    operation({
      summary: "The latest-updated root chat of each workspace",
      tags: ["Chats"],
      responses: {
        200: z.record(z.string(), z.string()).meta({ description: "workspace id → chat id" }),
      },
      errors: [400],
    }),
    validate("query", byWorkspaceQuery),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const ids = c.req.valid("query").workspace_ids;
      const rows =
        ids.length > 0
          ? await listLatestChatIDsByWorkspaceIDs(c.get("deps").db, {
              workspace_ids: ids,
              owner_id: actor.user.id,
            })
          : [];
      return c.json(Object.fromEntries(rows.map((r) => [r.workspace_id, r.chat_id])));
    },
  )

  .get(
    "/:chat",
    operation({
      summary: "A chat, with its files",
      tags: ["Chats"],
      responses: { 200: Chat },
      errors: [400, 404],
    }),
    validate("param", chatParam),
    async (c) => {
      const actor = userOf(c.get("actor"));
      return c.json(
        await loadChatResolved(c.get("deps"), actor.user.id, c.req.valid("param").chat),
      );
    },
  )

  .patch(
    "/:chat",
    operation({
      summary: "Change a chat: title, archive, pin, labels, workspace, plan mode",
      tags: ["Chats"],
      responses: { 204: null },
      errors: [400, 404, 409],
    }),
    validate("param", chatParam),
    validate("json", updateChatBody),
    async (c) => {
      const actor = userOf(c.get("actor"));
      await patchChat(
        c.get("deps").db,
        actor.user.id,
        c.req.valid("param").chat,
        c.req.valid("json"),
        actor.apiKeyId,
      );
      return c.body(null, 204);
    },
  );
