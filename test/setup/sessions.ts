import type { Pool, PoolClient } from "../../src/db/index.ts";

/*
 * Two (or more) real sessions for concurrency tests: one holds a lock inside an open transaction,
 * the other is started and seen waiting for it (pg_stat_activity), then the first commits. The
 * window is opened deterministically by the lock, never by a sleep.
 */

export interface Session {
  client: PoolClient;
  /** The backend's pid, for blocked() and pg_terminate_backend. */
  pid: number;
  release(): void;
}

/** A connection of its own from `pool`, with its backend pid. */
export async function session(pool: Pool): Promise<Session> {
  const client = await pool.connect();
  const pid = (await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
  return { client, pid, release: () => client.release() };
}

/** Resolves once backend `pid` waits for a lock (its statement is blocked by another session). */
export async function blocked(pool: Pool, pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query(
      "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
      [pid],
    );
    if (rows[0]?.wait_event_type === "Lock") return;
    if (Date.now() > deadline) throw new Error(`backend ${pid} never waited for a lock`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Settles `p` into a value or its error (SQLSTATE and message), so a test can start a statement
 * that may fail, let another session commit, and then look at what happened.
 */
export function outcome<T>(
  p: Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; code: string; message: string }> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (err: { code?: string; message: string }) => ({
      ok: false as const,
      code: err.code ?? "",
      message: err.message,
    }),
  );
}

/**
 * The chats among `ids` whose rows some transaction holds locked right now, probed from a
 * session of its own with NOWAIT (a row held FOR SHARE or more refuses it at once).
 */
export async function lockedChats(pool: Pool, ids: string[]): Promise<string[]> {
  const client = await pool.connect();
  const locked: string[] = [];
  try {
    for (const id of ids) {
      await client.query("BEGIN");
      try {
        await client.query("SELECT 1 FROM chats WHERE id = $1 FOR NO KEY UPDATE NOWAIT", [id]);
      } catch (err) {
        if ((err as { code?: string }).code !== "55P03") throw err;
        locked.push(id);
      } finally {
        await client.query("ROLLBACK");
      }
    }
  } finally {
    client.release();
  }
  return locked;
}
