import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import type { Pool, PoolClient } from "../../src/db/index.ts";
import {
  editChatMessage,
  interruptChat,
  sendChatMessage,
} from "../../src/generated/chat_messages.ts";
import {
  finishChatRun,
  releaseChatRunsByWorkerID,
  saveChatRunToolStep,
  settleChatRunToolCalls,
} from "../../src/generated/chat_runs.ts";
import {
  completeChatToolCallByID,
  startChatToolCallByID,
  startWorkspaceAgentSession,
} from "../../src/generated/chat_tool_calls.ts";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import { messagesOf } from "../setup/runner.ts";
import { blocked, outcome, session } from "../setup/sessions.ts";
import { sqlError } from "../setup/sql.ts";

/*
 * Workspace tool calls where their rules live (sql/functions/chat_tool_calls.sql, the chats
 * triggers, chat_fail_pending_tool_calls), with two real sessions wherever two parties race for
 * one call: the agent's answer, the turn's end, the deadline, a new agent process, an archive.
 */

let pool: Pool;
let orgId: string;

beforeAll(async () => {
  const db = await testDb();
  pool = db.pool;
  orgId = (await gen.organization(pool)).id;
});

interface Setup {
  chatId: string;
  ownerId: string;
  agentId: string;
  modelConfigId: string;
  lease: { worker: string; startedAt: string };
}

/** A chat bound to a workspace's agent, running under a lease (as a runner's claim leaves it). */
async function runningChat(): Promise<Setup> {
  const ownerId = (await gen.user(pool, { organizationIds: [orgId] })).id;
  const ws = await gen.workspace(pool, { organizationId: orgId, ownerId });
  const build = await gen.build(pool, ws.id);
  const chat = await gen.chat(pool, { ownerId, organizationId: orgId, workspace_id: ws.id });
  const worker = randomUUID();
  const { rows } = await pool.query<{ started_at: string }>(
    `UPDATE chats SET status = 'running', worker_id = $2, started_at = now(), heartbeat_at = now()
     WHERE id = $1 RETURNING started_at::text`,
    [chat.id, worker],
  );
  return {
    chatId: chat.id,
    ownerId,
    agentId: build.agents[0]!.id,
    modelConfigId: chat.last_model_config_id,
    lease: { worker, startedAt: rows[0]!.started_at },
  };
}

/**
 * The model's step: an assistant message calling the tools, recorded for the agent (on `db`: a
 * session of the test's own when it needs one).
 */
async function step(
  s: Setup,
  calls: { name: string; timeoutMs?: number }[],
  db: Pool | PoolClient = pool,
) {
  const ids = calls.map(() => `call_${randomUUID().slice(0, 8)}`);
  const saved = await saveChatRunToolStep(db, {
    chat_id: s.chatId,
    worker_id: s.lease.worker,
    started_at: s.lease.startedAt,
    model_config_id: s.modelConfigId,
    messages: [
      {
        role: "assistant",
        content: calls.map((c, i) => ({
          type: "tool-call",
          tool_call_id: ids[i],
          tool_name: c.name,
          args: {},
        })),
      },
    ],
    plan_file: null,
    tool_calls: calls.map((c, i) => ({
      tool_call_id: ids[i],
      tool_name: c.name,
      args: {},
      timeout_ms: c.timeoutMs ?? 60_000,
    })),
  });
  expect(saved.saved).toBe(true);
  const { rows } = await pool.query<{ id: number }>(
    "SELECT id FROM chat_tool_calls WHERE chat_id = $1 AND tool_call_id = ANY($2) ORDER BY id",
    [s.chatId, ids],
  );
  return rows.map((r) => Number(r.id));
}

async function startSession(agentId: string) {
  return (await startWorkspaceAgentSession(pool, { agent_id: agentId })).session_id!;
}

/** The turn's end with no output of its own (on `db`: a session of the test's own). */
const finish = (s: Setup, db: Pool | PoolClient = pool) =>
  finishChatRun(db, {
    chat_id: s.chatId,
    worker_id: s.lease.worker,
    started_at: s.lease.startedAt,
    model_config_id: s.modelConfigId,
    messages: [],
    outcome: "completed",
    error: null,
  });

/** Every tool result of the chat's history, by the call it answers. */
async function resultsOf(chatId: string) {
  return (await messagesOf(pool, chatId))
    .filter((m) => m.role === "tool")
    .flatMap((m) => m.content)
    .map((p) => ({ id: p.tool_call_id, result: p.result, is_error: p.is_error }));
}

async function state(id: number) {
  const { rows } = await pool.query("SELECT state, settled FROM chat_tool_calls WHERE id = $1", [
    id,
  ]);
  return rows[0];
}

