/*
 * Workspace tool calls end to end (docs/api.md "Workspace tools"). Prints numbers; never passes or
 * fails.
 *
 *   npm run bench -- tools          200 chats
 *   npm run bench -- tools 1000     1,000 chats
 *
 * On a scratch database: one `pgchatd serve` process (with its runner: 32 turns at once) and one
 * `pgchatd agent` process on a temporary directory, both real processes on loopback. N chats bound
 * to the workspace are created over HTTP from 8 connections, each `/run execute {"command":
 * "true"}` with the local echo model: a turn records the call, the agent runs it, the model
 * answers with its result. Once as a burst (all at once), once paced at 10 chats/s (an idle
 * system's latency). Every chat must end `waiting` with the command's result.
 *
 * Per call, on the database's clock: recorded → started (the stream's delivery and the agent's
 * start), started → answered (running `true` and posting the result), and per chat created →
 * waiting (two model calls, the agent's round trip, the turn's writes).
 */
import { randomUUID } from "node:crypto";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { connectClient } from "../src/db/pool.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { type PgchatdProcess, spawnPgchatd } from "../support/spawn.ts";
import { describeMachine, int, ms, table } from "./measure.ts";
import { percentile } from "./stats.ts";

const creators = 8;
const pacedPerSecond = 10;
const pacedChats = 100;

const sleep = (msec: number) => new Promise((r) => setTimeout(r, msec));

interface Api {
  url: string;
  token: string;
}

async function call<T>(api: Api, method: string, route: string, body?: unknown): Promise<T> {
  const res = await fetch(`${api.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${api.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

async function createChats(api: Api, workspaceId: string, n: number, perSecond?: number) {
  const ids: string[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: creators }, async () => {
      for (let i = next++; i < n; i = next++) {
        if (perSecond) {
          const due = started + (i * 1000) / perSecond;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait);
        }
        const chat = await call<{ id: string }>(api, "POST", "/api/experimental/chats", {
          workspace_id: workspaceId,
          content: [{ type: "text", text: '/run execute {"command":"true"}' }],
        });
        ids.push(chat.id);
      }
    }),
  );
  return ids;
}

interface Timings {
  started: number[];
  answered: number[];
  turn: number[];
  callsPerSecond: number;
}

/** Waits until every chat is waiting, then reads the timings from the database. */
async function timingsOf(dbUrl: string, ids: string[]): Promise<Timings> {
  const db = await connectClient(dbUrl, "bench-tools");
  try {
    for (;;) {
      const { rows } = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM chats WHERE id = ANY($1) AND (status <> 'waiting' OR worker_id IS NOT NULL)",
        [ids],
      );
      if (rows[0]!.n === 0) break;
      await sleep(200);
    }
    const { rows: calls } = await db.query<{
      state: string;
      started_ms: number;
      answered_ms: number;
      exit_code: number | null;
    }>(
      `SELECT state, extract(epoch FROM started_at - created_at) * 1000 AS started_ms,
         extract(epoch FROM closed_at - started_at) * 1000 AS answered_ms,
         (result ->> 'exit_code')::int AS exit_code
       FROM chat_tool_calls WHERE chat_id = ANY($1)`,
      [ids],
    );
    const bad = calls.filter((c) => c.state !== "completed" || c.exit_code !== 0);
    if (calls.length !== ids.length || bad.length > 0) {
      throw new Error(
        `${calls.length} calls for ${ids.length} chats, ${bad.length} not answered 0`,
      );
    }
    const { rows: turns } = await db.query<{ turn_ms: number }>(
      `SELECT extract(epoch FROM max(m.created_at) - c.created_at) * 1000 AS turn_ms
       FROM chats c JOIN chat_messages m ON m.chat_id = c.id WHERE c.id = ANY($1) GROUP BY c.id`,
      [ids],
    );
    const { rows: span } = await db.query<{ s: number }>(
      `SELECT extract(epoch FROM max(closed_at) - min(created_at)) AS s FROM chat_tool_calls
       WHERE chat_id = ANY($1)`,
      [ids],
    );
    return {
      started: calls.map((c) => Number(c.started_ms)),
      answered: calls.map((c) => Number(c.answered_ms)),
      turn: turns.map((t) => Number(t.turn_ms)),
      callsPerSecond: ids.length / Number(span[0]!.s),
    };
  } finally {
    await db.end();
  }
}

function row(what: string, values: number[]): string[] {
  return [what, ms(percentile(values, 50)), ms(percentile(values, 99)), ms(Math.max(...values))];
}

export async function benchTools(chatsArg?: string) {
  const n = chatsArg ? Number(chatsArg) : 200;
  console.log(`\n## Workspace tool calls: ${int(n)} chats, one agent (${describeMachine()})`);
  await withScratchDatabase("pgchatd_bench_tools", async (dbUrl, where) => {
    console.log(`database: ${where}`);
    const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), "pgchatd-bench-tools-"));
    const workspaceDir = await fsp.mkdtemp(path.join(os.tmpdir(), "pgchatd-bench-ws-"));
    const admin = generateToken();
    const procs: PgchatdProcess[] = [];
    try {
      const server = await spawnPgchatd("serve", {
        env: {
          ...process.env,
          DATABASE_URL: dbUrl,
          HOST: "127.0.0.1",
          PORT: "0",
          LOG_LEVEL: "warn",
          PGCHATD_DATA_DIR: dataDir,
          PGCHATD_BOOTSTRAP_TOKEN: admin.token,
        },
        timeoutMs: 60_000,
      });
      procs.push(server);
      const api = { url: server.ready, token: admin.token };
      const me = await call<{ organization_ids: string[] }>(api, "GET", "/api/v2/users/me");
      const ws = await call<{ id: string }>(
        api,
        "POST",
        `/api/v2/organizations/${me.organization_ids[0]}/workspaces`,
        { name: `bench-${randomUUID().slice(0, 8)}` },
      );
      const build = await call<{ agents: { token: string }[] }>(
        api,
        "POST",
        `/api/v2/workspaces/${ws.id}/builds`,
        { agents: [{ name: "main" }] },
      );
      procs.push(
        await spawnPgchatd("agent", {
          args: ["--dir", workspaceDir],
          env: {
            ...process.env,
            PGCHATD_AGENT_URL: api.url,
            PGCHATD_AGENT_TOKEN: build.agents[0]!.token,
            LOG_LEVEL: "warn",
          },
          timeoutMs: 60_000,
        }),
      );

      const burst = await timingsOf(dbUrl, await createChats(api, ws.id, n));
      const paced = await timingsOf(
        dbUrl,
        await createChats(api, ws.id, pacedChats, pacedPerSecond),
      );
      const report = (label: string, t: Timings) =>
        console.log(
          table([
            [label, "p50", "p99", "max"],
            row("recorded → started by the agent", t.started),
            row("started → answered", t.answered),
            row("chat created → waiting", t.turn),
          ]),
        );
      console.log(
        `burst: ${int(n)} chats at once, ${burst.callsPerSecond.toFixed(0)} calls/s ` +
          `(first recorded to last answered)`,
      );
      report("burst", burst);
      console.log(`paced: ${pacedChats} chats at ${pacedPerSecond}/s`);
      report("paced", paced);
    } finally {
      await Promise.allSettled(procs.reverse().map((p) => p.stop()));
      await fsp.rm(dataDir, { recursive: true, force: true });
      await fsp.rm(workspaceDir, { recursive: true, force: true });
    }
  });
}
