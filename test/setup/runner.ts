import { afterAll, onTestFinished } from "vitest";
import { createPool, type Pool } from "../../src/db/pool.ts";
import { upsertChatRunnerHeartbeat } from "../../src/generated/chat_runners.ts";
import type { Secrets } from "../../src/lib/secrets.ts";
import type { Part } from "../../src/models/prompt.ts";
import { createRunner } from "../../src/processes/runner.ts";
import type { Publish, Runner, RunnerOptions } from "../../src/runner/index.ts";
import { captureLogger } from "./app.ts";
import { testDb } from "./db.ts";

/*
 * Runners for tests: on this file's database (or `dbUrl`), each with its own pool (its own
 * connections, as a separate process would have), with timings shrunk so that heartbeats, the
 * recovery pass and retries happen within a test. A lease goes stale only in tests that shrink
 * staleAfterMs themselves.
 */

export interface TestRunner {
  runner: Runner;
  pool: Pool;
  /** Every ephemeral event it published, in order: [chatId, event, data]. */
  published: { chatId: string; event: string; data: unknown }[];
  logLines: string[];
}

const started: { stop(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.allSettled(started.splice(0).map((r) => r.stop()));
});

/**
 * A runner started inside a test stops when that test ends, so the next test's chats are not
 * claimed by it; one started in a beforeAll lives until the file ends.
 */
function stopWhenDone(runner: Runner, pool: Pool | undefined) {
  const stop = async () => {
    await runner.stop();
    await pool?.end();
  };
  try {
    onTestFinished(stop);
  } catch {
    started.push({ stop });
  }
}

export async function testRunner(
  opts: Partial<RunnerOptions> & { dbUrl?: string; secrets?: Secrets } = {},
): Promise<TestRunner> {
  const { dbUrl: givenUrl, secrets, ...options } = opts;
  const dbUrl = givenUrl ?? (await testDb()).url;
  // Its own pool, closed with it: a file starts many runners, and a server allows 100 connections.
  const ownPool = options.pool
    ? undefined
    : createPool({ connectionString: dbUrl, max: 4, applicationName: "pgchatd-test-runner" });
  const pool = options.pool ?? ownPool!;
  const { logger, lines } = captureLogger();
  const published: TestRunner["published"] = [];
  const record: Publish = async (chatId, _ownerId, event, data) => {
    published.push({ chatId, event, data });
  };
  const forward = options.publish;
  const publish: Publish = forward
    ? async (...args) => {
        await record(...args);
        await forward(...args);
      }
    : record;
  const runner = createRunner({
    logger,
    secrets,
    pollMs: 100,
    heartbeatMs: 200,
    // As in production: a loaded machine can delay a heartbeat past a second, and another runner
    // would then take the turn over, which tests of anything else do not expect.
    staleAfterMs: 60_000,
    retry: { retries: 3, baseDelayMs: 5, maxDelayMs: 20 },
    partFlushMs: 10,
    ...options,
    pool,
    databaseUrl: dbUrl,
    publish,
  });
  await runner.start();
  stopWhenDone(runner, ownPool);
  return { runner, pool, published, logLines: lines };
}

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface ChatState {
  status: string;
  worker_id: string | null;
  title: string;
  last_error: { kind: string; message: string; detail: string | null } | null;
  last_turn_summary: string | null;
  updated_at: string;
}

export async function chatState(pool: Pool, chatId: string): Promise<ChatState> {
  const { rows } = await pool.query<ChatState>(
    "SELECT status, worker_id, title, last_error, last_turn_summary, updated_at FROM chats WHERE id = $1",
    [chatId],
  );
  return rows[0]!;
}

/** Waits until the chat has `status` and no runner holds it (its turn ended). */
export async function settled(pool: Pool, chatId: string, status: string, timeoutMs?: number) {
  try {
    return await eventually(
      async () => {
        const s = await chatState(pool, chatId);
        return s.status === status && s.worker_id === null ? s : undefined;
      },
      `chat ${chatId} to be ${status}`,
      timeoutMs,
    );
  } catch (err) {
    // Where it is instead says why (a turn that failed names its error).
    const { rows } = await pool.query(
      "SELECT status, worker_id, last_error FROM chats WHERE id = $1",
      [chatId],
    );
    throw new Error(`${(err as Error).message}; it is ${JSON.stringify(rows[0] ?? null)}`);
  }
}

export interface StoredMessage {
  id: number;
  role: string;
  content: Part[];
  deleted: boolean;
  input_tokens: number | null;
  output_tokens: number | null;
  total_tokens: number | null;
  total_cost_micros: number | null;
  runtime_ms: number | null;
  model_config_id: string | null;
  provider_response_id: string | null;
  context_limit: number | null;
}

export async function messagesOf(pool: Pool, chatId: string, opts: { deleted?: boolean } = {}) {
  const { rows } = await pool.query<StoredMessage>(
    `SELECT id, role, content, deleted, input_tokens, output_tokens, total_tokens,
       total_cost_micros, runtime_ms, model_config_id, provider_response_id, context_limit
     FROM chat_messages WHERE chat_id = $1 AND ($2 OR NOT deleted) ORDER BY id`,
    [chatId, opts.deleted ?? false],
  );
  return rows;
}

/** The text of a message's text parts. */
export const textOf = (m: StoredMessage) =>
  m.content
    .filter((p) => p.type === "text")
    .map((p) => p.text)
    .join("");

/** The chat's logged status changes, oldest first ("pending", "running", ...). */
export async function statusHistory(pool: Pool, chatId: string): Promise<string[]> {
  const { rows } = await pool.query<{ status: string }>(
    `SELECT payload ->> 'status' AS status FROM chat_events
     WHERE chat_id = $1 AND kind = 'status_change' ORDER BY xid, id`,
    [chatId],
  );
  return rows.map((r) => r.status);
}

/**
 * A runner's row in chat_runners, as its start writes it (UpsertChatRunnerHeartbeat): tests that
 * call the claim directly need one, since a runner without a row claims nothing. Returns its id.
 */
export async function registerRunner(
  pool: Pool,
  opts: { id?: string; freeSlots?: number; heartbeatMs?: number } = {},
): Promise<string> {
  const id = opts.id ?? crypto.randomUUID();
  await upsertChatRunnerHeartbeat(pool, {
    id,
    hostname: "test",
    pid: process.pid,
    capacity: Math.max(opts.freeSlots ?? 1000, 1),
    free_slots: opts.freeSlots ?? 1000,
    heartbeat_seconds: (opts.heartbeatMs ?? 15_000) / 1000,
  });
  return id;
}

/** The runner's row as if it had not heartbeated for `age` (a Postgres interval). */
export async function silenceRunner(pool: Pool, id: string, age = "2 minutes") {
  await pool.query("UPDATE chat_runners SET heartbeat_at = now() - $2::interval WHERE id = $1", [
    id,
    age,
  ]);
}