describe("starting and answering a call", () => {
  it("starts a call once: a second session is refused, the same session gets it again", async () => {
    const s = await runningChat();
    const [call] = await step(s, [{ name: "execute" }]);
    const first = await startSession(s.agentId);
    const started = await startChatToolCallByID(pool, {
      agent_id: s.agentId,
      session_id: first,
      id: call!,
    });
    expect(started.tool_name).toBe("execute");
    // Its answer was lost on the way: the same process asks again and gets it.
    await startChatToolCallByID(pool, { agent_id: s.agentId, session_id: first, id: call! });
    const err = await sqlError(() =>
      startChatToolCallByID(pool, { agent_id: s.agentId, session_id: randomUUID(), id: call! }),
    );
    expect(err.code).toBe("PC409");
    expect(await state(call!)).toMatchObject({ state: "running" });
  });

  it("a call of another agent does not exist for it", async () => {
    const s = await runningChat();
    const other = await runningChat();
    const [call] = await step(s, [{ name: "read_file" }]);
    const sessionOfOther = await startSession(other.agentId);
    for (const attempt of [
      () =>
        startChatToolCallByID(pool, {
          agent_id: other.agentId,
          session_id: sessionOfOther,
          id: call!,
        }),
      () =>
        completeChatToolCallByID(pool, {
          agent_id: other.agentId,
          session_id: sessionOfOther,
          id: call!,
          result: "forged",
          is_error: false,
        }),
    ]) {
      expect((await sqlError(attempt)).code).toBe("PC404");
    }
    expect(await state(call!)).toMatchObject({ state: "pending" });
  });

  it("stores the answer as a tool message and settles the call; a second answer is refused", async () => {
    const s = await runningChat();
    const [call] = await step(s, [{ name: "execute" }]);
    const sid = await startSession(s.agentId);
    await startChatToolCallByID(pool, { agent_id: s.agentId, session_id: sid, id: call! });
    const answer = (result: unknown) =>
      completeChatToolCallByID(pool, {
        agent_id: s.agentId,
        session_id: sid,
        id: call!,
        result,
        is_error: false,
      });
    await answer({ exit_code: 0 });
    expect((await sqlError(() => answer({ exit_code: 1 }))).code).toBe("PC409");
    expect(await resultsOf(s.chatId)).toEqual([
      { id: expect.any(String), result: { exit_code: 0 }, is_error: false },
    ]);
    expect(await state(call!)).toEqual({ state: "completed", settled: true });
  });
});

