import type { ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../../src/db/migrate.ts";
import { createPool, type Pool } from "../../src/db/pool.ts";
import { ReadReplica } from "../../src/db/replica.ts";
import { spawnPgchatd } from "../../support/spawn.ts";
import {
  type ReplicatedCluster,
  standbyCaughtUp,
  startReplicatedCluster,
} from "../../support/standby.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger, testApp } from "../setup/app.ts";

/*
 * Reads on a real streaming-replication standby (PGCHATD_READ_DATABASE_URL, src/db/replica.ts):
 * an embedded primary and a hot standby of it, started here (support/standby.ts). A client reads
 * its own writes whichever way its reads go; a standby that lags past the bound, or is down,
 * hands its reads to the primary.
 */

let cluster: ReplicatedCluster;
let primary: Pool;
let reads: ReadReplica;
let t: Awaited<ReturnType<typeof testApp>>;
/**
 * The bound of the replica that must lag: replay is paused, so any bound is passed. The other
 * waits up to 10 s, longer than any replay on a loaded machine, so where its reads go is known.
 */
const maxWaitMs = 150;

beforeAll(async () => {
  cluster = await startReplicatedCluster();
  await cluster.primary.ensureDatabase("pgchatd");
  await migrate(cluster.primary.url("pgchatd"));
  await standbyCaughtUp(cluster);
  primary = createPool({ connectionString: cluster.primary.url("pgchatd"), max: 4 });
  reads = new ReadReplica({
    primary,
    url: cluster.standby.url("pgchatd"),
    poolMax: 4,
    maxWaitMs: 10_000,
    logger: captureLogger().logger,
  });
  t = await testApp({ db: primary, reads });
}, 120_000);

afterAll(async () => {
  await reads?.close();
  await primary?.end();
  await cluster?.stop();
});

/** A member with an API key on the replicated database. */
async function member() {
  const org = await gen.organization(primary);
  return gen.member(primary, { organizationIds: [org.id] });
}

const standbyConn = () => createPool({ connectionString: cluster.standby.url("pgchatd"), max: 1 });

describe("reads on a standby", () => {
  it("serves list, history, prompts and cost from the standby, and a client reads its own writes at once", async () => {
    const u = await member();
    const before = { ...reads.stats };
    for (let i = 0; i < 5; i++) {
      const created = await t.call("POST", "/api/experimental/chats", {
        token: u.token,
        body: { content: [{ type: "text", text: `replicated ${i}` }] },
      });
      expect(created.status).toBe(201);
      const id = created.json.id as string;
      // Straight after the write, through the standby: it waited for the replay.
      const list = await t.call("GET", "/api/experimental/chats", { token: u.token });
      expect(list.status).toBe(200);
      expect(list.json.map((c: { id: string }) => c.id)).toContain(id);
      const history = await t.call("GET", `/api/experimental/chats/${id}/messages`, {
        token: u.token,
      });
      expect(history.json.messages.map((m: { role: string }) => m.role)).toEqual(["user"]);
      const prompts = await t.call("GET", `/api/experimental/chats/${id}/prompts`, {
        token: u.token,
      });
      expect(prompts.json.prompts.map((p: { text: string }) => p.text)).toEqual([
        `replicated ${i}`,
      ]);
      const cost = await t.call("GET", `/api/experimental/chats/${id}/cost`, { token: u.token });
      expect(cost.status).toBe(200);
    }
    expect(reads.stats.standby - before.standby).toBe(20);
    expect(reads.stats.primaryLagging - before.primaryLagging).toBe(0);
  });

  it("sends a read to the primary when the standby has not replayed the writes before it within the bound, and back once it has", async () => {
    const u = await member();
    const impatient = new ReadReplica({
      primary,
      url: cluster.standby.url("pgchatd"),
      poolMax: 2,
      maxWaitMs,
      logger: captureLogger().logger,
    });
    const app = await testApp({ db: primary, reads: impatient });
    const standby = standbyConn();
    try {
      await standby.query("SELECT pg_wal_replay_pause()");
      const created = await t.call("POST", "/api/experimental/chats", {
        token: u.token,
        body: { content: [{ type: "text", text: "while replay is paused" }] },
      });
      const id = created.json.id as string;
      const started = performance.now();
      const list = await app.call("GET", "/api/experimental/chats", { token: u.token });
      expect(performance.now() - started).toBeGreaterThanOrEqual(maxWaitMs - 5);
      expect(list.json.map((c: { id: string }) => c.id)).toContain(id);
      expect(impatient.stats).toEqual({ standby: 0, primaryLagging: 1, primaryUnavailable: 0 });
      // What the standby itself shows meanwhile: not the new chat.
      const stale = await standby.query("SELECT 1 FROM chats WHERE id = $1", [id]);
      expect(stale.rows).toEqual([]);
      await standby.query("SELECT pg_wal_replay_resume()");
      const before = { ...reads.stats };
      const again = await t.call("GET", "/api/experimental/chats", { token: u.token });
      expect(again.json.map((c: { id: string }) => c.id)).toContain(id);
      expect(reads.stats.standby - before.standby).toBe(1);
    } finally {
      await standby.query("SELECT pg_wal_replay_resume()").catch(() => {});
      await standby.end();
      await impatient.close();
    }
  });

  it("sends writes to the primary: a send succeeds, which the standby would refuse", async () => {
    const u = await member();
    const created = await t.call("POST", "/api/experimental/chats", {
      token: u.token,
      body: { content: [{ type: "text", text: "a write" }] },
    });
    const id = created.json.id as string;
    const sent = await t.call("POST", `/api/experimental/chats/${id}/messages`, {
      token: u.token,
      body: { content: [{ type: "text", text: "another" }] },
    });
    expect(sent.status).toBeLessThan(300);
    const standby = standbyConn();
    try {
      await expect(
        standby.query("UPDATE chats SET title = 'x' WHERE id = $1", [id]),
      ).rejects.toMatchObject({
        code: "25006",
      });
    } finally {
      await standby.end();
    }
  });
});

describe("a standby that cannot answer", () => {
  it("hands reads to the primary, which answers them", async () => {
    const u = await member();
    const broken = new ReadReplica({
      primary,
      // Nothing listens there.
      url: "postgres://postgres@127.0.0.1:1/pgchatd",
      maxWaitMs,
      logger: captureLogger().logger,
    });
    const app = await testApp({ db: primary, reads: broken });
    try {
      const created = await app.call("POST", "/api/experimental/chats", {
        token: u.token,
        body: { content: [{ type: "text", text: "standby down" }] },
      });
      const list = await app.call("GET", "/api/experimental/chats", { token: u.token });
      expect(list.status).toBe(200);
      expect(list.json.map((c: { id: string }) => c.id)).toContain(created.json.id);
      // Later reads skip it for a while instead of failing to connect each time.
      await app.call("GET", "/api/experimental/chats", { token: u.token });
      expect(broken.stats).toEqual({ standby: 0, primaryLagging: 0, primaryUnavailable: 2 });
    } finally {
      await broken.close();
    }
  });
});

describe("pgchatd serve with PGCHATD_READ_DATABASE_URL", () => {
  it("reads the chat list from the standby, as its /metrics counts", async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-read-replica-"));
    let child: ChildProcess | undefined;
    try {
      const { token } = await member();
      const p = await spawnPgchatd("serve", {
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "/tmp",
          LOG_LEVEL: "warn",
          PORT: "0",
          PGCHATD_RUNNER: "false",
          PGCHATD_DATA_DIR: dataDir,
          DATABASE_URL: cluster.primary.url("pgchatd"),
          PGCHATD_READ_DATABASE_URL: cluster.standby.url("pgchatd"),
          PGCHATD_READ_MAX_WAIT_MS: "10000",
        },
        onSpawn: (c) => {
          child = c;
        },
      });
      const list = await fetch(`${p.ready}/api/experimental/chats`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(list.status).toBe(200);
      const metrics = await (await fetch(`${p.ready}/metrics`)).text();
      expect(metrics).toMatch(/^pgchatd_read_replica_reads_total\{served_by="standby"\} 1$/m);
    } finally {
      child?.kill("SIGTERM");
      if (child && child.exitCode === null) await new Promise((r) => child!.once("exit", r));
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  });
});
