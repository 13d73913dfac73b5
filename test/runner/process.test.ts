import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { reportChatGitActivity } from "../../src/generated/chat_diff_statuses.ts";
import { createEphemeralPublisher } from "../../src/watch/index.ts";
import { fakeForge } from "../../support/fake_forge.ts";
import { spawnPgchatd } from "../../support/spawn.ts";
import { gen } from "../fixtures/index.ts";
import { expectMessagesOnceEach, expectStreamMatchesLog } from "../setup/chat_log.ts";
import { testDb } from "../setup/db.ts";
import { listen } from "../setup/listen.ts";
import {
  chatState,
  messagesOf,
  settled,
  statusHistory,
  testRunner,
  textOf,
} from "../setup/runner.ts";
import { testServer } from "../setup/server.ts";
import { openSse, type SseEvent } from "../setup/sse.ts";

interface StreamedPart {
  turn_id: string;
  seq: number;
  part: { type: string; text: string };
}
const partOf = (e: SseEvent) => JSON.parse(e.data) as StreamedPart;

/*
 * `pgchatd runner` as separate processes on one database: what runs when turns are scaled apart
 * from the HTTP servers. Killed with SIGKILL mid-turn, stopped with SIGTERM, two at once.
 */

let pool: Pool;
let dbUrl: string;
let orgId: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  const db = await testDb();
  pool = db.pool;
  dbUrl = db.url;
  orgId = (await gen.organization(pool)).id;
});

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

interface RunnerProcess {
  child: ChildProcess;
  workerId: string;
  exited: Promise<number | null>;
}

/**
 * A `pgchatd runner` process, killed when the test ends if it still runs: left running after a
 * failure, it would claim the next test's chats.
 */
async function startRunnerProcess(env: Record<string, string> = {}): Promise<RunnerProcess> {
  let started: ChildProcess | undefined;
  onTestFinished(async () => {
    if (!started || started.exitCode !== null || started.signalCode !== null) return;
    started.kill("SIGKILL");
    await new Promise((r) => started!.once("exit", r));
  });
  const p = await spawnPgchatd("runner", {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      DATABASE_URL: dbUrl,
      LOG_LEVEL: "warn",
      PGCHATD_RUNNER_HEARTBEAT_MS: "200",
      // The default staleness (60 s): on a loaded machine a process can miss a second of
      // heartbeats, and the other one would take its turns over again and again. The one test of
      // a stale lease recovers it with a runner of its own.
      ...env,
    },
    onSpawn: (child) => {
      started = child;
      children.push(child);
    },
  });
  return { child: p.child, workerId: p.ready, exited: p.exited };
}

async function owner() {
  return (await gen.user(pool, { organizationIds: [orgId] })).id;
}

