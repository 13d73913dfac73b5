import { Hono } from "hono";
import { z } from "zod";
import { ChatDiffStatus, PullRequestInsights } from "../../api/schemas.ts";
import { chatDiffStatusJson } from "../../api/shapes.ts";
import { forgeTokenSealedFor } from "../../forge/refresh.ts";
import {
  deleteChatForgeTokenByUserID,
  getChatForgeTokenByUserID,
  getChatPullRequestCountsByOwner,
  listChatPullRequestsByOwner,
  reportChatGitActivity,
  upsertChatForgeTokenByUserID,
} from "../../generated/chat_diff_statuses.ts";
import { agentOf, userOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { unavailable } from "../errors.ts";
import { operation } from "../openapi.ts";
import { httpUrl, uuid, validate } from "../validation.ts";

/*
 * Pull-request status (docs/api.md "Pull-request status"): the workspace agent reports its git
 * activity (`POST /api/v2/workspaceagents/me/git-activity`, agent token), so the chat shows the
 * branch and its pull request; users read their pull-request insights and may give the refresher
 * their own forge token. Rules in sql/functions/chat_diff_statuses.sql; an agent reports only for
 * chats bound to itself (another's look missing: 404).
 */

/** Git allows longer ref names; no forge shows one this long. */
const maxBranchLength = 255;
/** An https or ssh remote URL. */
const maxRemoteLength = 2048;

/** Text Postgres can store, without control characters (a remote or branch never has them). */
const gitText = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses.
    .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), "must not contain control characters");

const gitActivity = z.strictObject({
  chat_id: uuid().optional(),
  branch: gitText(maxBranchLength),
  remote_origin: gitText(maxRemoteLength),
  url: httpUrl().optional(),
});

export const chatDiffStatusesAgentRoutes = new Hono<AppEnv>().post(
  "/me/git-activity",
  operation({
    summary: "Report the branch (and pull request) the agent's chat works on",
    tags: ["Workspace agents"],
    responses: { 200: ChatDiffStatus },
    errors: [400, 404],
    auth: "agent",
  }),
  validate("json", gitActivity),
  async (c) => {
    const agent = agentOf(c.get("actor"));
    const body = c.req.valid("json");
    const row = await reportChatGitActivity(c.get("deps").db, {
      agent_id: agent.id,
      chat_id: body.chat_id ?? null,
      branch: body.branch,
      remote_origin: body.remote_origin,
      url: body.url ?? null,
    });
    return c.json(chatDiffStatusJson(row));
  },
);

const maxPageSize = 200;
const defaultPageSize = 50;
/** Deeper than any account's pull requests; bounds the OFFSET's work. */
const maxOffset = 1_000_000;
const insightsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(maxPageSize).default(defaultPageSize),
  offset: z.coerce.number().int().min(0).max(maxOffset).default(0),
});

/** GitHub tokens are ~40-100 characters; the bound only stops abuse. */
const forgeTokenBody = z.strictObject({
  token: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces"),
});

export const chatDiffStatusesRoutes = new Hono<AppEnv>()
  .get(
    "/insights/pull-requests",
    operation({
      summary: "The caller's chats with pull requests, and their counts by state",
      tags: ["Pull requests"],
      responses: { 200: PullRequestInsights },
      errors: [400],
    }),
    validate("query", insightsQuery),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const db = c.get("deps").db;
      const query = c.req.valid("query");
      const [counts, rows] = await Promise.all([
        getChatPullRequestCountsByOwner(db, { owner_id: actor.user.id }),
        listChatPullRequestsByOwner(db, {
          owner_id: actor.user.id,
          page_limit: query.limit,
          page_offset: query.offset,
        }),
      ]);
      return c.json({
        counts: {
          total: Number(counts?.total ?? 0),
          open: Number(counts?.open ?? 0),
          merged: Number(counts?.merged ?? 0),
          closed: Number(counts?.closed ?? 0),
          draft: Number(counts?.draft ?? 0),
        },
        chats: rows.map((r) => ({ chat_id: r.chat_id, diff_status: chatDiffStatusJson(r) })),
      });
    },
  )

  // The caller's own token for the forge: the refresher uses it for their chats' references
  // instead of the deployment's. Sealed at rest, never returned.
  .get(
    "/github-token",
    operation({
      summary: "Whether the caller stored a GitHub token (never returned)",
      tags: ["Pull requests"],
      responses: { 200: z.object({ has_token: z.boolean() }) },
    }),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const row = await getChatForgeTokenByUserID(c.get("deps").db, { user_id: actor.user.id });
      return c.json({ has_token: row.has_token ?? false });
    },
  )

  .put(
    "/github-token",
    operation({
      summary: "Store the caller's GitHub token for their chats' pull requests",
      tags: ["Pull requests"],
      responses: { 204: null },
      errors: [400],
    }),
    validate("json", forgeTokenBody),
    async (c) => {
      const actor = userOf(c.get("actor"));
      const deps = c.get("deps");
      if (!deps.secrets) throw unavailable("Secrets are not configured on this server.");
      const sealed = await deps.secrets.encrypt(
        c.req.valid("json").token,
        forgeTokenSealedFor(actor.user.id),
      );
      await upsertChatForgeTokenByUserID(deps.db, {
        user_id: actor.user.id,
        token_ciphertext: sealed,
      });
      return c.body(null, 204);
    },
  )

  .delete(
    "/github-token",
    operation({
      summary: "Delete the caller's GitHub token",
      tags: ["Pull requests"],
      responses: { 204: null },
    }),
    async (c) => {
      const actor = userOf(c.get("actor"));
      await deleteChatForgeTokenByUserID(c.get("deps").db, { user_id: actor.user.id });
      return c.body(null, 204);
    },
  );