describe("races for one call (two sessions)", () => {
  it("the agent's answer and the turn's end at once: exactly one result, whichever commits first", async () => {
    for (const answerFirst of [true, false]) {
      const s = await runningChat();
      const [call] = await step(s, [{ name: "execute" }]);
      const sid = await startSession(s.agentId);
      await startChatToolCallByID(pool, { agent_id: s.agentId, session_id: sid, id: call! });
      await pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [s.chatId]); // interrupted
      const a = await session(pool);
      const b = await session(pool);
      try {
        await a.client.query("BEGIN");
        const answer = () =>
          completeChatToolCallByID(b.client, {
            agent_id: s.agentId,
            session_id: sid,
            id: call!,
            result: "agent",
            is_error: false,
          });
        if (answerFirst) {
          await completeChatToolCallByID(a.client, {
            agent_id: s.agentId,
            session_id: sid,
            id: call!,
            result: "agent",
            is_error: false,
          });
          const ended = outcome(finish(s, b.client));
          await blocked(pool, b.pid);
          await a.client.query("COMMIT");
          expect(await ended).toMatchObject({ ok: true, value: { outcome: "interrupted" } });
          expect((await resultsOf(s.chatId)).map((r) => r.result)).toEqual(["agent"]);
        } else {
          await finish(s, a.client);
          const late = outcome(answer());
          await blocked(pool, b.pid);
          await a.client.query("COMMIT");
          expect(await late).toMatchObject({ ok: false, code: "PC409" });
          expect((await resultsOf(s.chatId)).map((r) => r.result)).toEqual([
            { error: "interrupted" },
          ]);
          expect(await state(call!)).toEqual({ state: "canceled", settled: true });
        }
      } finally {
        a.release();
        b.release();
      }
    }
  });

  it("the deadline and a late answer at once: the timeout wins once committed, the answer is refused", async () => {
    const s = await runningChat();
    const [call] = await step(s, [{ name: "read_file", timeoutMs: 0 }]);
    const sid = await startSession(s.agentId);
    await startChatToolCallByID(pool, { agent_id: s.agentId, session_id: sid, id: call! });
    const a = await session(pool);
    const b = await session(pool);
    try {
      await a.client.query("BEGIN");
      const settled = await settleChatRunToolCalls(a.client, {
        chat_id: s.chatId,
        worker_id: s.lease.worker,
        started_at: s.lease.startedAt,
      });
      expect(settled).toMatchObject({ held: true, open_calls: 0, unanswered_calls: 0 });
      const late = outcome(
        completeChatToolCallByID(b.client, {
          agent_id: s.agentId,
          session_id: sid,
          id: call!,
          result: "too late",
          is_error: false,
        }),
      );
      await blocked(pool, b.pid);
      await a.client.query("COMMIT");
      expect(await late).toMatchObject({ ok: false, code: "PC409" });
    } finally {
      a.release();
      b.release();
    }
    expect(await resultsOf(s.chatId)).toEqual([
      {
        id: expect.any(String),
        result: { error: "timed out: the workspace agent did not answer within 0 seconds" },
        is_error: true,
      },
    ]);
  });

  it("a new agent process starting while the old one starts a call: the call is interrupted, never lost running", async () => {
    const s = await runningChat();
    const [call] = await step(s, [{ name: "execute" }]);
    const old = await startSession(s.agentId);
    const a = await session(pool);
    const b = await session(pool);
    try {
      await a.client.query("BEGIN");
      await startChatToolCallByID(a.client, { agent_id: s.agentId, session_id: old, id: call! });
      const restarted = outcome(
        b.client.query("SELECT * FROM workspace_agent_session_start($1)", [s.agentId]),
      );
      await blocked(pool, b.pid);
      await a.client.query("COMMIT");
      const r = await restarted;
      expect(r).toMatchObject({ ok: true });
      expect((r as { value: { rows: { interrupted: number }[] } }).value.rows[0]!.interrupted).toBe(
        1,
      );
    } finally {
      a.release();
      b.release();
    }
    expect(await state(call!)).toEqual({ state: "interrupted", settled: true });
    expect((await resultsOf(s.chatId))[0]!.result).toEqual({
      error: "interrupted: the workspace agent restarted while this call ran; it was not run again",
    });
    // The old process can start nothing more.
    const [next] = await step(s, [{ name: "read_file" }]);
    const err = await sqlError(() =>
      startChatToolCallByID(pool, { agent_id: s.agentId, session_id: old, id: next! }),
    );
    expect(err.code).toBe("PC409");
  });

  it("a new agent process interrupting calls in two chats while both chats' answers come in: no deadlock", async () => {
    const s1 = await runningChat();
    const agentId = s1.agentId;
    const s2 = await runningChat();
    // The second chat on the same agent.
    await pool.query("UPDATE chats SET agent_id = $2 WHERE id = $1", [s2.chatId, agentId]);
    const [c1] = await step(s1, [{ name: "execute" }]);
    const [c2] = await step({ ...s2, agentId }, [{ name: "execute" }]);
    const sid = await startSession(agentId);
    for (const id of [c1!, c2!]) {
      await startChatToolCallByID(pool, { agent_id: agentId, session_id: sid, id });
    }
    const [first, second] = [s1.chatId, s2.chatId].sort();
    const laterCall = first === s1.chatId ? c2! : c1!;
    const a = await session(pool);
    const b = await session(pool);
    try {
      // The answer in the later chat (by id) holds that chat's row; the restart locks the
      // earlier chat, then waits for the later one.
      await a.client.query("BEGIN");
      await completeChatToolCallByID(a.client, {
        agent_id: agentId,
        session_id: sid,
        id: laterCall,
        result: "done",
        is_error: false,
      });
      const restarted = outcome(
        b.client.query("SELECT * FROM workspace_agent_session_start($1)", [agentId]),
      );
      await blocked(pool, b.pid);
      await a.client.query("COMMIT");
      expect(await restarted).toMatchObject({ ok: true });
    } finally {
      a.release();
      b.release();
    }
    expect(await resultsOf(second!)).toHaveLength(1);
    expect(await resultsOf(first!)).toHaveLength(1);
  });
});