describe("pgchatd runner processes", () => {
  it("answers a chat whose runner was killed mid-turn, once that runner's heartbeat went stale, losing nothing and storing nothing twice", async () => {
    const srv = await testServer();
    onTestFinished(() => srv.close());
    const o = await owner();
    const token = await gen.apiKey(pool, o);
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId, text: "/sleep 2000" });
    // Open before any runner runs: it receives every part of both runs, and the log's events.
    const stream = await openSse(`${srv.url}/api/experimental/chats/${chat.id}/stream`, {
      authorization: `Bearer ${token}`,
    });
    onTestFinished(() => stream.close());
    const snapshotEnd = await stream.next((e) => e.event === "queue_update");
    const doomed = await startRunnerProcess();
    // Killed as soon as its first part reached the stream, well before its turn (2 s) can end: it
    // still holds the chat.
    await stream.next((e) => e.event === "message_part", 15_000);
    doomed.child.kill("SIGKILL");
    await doomed.exited;
    expect((await chatState(pool, chat.id)).worker_id).toBe(doomed.workerId);
    const lostParts = stream.events.filter((e) => e.event === "message_part").map(partOf);

    const { runner } = await testRunner({
      heartbeatMs: 200,
      staleAfterMs: 1_000,
      publish: createEphemeralPublisher(pool),
    });
    runner.wake();
    await settled(pool, chat.id, "waiting");
    // The stream delivered exactly the log (nothing lost, nothing twice), each message once.
    await expectStreamMatchesLog(pool, chat.id, stream, snapshotEnd);
    await expectMessagesOnceEach(pool, chat.id, stream);
    // Nothing of the killed run was stored, not even as a deleted message.
    const msgs = await messagesOf(pool, chat.id, { deleted: true });
    expect(msgs.map((m) => [m.role, textOf(m), m.deleted])).toEqual([
      ["user", "/sleep 2000", false],
      ["assistant", "echo: /sleep 2000", false],
    ]);
    // Recovery handed the chat back (pending), the other runner ran it again.
    expect(await statusHistory(pool, chat.id)).toEqual([
      "running",
      "pending",
      "running",
      "waiting",
    ]);
    // The killed run's parts came under one turn_id, the new run's under another, which replaces
    // them; the new run's parts are the stored answer.
    const parts = stream.events.filter((e) => e.event === "message_part").map(partOf);
    const lostTurn = lostParts[0]!.turn_id;
    expect(new Set(lostParts.map((p) => p.turn_id))).toEqual(new Set([lostTurn]));
    const newParts = parts.filter((p) => p.turn_id !== lostTurn);
    expect(new Set(newParts.map((p) => p.turn_id)).size).toBe(1);
    expect(newParts.map((p) => p.part.text).join("")).toBe("echo: /sleep 2000");
    // Each part once, in increasing seq.
    const seqs = parts.map((p) => p.seq);
    expect(seqs).toEqual([...new Set(seqs)].sort((x, y) => x - y));
    // No in-flight output of the killed run is left for a stream that opens later.
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM chat_stream_parts WHERE chat_id = $1 AND NOT saved",
      [chat.id],
    );
    expect(rows).toEqual([{ n: 0 }]);
    // Counted once the runner has seen its turn's end commit, which the test's connection can
    // see first.
    await runner.idle();
    expect(runner.stats.turns.completed).toBe(1);
  });

  it("never runs one chat in two runner processes: thirty chats, one reply each", async () => {
    const a = await startRunnerProcess();
    const b = await startRunnerProcess();
    const o = await owner();
    const chats = [];
    for (let i = 0; i < 30; i++) {
      chats.push(await gen.chat(pool, { ownerId: o, organizationId: orgId, text: `two ${i}` }));
    }
    for (const c of chats) await settled(pool, c.id, "waiting");
    for (const c of chats) {
      const replies = (await messagesOf(pool, c.id)).filter((m) => m.role === "assistant");
      expect(replies.map(textOf)).toEqual([`echo: ${textOf((await messagesOf(pool, c.id))[0]!)}`]);
    }
    a.child.kill("SIGTERM");
    b.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);
  });

  it("five runner processes answer sixty chats exactly once, each chat waking one runner", async () => {
    // A runner is chosen only while it heartbeats within three of its intervals: with the file's
    // 200 ms, a loaded machine can leave all five unchosen for a moment (the chat then waits for
    // a poll, which is not what this test counts). 5 s keeps them choosable throughout.
    const procs = await Promise.all(
      Array.from({ length: 5 }, () => startRunnerProcess({ PGCHATD_RUNNER_HEARTBEAT_MS: "5000" })),
    );
    const wakes = await listen(dbUrl, "chat_pending");
    try {
      const o = await owner();
      const chats = [];
      for (let i = 0; i < 60; i++) {
        chats.push(await gen.chat(pool, { ownerId: o, organizationId: orgId, text: `five ${i}` }));
      }
      for (const c of chats) await settled(pool, c.id, "waiting");
      for (const c of chats) {
        const msgs = await messagesOf(pool, c.id);
        expect(msgs.filter((m) => m.role === "assistant").map(textOf)).toEqual([
          `echo: ${textOf(msgs[0]!)}`,
        ]);
        expect(await statusHistory(pool, c.id)).toEqual(["running", "waiting"]);
      }
      // One NOTIFY per created chat (each its own transaction), addressed to one runner; not the
      // broadcast ("") that every runner claims on.
      await pool.query("SELECT pg_notify('chat_pending', 'marker')");
      await wakes.next((n) => n.payload === "marker");
      const addressed = wakes.received.map((n) => n.payload).filter((p) => p !== "marker");
      expect(addressed).toHaveLength(chats.length);
      expect(addressed.every((p) => /^[0-9a-f-]{36}$/.test(p))).toBe(true);
      const ids = new Set(procs.map((p) => p.workerId));
      // The work spread over the processes rather than going to one.
      expect(addressed.filter((p) => ids.has(p)).length).toBeGreaterThan(chats.length / 2);
      expect(new Set(addressed.filter((p) => ids.has(p))).size).toBeGreaterThan(1);
    } finally {
      await wakes.close();
    }
    for (const p of procs) p.child.kill("SIGTERM");
    for (const p of procs) expect(await p.exited).toBe(0);
  });

  it("claims a chat whose chosen runner died right after its wake-up within the other runner's poll interval", async () => {
    const pollMs = 500;
    // A heartbeat of 10 s keeps the doomed runner choosable for 30 s after its last one, however
    // slowly the chats below are created on a loaded machine.
    const doomed = await startRunnerProcess({ PGCHATD_RUNNER_HEARTBEAT_MS: "10000" });
    const survivor = await startRunnerProcess({ PGCHATD_RUNNER_POLL_MS: String(pollMs) });
    // Frozen, it cannot claim what it is woken for; killed below, it never will.
    doomed.child.kill("SIGSTOP");
    const wakes = await listen(dbUrl, "chat_pending");
    let chosen: { id: string } | undefined;
    try {
      const o = await owner();
      // Each chat wakes one of the two at random: create until one wakes the frozen one.
      for (let i = 0; i < 40 && !chosen; i++) {
        const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId, text: `pick ${i}` });
        const marker = `marker ${i}`;
        await pool.query("SELECT pg_notify('chat_pending', $1)", [marker]);
        await wakes.next((n) => n.payload === marker);
        const payloads = wakes.received.splice(0).map((n) => n.payload);
        if (payloads.includes(doomed.workerId)) chosen = chat;
      }
    } finally {
      await wakes.close();
    }
    doomed.child.kill("SIGKILL");
    await doomed.exited;
    expect(chosen).toBeDefined();
    await settled(pool, chosen!.id, "waiting");
    const started = await pool.query<{ waited_ms: number }>(
      "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 AS waited_ms FROM chats WHERE id = $1",
      [chosen!.id],
    );
    // The survivor's poll took it: within one poll interval, plus scheduling slack on a loaded
    // machine; without the poll it would wait for the survivor's next wake-up, or forever.
    expect(started.rows[0]!.waited_ms).toBeLessThan(pollMs + 2_000);
    survivor.child.kill("SIGTERM");
    expect(await survivor.exited).toBe(0);
  });

  it("hands its running turn back to pending when stopped with SIGTERM", async () => {
    const p = await startRunnerProcess();
    const o = await owner();
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId, text: "/sleep 30000" });
    const running = await settledRunning(chat.id, p.workerId);
    expect(running).toBe(true);
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    const s = await chatState(pool, chat.id);
    expect(s.status).toBe("pending");
    expect(s.worker_id).toBeNull();
    await pool.query("UPDATE chats SET status = 'waiting' WHERE id = $1", [chat.id]);
  });

  it("streams a runner process's parts to a chat stream on a server process, then the stored message", async () => {
    const srv = await testServer();
    let p: RunnerProcess | undefined;
    try {
      const u = await gen.user(srv.pool, { organizationIds: [orgId] });
      const token = await gen.apiKey(srv.pool, u.id);
      const chat = await gen.chat(srv.pool, {
        ownerId: u.id,
        organizationId: orgId,
        text: "/sleep 300",
      });
      const stream = await openSse(`${srv.url}/api/experimental/chats/${chat.id}/stream`, {
        authorization: `Bearer ${token}`,
      });
      try {
        await stream.next((e) => e.event === "queue_update");
        // The runner starts after the stream is open: every part of the turn reaches it.
        p = await startRunnerProcess();
        const reply = await stream.next(
          (e) => e.event === "message" && JSON.parse(e.data).role === "assistant",
          15_000,
        );
        const streamed = stream.events
          .filter((e) => e.event === "message_part")
          .map((e) => JSON.parse(e.data).part.text)
          .join("");
        expect(JSON.parse(reply.data).content).toEqual([
          { type: "text", text: "echo: /sleep 300" },
        ]);
        expect(streamed).toBe("echo: /sleep 300");
      } finally {
        stream.close();
      }
    } finally {
      p?.child.kill("SIGTERM");
      await p?.exited;
      await srv.close();
    }
  });

  it("refreshes pull-request statuses: a branch pushed to the forge shows its pull request", async () => {
    const forge = await fakeForge();
    onTestFinished(() => forge.close());
    const o = await owner();
    const ws = await gen.workspace(pool, { organizationId: orgId, ownerId: o });
    const agent = (await gen.build(pool, ws.id)).agents[0]!;
    const chat = await gen.chat(pool, { ownerId: o, organizationId: orgId, workspace_id: ws.id });
    forge.pulls.push({ owner: "acme", repo: "api", branch: "feat/x", number: 31, title: "X" });
    await startRunnerProcess({
      PGCHATD_GITHUB_API_URL: forge.url,
      PGCHATD_GITHUB_HOST: "github.com",
      PGCHATD_GITHUB_TOKEN: "deploy-token",
    });
    await reportChatGitActivity(pool, {
      agent_id: agent.id,
      chat_id: chat.id,
      branch: "feat/x",
      remote_origin: "git@github.com:acme/api.git",
      url: null,
    });
    // The process's refresher polls every 5 s; the test's timeout bounds the wait.
    for (;;) {
      const { rows } = await pool.query(
        "SELECT pr_number, pull_request_title FROM chat_diff_statuses WHERE chat_id = $1",
        [chat.id],
      );
      if (rows[0].pr_number === 31) {
        expect(rows[0].pull_request_title).toBe("X");
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(forge.requests[0]!.authorization).toBe("Bearer deploy-token");
  });
});

/** Polls until `workerId` holds the chat and it is running. */
async function settledRunning(chatId: string, workerId: string): Promise<boolean> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const s = await chatState(pool, chatId);
    if (s.status === "running" && s.worker_id === workerId) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
