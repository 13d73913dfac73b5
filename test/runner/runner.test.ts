import { beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { chatErrorKinds } from "../../src/models/index.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";
import {
  chatState,
  eventually,
  messagesOf,
  registerRunner,
  settled,
  silenceRunner,
  statusHistory,
  testRunner,
  textOf,
} from "../setup/runner.ts";

/*
 * The runner with the built-in local/echo model, against this file's database: chats created and
 * driven through the HTTP routes (app.request), turns run by real Runner instances, each with its
 * own connections.
 */

let t: Awaited<ReturnType<typeof testApp>>;
let pool: Pool;
let orgId: string;

beforeAll(async () => {
  t = await testApp();
  pool = t.pool;
  orgId = (await gen.organization(pool)).id;
});

const base = "/api/experimental/chats";
const text = (s: string) => [{ type: "text", text: s }];
const lookupTool = {
  name: "lookup",
  description: "Looks something up.",
  input_schema: { type: "object", properties: { q: { type: "string" } } },
};

const member = () => gen.member(pool, { organizationIds: [orgId] });

async function createChat(token: string, body: Record<string, unknown>) {
  const res = await t.call("POST", base, { token, body });
  expect(res.status).toBe(201);
  return res.json as { id: string; status: string };
}

describe("a turn with local/echo", () => {
  it("takes a new chat from pending through running to waiting with the echo reply, usage and a summary", async () => {
    const { runner, published } = await testRunner();
    const u = await member();
    const chat = await createChat(u.token, { content: text("hello runner") });
    expect(chat.status).toBe("pending");
    runner.wake();
    const state = await settled(pool, chat.id, "waiting");
    expect(state.last_error).toBeNull();
    expect(await statusHistory(pool, chat.id)).toEqual(["running", "waiting"]);
    const [user, reply] = await messagesOf(pool, chat.id);
    expect(textOf(user!)).toBe("hello runner");
    expect(reply!.role).toBe("assistant");
    expect(textOf(reply!)).toBe("echo: hello runner");
    // tokens = characters / 4, rounded up: "hello runner" in, "echo: hello runner" out.
    expect(reply!.input_tokens).toBe(Math.ceil("hello runner".length / 4));
    expect(reply!.output_tokens).toBe(Math.ceil("echo: hello runner".length / 4));
    expect(reply!.total_cost_micros).toBeNull();
    expect(reply!.runtime_ms).toBeGreaterThanOrEqual(0);
    expect(reply!.provider_response_id).toMatch(/^local-/);
    // Streamed to subscribers before it was stored: the parts add up to the reply.
    const streamed = published
      .filter((p) => p.chatId === chat.id && p.event === "message_part")
      .map((p) => (p.data as { part: { text: string } }).part.text)
      .join("");
    expect(streamed).toBe("echo: hello runner");
    const summarised = await eventually(
      async () => (await chatState(pool, chat.id)).last_turn_summary ?? undefined,
      "the turn summary",
    );
    expect(summarised).toBe("echo: hello runner");
    // The summary leaves updated_at where the turn's end put it.
    expect((await chatState(pool, chat.id)).updated_at).toBe(state.updated_at);
  });

  it("answers through GET /{chat}/messages with the reply's usage", async () => {
    const { runner } = await testRunner();
    const u = await member();
    const chat = await createChat(u.token, { content: text("usage please") });
    runner.wake();
    await settled(pool, chat.id, "waiting");
    const res = await t.call("GET", `${base}/${chat.id}/messages`, { token: u.token });
    const [reply] = res.json.messages;
    expect(reply.role).toBe("assistant");
    expect(reply.content).toEqual(text("echo: usage please"));
    expect(reply.usage).toMatchObject({ input_tokens: 3, output_tokens: 5, total_tokens: 8 });
  });

  it("calls a client tool: requires_action, then the tool result resumes the turn", async () => {
    const { runner } = await testRunner();
    const u = await member();
    const chat = await createChat(u.token, {
      content: text('/tool lookup {"q": "pgchatd"}'),
      unsafe_dynamic_tools: [lookupTool],
    });
    runner.wake();
    await settled(pool, chat.id, "requires_action");
    const { rows } = await pool.query(
      "SELECT payload FROM chat_events WHERE chat_id = $1 AND kind = 'action_required'",
      [chat.id],
    );
    const [call] = rows[0].payload.tool_calls;
    expect(call).toMatchObject({ tool_name: "lookup", args: { q: "pgchatd" } });

    const res = await t.call("POST", `${base}/${chat.id}/tool-results`, {
      token: u.token,
      body: { results: [{ tool_call_id: call.tool_call_id, output: { answer: 42 } }] },
    });
    expect(res.status).toBe(200);
    runner.wake();
    await settled(pool, chat.id, "waiting");
    const msgs = await messagesOf(pool, chat.id);
    expect(msgs.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant"]);
    expect(textOf(msgs[3]!)).toBe('tool lookup returned {"answer":42}');
  });

  it("answers a call of a tool the chat does not declare itself, and the model goes on", async () => {
    const { runner } = await testRunner();
    const u = await member();
    const chat = await createChat(u.token, { content: text("/tool nosuch {}") });
    runner.wake();
    await settled(pool, chat.id, "waiting");
    const msgs = await messagesOf(pool, chat.id);
    expect(msgs.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant"]);
    expect(msgs[2]!.content[0]).toMatchObject({
      type: "tool-result",
      tool_name: "nosuch",
      is_error: true,
      result: { error: "there is no tool named nosuch" },
    });
    expect(textOf(msgs[3]!)).toBe('tool nosuch returned {"error":"there is no tool named nosuch"}');
  });

  it("retries a rate-limited call with backoff, announcing each retry, then fails with kind rate_limit", async () => {
    const { runner, published } = await testRunner({
      retry: { retries: 2, baseDelayMs: 5, maxDelayMs: 10 },
    });
    const u = await member();
    const chat = await createChat(u.token, { content: text("/fail rate_limit") });
    runner.wake();
    const state = await settled(pool, chat.id, "error");
    expect(state.last_error).toMatchObject({
      kind: "rate_limit",
      provider: "local",
      retryable: true,
      status_code: 429,
    });
    const retries = published.filter((p) => p.chatId === chat.id && p.event === "retry");
    expect(retries.map((r) => (r.data as { attempt: number }).attempt)).toEqual([2, 3]);
    expect(retries[0]!.data).toMatchObject({ max_attempts: 3, error: { kind: "rate_limit" } });
    // The stream's `error` event comes from the logged status change.
    const { rows } = await pool.query(
      "SELECT payload FROM chat_events WHERE chat_id = $1 AND kind = 'status_change' ORDER BY xid DESC, id DESC LIMIT 1",
      [chat.id],
    );
    expect(rows[0].payload).toMatchObject({ status: "error", error: { kind: "rate_limit" } });
  });

  it.each(chatErrorKinds.filter((k) => k !== "rate_limit"))(
    "fails a turn the provider fails with kind %s",
    async (kind) => {
      const { runner, published } = await testRunner({
        retry: { retries: 1, baseDelayMs: 1, maxDelayMs: 2 },
      });
      const u = await member();
      const chat = await createChat(u.token, { content: text(`/fail ${kind}`) });
      runner.wake();
      const state = await settled(pool, chat.id, "error");
      expect(state.last_error!.kind).toBe(kind);
      const retried = published.some((p) => p.chatId === chat.id && p.event === "retry");
      // Only what a provider says is transient is tried again.
      expect(retried).toBe(["overloaded", "timeout"].includes(kind));
    },
  );

  it("stops a turn on interrupt, keeps its partial output, and runs the message sent with it next", async () => {
    const { runner, published } = await testRunner();
    const u = await member();
    const chat = await createChat(u.token, { content: text("/sleep 30000") });
    runner.wake();
    // The first of its slow parts has been streamed: the turn is under way.
    await eventually(
      () => published.some((p) => p.chatId === chat.id && p.event === "message_part") || undefined,
      "the first streamed part",
    );
    const res = await t.call("POST", `${base}/${chat.id}/messages`, {
      token: u.token,
      body: { content: text("instead"), busy_behavior: "interrupt" },
    });
    expect(res.status).toBe(200);
    expect(res.json.queued).toBe(true);
    await eventually(
      async () => ((await messagesOf(pool, chat.id)).length >= 4 ? true : undefined),
      "the next turn",
    );
    await settled(pool, chat.id, "waiting");
    const msgs = await messagesOf(pool, chat.id);
    expect(msgs.map((m) => m.role)).toEqual(["user", "assistant", "user", "assistant"]);
    const partial = textOf(msgs[1]!);
    expect(partial.length).toBeGreaterThan(0);
    expect("echo: /sleep 30000".startsWith(partial)).toBe(true);
    expect(partial).not.toBe("echo: /sleep 30000");
    expect(textOf(msgs[2]!)).toBe("instead");
    expect(textOf(msgs[3]!)).toBe("echo: instead");
    // Interrupted turns leave no summary of their own.
    expect(await statusHistory(pool, chat.id)).toEqual([
      "running",
      "waiting",
      "pending",
      "running",
      "waiting",
    ]);
  });
});

/** Waits until the chat's turn has streamed its first part. */
function firstPart(published: { chatId: string; event: string }[], chatId: string) {
  return eventually(
    () => published.some((p) => p.chatId === chatId && p.event === "message_part") || undefined,
    "the first streamed part",
  );
}

describe("leases", () => {
  it("never runs one chat on two runners: forty chats, two runners, one reply each", async () => {
    const a = await testRunner({ concurrency: 8 });
    const b = await testRunner({ concurrency: 8 });
    const u = await member();
    const chats = [];
    for (let i = 0; i < 40; i++)
      chats.push(await createChat(u.token, { content: text(`/sleep 30 ${i}`) }));
    // The body is not a /sleep command (an extra word): an echo, ready at once.
    a.runner.wake();
    b.runner.wake();
    for (const c of chats) await settled(pool, c.id, "waiting");
    for (const c of chats) {
      const replies = (await messagesOf(pool, c.id)).filter((m) => m.role === "assistant");
      expect(replies).toHaveLength(1);
      // Claimed once: a second claim would log another `running`.
      expect(await statusHistory(pool, c.id)).toEqual(["running", "waiting"]);
    }
    // A turn is counted once its runner has seen its end commit, which another connection can
    // see first.
    await Promise.all([a.runner.idle(), b.runner.idle()]);
    const done = a.runner.stats.turns.completed + b.runner.stats.turns.completed;
    expect(done).toBe(40);
    expect(a.runner.stats.turns.lost + b.runner.stats.turns.lost).toBe(0);
  });

  it("renews the leases of all its running turns with its one row per interval, writing none of their chats", async () => {
    const { runner, published } = await testRunner({ heartbeatMs: 60_000, staleAfterMs: 120_000 });
    const u = await member();
    const chats = [];
    for (let i = 0; i < 5; i++)
      chats.push(await createChat(u.token, { content: text("/sleep 30000") }));
    runner.wake();
    for (const c of chats) await firstPart(published, c.id);
    const heartbeats = () => runner.stats.statementsByQuery.UpsertChatRunnerHeartbeat ?? 0;
    const ids = chats.map((c) => c.id);
    const versions = async () =>
      (
        await pool.query<{ v: string }>(
          "SELECT xmin::text AS v FROM chats WHERE id = ANY($1::uuid[]) ORDER BY id",
          [ids],
        )
      ).rows.map((r) => r.v);
    const chatsBefore = await versions();
    // An old heartbeat, but not stale (staleAfterMs is two minutes).
    await silenceRunner(pool, runner.workerId, "1 minute");
    const before = heartbeats();
    await runner.tick();
    expect(heartbeats() - before).toBe(1);
    const { rows } = await pool.query(
      `SELECT free_slots, heartbeat_at > now() - interval '10 seconds' AS fresh
       FROM chat_runners WHERE id = $1`,
      [runner.workerId],
    );
    expect(rows).toEqual([{ free_slots: 32 - 5, fresh: true }]);
    expect(await versions()).toEqual(chatsBefore);
    for (const c of chats) {
      await t.call("POST", `${base}/${c.id}/interrupt`, { token: u.token });
    }
    for (const c of chats) await settled(pool, c.id, "waiting");
  });

  it("registers again at its next heartbeat when its row was reaped while it was presumed dead", async () => {
    const { runner, logLines } = await testRunner({ heartbeatMs: 60_000, staleAfterMs: 120_000 });
    // The heartbeat its start began (on the LISTEN connection's first connect) is over first.
    await runner.tick();
    await pool.query("DELETE FROM chat_runners WHERE id = $1", [runner.workerId]);
    await runner.tick();
    expect(runner.stats.reregistrations).toBe(1);
    const { rows } = await pool.query("SELECT capacity FROM chat_runners WHERE id = $1", [
      runner.workerId,
    ]);
    expect(rows).toEqual([{ capacity: 32 }]);
    expect(logLines.some((l) => l.includes("presumed dead"))).toBe(true);
    await runner.tick();
    expect(runner.stats.reregistrations).toBe(1);
  });

  it("reports its free slots in its row as it claims, when a turn ends while it was full, and at heartbeats; removes the row when it stops", async () => {
    const { runner, published } = await testRunner({ concurrency: 3, heartbeatMs: 60_000 });
    const u = await member();
    const chats = [];
    for (let i = 0; i < 3; i++)
      chats.push(await createChat(u.token, { content: text("/sleep 30000") }));
    runner.wake();
    for (const c of chats) await firstPart(published, c.id);
    const free = async () =>
      (
        await pool.query<{ free_slots: number }>(
          "SELECT free_slots FROM chat_runners WHERE id = $1",
          [runner.workerId],
        )
      ).rows[0]?.free_slots;
    expect(await free()).toBe(0);
    await runner.tick();
    expect(await free()).toBe(0);
    for (const c of chats) await t.call("POST", `${base}/${c.id}/interrupt`, { token: u.token });
    for (const c of chats) await settled(pool, c.id, "waiting");
    // A full runner's first turn end claims again, and that claim reports the slot it freed;
    // later ends need not (the row shows free slots already), and the heartbeat counts them all.
    await eventually(async () => (((await free()) ?? 0) >= 1 ? true : undefined), "a free slot");
    await runner.idle();
    await runner.tick();
    expect(await free()).toBe(3);
    await runner.stop();
    expect(await free()).toBeUndefined();
    // A heartbeat after the stop (a LISTEN reconnect) does not bring the row back.
    await runner.tick();
    expect(await free()).toBeUndefined();
  });

  it("claims on a wake-up addressed to it or to every runner, not on one addressed to another", async () => {
    // Nothing to claim: each claim is then one statement, and no turn's end claims again.
    await pool.query("UPDATE chats SET status = 'waiting' WHERE status = 'pending'");
    const { runner } = await testRunner({ pollMs: 600_000, heartbeatMs: 60_000 });
    await runner.idle();
    const claims = () => runner.stats.statementsByQuery.ClaimPendingChats ?? 0;
    /**
     * Notifies `payload`, then a wake-up addressed to this runner, which arrives after it on the
     * same connection; waits for `expected` claims, then for any claim still under way.
     */
    const notify = async (payload: string, expected: number) => {
      const before = claims();
      await pool.query("SELECT pg_notify('chat_pending', $1)", [payload]);
      await pool.query("SELECT pg_notify('chat_pending', $1)", [runner.workerId]);
      await eventually(() => (claims() - before >= expected ? true : undefined), "the claims");
      await runner.idle();
      return claims() - before;
    };
    expect(await notify(crypto.randomUUID(), 1)).toBe(1);
    expect(await notify("", 2)).toBe(2);
  });

  it("stops a turn whose lease was taken over, writing nothing", async () => {
    const { runner, published } = await testRunner({ heartbeatMs: 60_000, staleAfterMs: 120_000 });
    const u = await member();
    const chat = await createChat(u.token, { content: text("/sleep 30000") });
    runner.wake();
    await firstPart(published, chat.id);
    // What recovery does when it believes the runner dead, and another runner's claim after it.
    await pool.query("UPDATE chats SET worker_id = $2, started_at = now() WHERE id = $1", [
      chat.id,
      await registerRunner(pool),
    ]);
    await runner.tick();
    await eventually(() => (runner.stats.turns.lost === 1 ? true : undefined), "the turn to stop");
    expect(runner.active).toBe(0);
    expect((await messagesOf(pool, chat.id)).map((m) => m.role)).toEqual(["user"]);
    await pool.query("UPDATE chats SET worker_id = NULL, status = 'waiting' WHERE id = $1", [
      chat.id,
    ]);
  });

  it("discards a turn whose message is edited mid-turn and answers the edited message", async () => {
    const { runner, published } = await testRunner();
    const u = await member();
    const chat = await createChat(u.token, { content: text("/sleep 30000") });
    runner.wake();
    await firstPart(published, chat.id);
    const [first] = await messagesOf(pool, chat.id);
    const res = await t.call("PATCH", `${base}/${chat.id}/messages/${first!.id}`, {
      token: u.token,
      body: { content: text("edited") },
    });
    expect(res.status).toBe(200);
    runner.wake();
    await eventually(
      async () => ((await messagesOf(pool, chat.id)).length === 2 ? true : undefined),
      "the edited message's reply",
    );
    await settled(pool, chat.id, "waiting");
    expect((await messagesOf(pool, chat.id)).map(textOf)).toEqual(["edited", "echo: edited"]);
    // The stopped turn may end after the new one stored its reply.
    await runner.idle();
    // Discarded by its own end, or replaced by the edit's claim first (lost): either way unwritten.
    expect(runner.stats.turns.discarded + runner.stats.turns.lost).toBe(1);
  });

  it("stops the turn of a chat archived mid-turn and never claims it while archived", async () => {
    const { runner, published } = await testRunner();
    const u = await member();
    const chat = await createChat(u.token, { content: text("/sleep 30000") });
    runner.wake();
    await firstPart(published, chat.id);
    const res = await t.call("PATCH", `${base}/${chat.id}`, {
      token: u.token,
      body: { archived: true },
    });
    expect(res.status).toBe(204);
    const state = await settled(pool, chat.id, "waiting");
    expect(state.worker_id).toBeNull();
    expect((await messagesOf(pool, chat.id)).map((m) => m.role)).toEqual(["user"]);
  });

  it("hands its running turns back on shutdown, and another runner answers them", async () => {
    const first = await testRunner();
    const u = await member();
    const chat = await createChat(u.token, { content: text("/sleep 30000") });
    first.runner.wake();
    await firstPart(first.published, chat.id);
    await first.runner.stop();
    expect(first.runner.stats.turns.shutdown).toBe(1);
    const s = await chatState(pool, chat.id);
    expect(s.status).toBe("pending");
    expect(s.worker_id).toBeNull();
    // Finished by another runner; the interrupt ends the slow turn there, keeping its part.
    const second = await testRunner();
    second.runner.wake();
    await firstPart(second.published, chat.id);
    await t.call("POST", `${base}/${chat.id}/interrupt`, { token: u.token });
    await settled(pool, chat.id, "waiting");
    const replies = (await messagesOf(pool, chat.id)).filter((m) => m.role === "assistant");
    expect(replies).toHaveLength(1);
  });

  it("fails a chat whose client never sends its tool results", async () => {
    const { runner } = await testRunner({ toolResultsTimeoutMs: 300 });
    const u = await member();
    const chat = await createChat(u.token, {
      content: text('/tool lookup {"q": "x"}'),
      unsafe_dynamic_tools: [lookupTool],
    });
    runner.wake();
    // The recovery pass fails it 300 ms after requires_action: too short a state to catch by
    // polling on a loaded machine, so the log tells that it was there.
    const state = await settled(pool, chat.id, "error");
    expect(await statusHistory(pool, chat.id)).toEqual(["running", "requires_action", "error"]);
    expect(state.last_error!.kind).toBe("timeout");
    const last = (await messagesOf(pool, chat.id)).at(-1)!;
    expect(last.role).toBe("tool");
    expect(last.content[0]).toMatchObject({ is_error: true, tool_name: "lookup" });
  });

  it("keeps a title the user set before the first turn ended", async () => {
    const { runner } = await testRunner();
    const u = await member();
    const chat = await createChat(u.token, { content: text("a first message") });
    await t.call("PATCH", `${base}/${chat.id}`, { token: u.token, body: { title: "My title" } });
    runner.wake();
    await settled(pool, chat.id, "waiting");
    await runner.idle();
    expect((await chatState(pool, chat.id)).title).toBe("My title");
  });
});