describe("calls whose turn ends", () => {
  it("archiving cancels the open calls and tells the agent; the result is stored when the next turn starts", async () => {
    const s = await runningChat();
    const [call] = await step(s, [{ name: "execute" }]);
    const sid = await startSession(s.agentId);
    await startChatToolCallByID(pool, { agent_id: s.agentId, session_id: sid, id: call! });
    await pool.query("SELECT chat_archive($1, true)", [s.chatId]);
    expect(await state(call!)).toEqual({ state: "canceled", settled: false });
    const { rows: events } = await pool.query(
      "SELECT kind, payload FROM chat_events WHERE chat_id = $1 AND kind::text LIKE 'tool_call%' ORDER BY xid, id",
      [s.chatId],
    );
    expect(events).toEqual([
      { kind: "tool_call", payload: { agent_id: s.agentId, call_id: call } },
      { kind: "tool_call_canceled", payload: { agent_id: s.agentId, call_id: call } },
    ]);
    const late = await sqlError(() =>
      completeChatToolCallByID(pool, {
        agent_id: s.agentId,
        session_id: sid,
        id: call!,
        result: "late",
        is_error: false,
      }),
    );
    expect(late.code).toBe("PC409");
    expect(await resultsOf(s.chatId)).toEqual([]);
    await finish(s); // the runner sees the archive and ends its turn
    await pool.query("SELECT chat_archive($1, false)", [s.chatId]);
    await sendChatMessage(pool, {
      chat_id: s.chatId,
      owner_id: s.ownerId,
      content: [{ type: "text", text: "again" }],
      model_config_id: null,
      busy_behavior: "queue",
      api_key_id: null,
    });
    const roles = (await messagesOf(pool, s.chatId)).map((m) => m.role);
    expect(roles).toEqual(["user", "assistant", "tool", "user"]);
    expect(await state(call!)).toEqual({ state: "canceled", settled: true });
  });

  it("an interrupt of a turn its runner handed back answers its open calls: nobody else would", async () => {
    const s = await runningChat();
    const [running, pending] = await step(s, [{ name: "execute" }, { name: "read_file" }]);
    const sid = await startSession(s.agentId);
    await startChatToolCallByID(pool, { agent_id: s.agentId, session_id: sid, id: running! });
    // The runner shut down: the turn goes back to pending, its calls stay open for the next one.
    await releaseChatRunsByWorkerID(pool, { worker_id: s.lease.worker });
    expect(await state(running!)).toEqual({ state: "running", settled: false });
    await interruptChat(pool, { chat_id: s.chatId, owner_id: s.ownerId });
    for (const id of [running!, pending!]) {
      expect(await state(id)).toEqual({ state: "canceled", settled: true });
    }
    expect((await resultsOf(s.chatId)).map((r) => r.result)).toEqual([
      { error: "interrupted" },
      { error: "interrupted" },
    ]);
  });

  it("a shutdown that finds its turn interrupted answers the turn's open calls, as the turn's end would", async () => {
    const s = await runningChat();
    const [call] = await step(s, [{ name: "execute" }]);
    const a = await session(pool);
    const b = await session(pool);
    try {
      // The interrupt holds the chat (waiting, the lease kept) while the runner shuts down.
      await a.client.query("BEGIN");
      await interruptChat(a.client, { chat_id: s.chatId, owner_id: s.ownerId });
      const released = outcome(releaseChatRunsByWorkerID(b.client, { worker_id: s.lease.worker }));
      await blocked(pool, b.pid);
      await a.client.query("COMMIT");
      expect(await released).toMatchObject({ ok: true, value: { released: 1 } });
    } finally {
      a.release();
      b.release();
    }
    expect(await state(call!)).toEqual({ state: "canceled", settled: true });
    expect((await resultsOf(s.chatId)).map((r) => r.result)).toEqual([{ error: "interrupted" }]);
    const { rows } = await pool.query("SELECT status, worker_id FROM chats WHERE id = $1", [
      s.chatId,
    ]);
    expect(rows[0]).toEqual({ status: "waiting", worker_id: null });
  });

  it("an edit cancels the superseded turn's open calls and settles them", async () => {
    const s = await runningChat();
    const [call] = await step(s, [{ name: "execute" }]);
    const first = (await messagesOf(pool, s.chatId))[0]!;
    await editChatMessage(pool, {
      chat_id: s.chatId,
      owner_id: s.ownerId,
      message_id: first.id,
      content: [{ type: "text", text: "edited" }],
      api_key_id: null,
      model_config_id: null,
    });
    expect(await state(call!)).toEqual({ state: "canceled", settled: true });
  });

  it("writes tool_call events for the agent even with change events off", async () => {
    const s = await runningChat();
    const c = await pool.connect();
    try {
      await c.query("SET pgchatd.events = 'off'");
      await step(s, [{ name: "execute" }], c);
      await c.query("RESET pgchatd.events");
    } finally {
      c.release();
    }
    const { rows } = await pool.query(
      "SELECT kind FROM chat_events WHERE chat_id = $1 AND kind = 'tool_call'",
      [s.chatId],
    );
    expect(rows).toHaveLength(1);
  });
});
