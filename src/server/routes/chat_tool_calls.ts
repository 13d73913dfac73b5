import { Hono } from "hono";
import { z } from "zod";
import { AgentStreamEvent } from "../../api/schemas.ts";
import {
  completeChatToolCallByID,
  getRunningChatToolCallByID,
  releaseWorkspaceAgentStream,
  startChatToolCallByID,
  startWorkspaceAgentSession,
  touchWorkspaceAgentStream,
} from "../../generated/chat_tool_calls.ts";
import { resolveResume, runAgentStream, splitForPart } from "../../watch/index.ts";
import { agentOf } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { conflict } from "../errors.ts";
import { operation } from "../openapi.ts";
import { lastEventId, sseResponse, watchOf } from "../streaming.ts";
import { rowId, uuid, validate } from "../validation.ts";

/*
 * The workspace agent's side of workspace tool calls (docs/api.md "Workspace tools"), with its
 * agent token: a session per agent process, the stream of calls addressed to the agent, and a
 * call's start, progress and result. The rules are in sql/functions/chat_tool_calls.sql; an agent
 * sees and answers only its own calls (another's look missing: 404).
 */

/** Characters of command output one progress report carries: a few reports per second suffice. */
const maxProgressChars = 16 * 1024;

const sessionBody = z.strictObject({ session_id: uuid() });
const callParam = z.object({ call: rowId("a tool call") });
const watchQuery = z.object({ session_id: uuid(), after: z.string().max(64).optional() });
const progressBody = z.strictObject({
  session_id: uuid(),
  stdout: z.string().max(maxProgressChars).optional(),
  stderr: z.string().max(maxProgressChars).optional(),
});
const resultBody = z.strictObject({
  session_id: uuid(),
  // Any JSON (the body was parsed as JSON): what the model is shown. The request's 1 MiB limit
  // bounds it. Not z.json(), whose recursive schema the client's generated types cannot express.
  result: z
    .unknown()
    .refine((v) => v !== undefined, "Required")
    .meta({ description: "Any JSON value: the command's result, as the model is shown it" }),
  is_error: z.boolean().default(false),
});

export const chatToolCallsAgentRoutes = new Hono<AppEnv>()
  .post(
    "/me/sessions",
    operation({
      summary: "Start an agent session: calls a previous session left running are interrupted",
      tags: ["Workspace agents"],
      responses: { 201: z.object({ session_id: z.string(), interrupted: z.number().int() }) },
      auth: "agent",
    }),
    async (c) => {
      const agent = agentOf(c.get("actor"));
      const session = await startWorkspaceAgentSession(c.get("deps").db, { agent_id: agent.id });
      return c.json({ session_id: session.session_id, interrupted: session.interrupted }, 201);
    },
  )

  .get(
    "/me/tool-calls/watch",
    operation({
      summary: "The workspace tool calls for this agent to run (SSE)",
      tags: ["Workspace agents"],
      responses: {
        200: {
          schema: AgentStreamEvent,
          description:
            'A `tool_call` event for each call to run, `tool_call_canceled` for one to stop (docs/api.md "Workspace tools"). The schema is one event\'s.',
          media: "text/event-stream",
        },
      },
      errors: [400, 409],
      auth: "agent",
    }),
    validate("query", watchQuery),
    async (c) => {
      const { db, logger } = c.get("deps");
      const watch = watchOf(c);
      const agent = agentOf(c.get("actor"));
      const q = c.req.valid("query");
      const streamId = crypto.randomUUID();
      const touch = () =>
        touchWorkspaceAgentStream(db, {
          agent_id: agent.id,
          session_id: q.session_id,
          stream_id: streamId,
        });
      if ((await touch()) === 0) {
        throw conflict(
          "This agent session is not the current one.",
          "Another agent process started with this token, or the session was never started.",
        );
      }
      const resume = await resolveResume(db, lastEventId(c.req.header("last-event-id"), q.after));
      await watch.beforeSubscribe();
      return sseResponse(
        c,
        (stream) =>
          runAgentStream(
            { stream, watch, db, logger },
            { id: agent.id, ownerId: agent.owner_id },
            resume,
            {
              keepAlive: async () => (await touch()) > 0,
              closed: () =>
                releaseWorkspaceAgentStream(db, { agent_id: agent.id, stream_id: streamId }).catch(
                  (err) => logger.warn({ err, agent: agent.id }, "marking an agent offline failed"),
                ),
            },
          ),
        (err) => logger.error({ err, agent: agent.id }, "agent stream failed"),
      );
    },
  )

  .post(
    "/me/tool-calls/:call/start",
    operation({
      summary: "Claim a tool call to run it",
      tags: ["Workspace agents"],
      responses: {
        200: z.object({
          id: z.number().int().nullable(),
          chat_id: z.string().nullable(),
          tool_call_id: z.string().nullable(),
          tool_name: z.string().nullable(),
          args: z.unknown(),
          deadline_at: z.string().nullable(),
        }),
      },
      errors: [400, 404, 409],
      auth: "agent",
    }),
    validate("param", callParam),
    validate("json", sessionBody),
    async (c) => {
      const agent = agentOf(c.get("actor"));
      const call = await startChatToolCallByID(c.get("deps").db, {
        agent_id: agent.id,
        session_id: c.req.valid("json").session_id,
        id: c.req.valid("param").call,
      });
      return c.json(call);
    },
  )

  .post(
    "/me/tool-calls/:call/progress",
    operation({
      summary: "Report a running tool call's output so far",
      tags: ["Workspace agents"],
      responses: { 200: z.object({ running: z.boolean() }) },
      errors: [400, 404, 409],
      auth: "agent",
    }),
    validate("param", callParam),
    validate("json", progressBody),
    async (c) => {
      const { db, watch } = c.get("deps");
      const agent = agentOf(c.get("actor"));
      const body = c.req.valid("json");
      const call = await getRunningChatToolCallByID(db, {
        agent_id: agent.id,
        session_id: body.session_id,
        id: c.req.valid("param").call,
      });
      if (call && watch) {
        for (const stream of ["stdout", "stderr"] as const) {
          for (const text of splitForPart(body[stream] ?? "")) {
            await watch.publishEphemeral(
              call.chat_id!,
              call.owner_id,
              "message_part",
              {
                chat_id: call.chat_id,
                part: { type: "tool-output", tool_call_id: call.tool_call_id, stream, text },
              },
              { callId: call.id! },
            );
          }
        }
      }
      return c.json({ running: true });
    },
  )

  .post(
    "/me/tool-calls/:call/result",
    operation({
      summary: "Answer a tool call",
      tags: ["Workspace agents"],
      responses: {
        200: z.object({ id: z.number().int(), chat_id: z.string(), state: z.string() }),
      },
      errors: [400, 404, 409],
      auth: "agent",
    }),
    validate("param", callParam),
    validate("json", resultBody),
    async (c) => {
      const agent = agentOf(c.get("actor"));
      const body = c.req.valid("json");
      const done = await completeChatToolCallByID(c.get("deps").db, {
        agent_id: agent.id,
        session_id: body.session_id,
        id: c.req.valid("param").call,
        result: body.result,
        is_error: body.is_error,
      });
      return c.json({ id: done.id, chat_id: done.chat_id, state: done.state });
    },
  );
