import type { ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { spawnPgchatd } from "../../support/spawn.ts";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import { type Listener, listen } from "../setup/listen.ts";
import { openSse, type SseClient } from "../setup/sse.ts";

/*
 * Replicas: two real `pgchatd serve` processes on one database. Change events reach a watcher
 * on one process whichever process the write went through, in both NOTIFY modes.
 */

interface Replica {
  child: ChildProcess;
  url: string;
  output: () => string;
}

const children: ChildProcess[] = [];
const dirs: string[] = [];

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => child.once("exit", () => r()));
}

/** SIGTERM, then SIGKILL if it has not exited within a few seconds. */
async function stop(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const killed = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited(child);
  clearTimeout(killed);
}

afterAll(async () => {
  await Promise.all(children.map(stop));
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

async function startReplica(env: Record<string, string>): Promise<Replica> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-replica-"));
  dirs.push(dataDir);
  const p = await spawnPgchatd("serve", {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      LOG_LEVEL: "warn",
      HOST: "127.0.0.1",
      PORT: "0",
      PGCHATD_DATA_DIR: dataDir,
      ...env,
    },
    onSpawn: (child) => children.push(child),
  });
  return { child: p.child, url: p.ready, output: p.output };
}

async function call(replica: Replica, token: string, method: string, p: string, body?: unknown) {
  const res = await fetch(`${replica.url}/api/experimental/chats${p}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** Orders "<xid>.<id>" cursors as the log does. */
function byCursor(a: string, b: string): number {
  const [xa, ia] = a.split(".").map(BigInt) as [bigint, bigint];
  const [xb, ib] = b.split(".").map(BigInt) as [bigint, bigint];
  if (xa !== xb) return xa < xb ? -1 : 1;
  return ia < ib ? -1 : ia > ib ? 1 : 0;
}

describe.each(["trigger", "batched"] as const)("two replicas, PGCHATD_EVENTS_NOTIFY=%s", (mode) => {
  it("delivers to a watcher on one replica the writes made through the other, and to a chat stream on the other the message posted through the first", async () => {
    const db = await testDb();
    const org = await gen.organization(db.pool);
    const user = await gen.user(db.pool, { organizationIds: [org.id] });
    const token = await gen.apiKey(db.pool, user.id);
    const auth = { authorization: `Bearer ${token}` };
    const sse: SseClient[] = [];
    let wakeups: Listener | undefined;
    // No runner: it would answer the chat and write events of its own (status, reply, title,
    // summary) between the test's writes, and hold the chat running when the test posts to it.
    const env = { DATABASE_URL: db.url, PGCHATD_EVENTS_NOTIFY: mode, PGCHATD_RUNNER: "false" };
    const [one, two] = await Promise.all([startReplica(env), startReplica(env)]);
    try {
      // A raw LISTEN on the wake-up channel: what the mode really sends.
      wakeups = await listen(db.url, "chat_events");

      const watch = await openSse(`${one.url}/api/experimental/chats/watch`, auth);
      sse.push(watch);
      expect(watch.status).toBe(200);
      // Its first (id-only) block: the subscriber is registered on replica one.
      await expect.poll(() => watch.lastEventId(), { timeout: 10_000, interval: 20 }).not.toBe("");

      const created = await call(two, token, "POST", "", {
        content: [{ type: "text", text: "made on replica two" }],
      });
      const onCreate = await watch.next((e) => e.event === "created");
      expect(JSON.parse(onCreate.data)).toMatchObject({
        kind: "created",
        chat: { id: created.id },
      });

      await call(two, token, "PATCH", `/${created.id}`, { title: `renamed via two (${mode})` });
      const onRename = await watch.next((e) => e.event === "title_change");
      expect(JSON.parse(onRename.data)).toMatchObject({
        kind: "title_change",
        chat: { id: created.id, title: `renamed via two (${mode})` },
      });

      const stream = await openSse(`${two.url}/api/experimental/chats/${created.id}/stream`, auth);
      sse.push(stream);
      expect(stream.status).toBe(200);
      // The snapshot ends with the queue, the only snapshot frame with an id.
      await stream.next((e) => e.event === "queue_update" && e.id !== "");
      const text = `posted on replica one (${mode})`;
      // The chat is pending since its creation (the replicas run no runner): "interrupt" makes
      // the message land at once. Matched by its id all the same: the stream carries it among
      // the chat's other events.
      const sent = await call(one, token, "POST", `/${created.id}/messages`, {
        content: [{ type: "text", text }],
        busy_behavior: "interrupt",
      });
      expect(sent.queued).toBe(false);
      const onMessage = await stream.next(
        (e) => e.event === "message" && e.id !== "" && JSON.parse(e.data).id === sent.message.id,
      );
      expect(JSON.parse(onMessage.data)).toMatchObject({
        id: sent.message.id,
        role: "user",
        content: [{ type: "text", text }],
      });

      // The watch saw its events in increasing cursor order (no duplicate).
      const ids = watch.events.map((e) => e.id);
      expect([...ids].sort(byCursor)).toEqual(ids);
      expect(new Set(ids).size).toBe(ids.length);
      // The wake-ups were the mode's: per transaction from the triggers, or one per interval.
      const payloads = wakeups.received.map((n) => n.payload);
      expect(payloads.length).toBeGreaterThan(0);
      if (mode === "trigger") for (const p of payloads) expect(p).toMatch(/^\d+$/);
      else for (const p of payloads) expect(p).toBe("batch");
    } finally {
      for (const c of sse) c.close();
      await wakeups?.close();
      await Promise.all([stop(one.child), stop(two.child)]);
    }
    expect(one.child.exitCode, one.output()).toBe(0);
    expect(two.child.exitCode, two.output()).toBe(0);
  });
});
