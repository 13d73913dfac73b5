import { Hono } from "hono";
import { z } from "zod";
import { chatDiffStatusJson } from "../../api/shapes.ts";
import { reportChatGitActivity } from "../../generated/chat_diff_statuses.ts";
import { agentOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { httpUrl, uuid, validate } from "../validation.ts";

/*
 * Pull-request status: the workspace agent reports its git activity
 * (`POST /api/v2/workspaceagents/me/git-activity`, agent token), so the chat shows the branch and
 * its pull request. Rules in sql/functions/chat_diff_statuses.sql; an agent reports only for
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
