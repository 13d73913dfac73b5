import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { defaultStateDir } from "../../src/db/embedded.ts";
import { spawnPgchatd } from "../../support/spawn.ts";
import { emptyDatabase } from "../setup/db.ts";

/*
 * The real `pgchatd serve` in a child process: what a newcomer runs with `npm start`.
 */

const children: ChildProcess[] = [];
const dirs: string[] = [];
/** Run before `dirs` are removed: they may need to read a data dir. */
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  for (const cleanup of cleanups) await cleanup();
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  url: string;
  token?: string;
  stdout: () => string;
}

async function startServe(env: Record<string, string>): Promise<Started> {
  const p = await spawnPgchatd("serve", {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      LOG_LEVEL: "warn",
      PORT: "0",
      ...env,
    },
    onSpawn: (child) => children.push(child),
  });
  // The CLI prints the listening line last, after the token lines.
  const token = /Admin API token[^\n]*\n\s+(\S+)/.exec(p.output())?.[1];
  return { child: p.child, url: p.ready, token, stdout: p.output };
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((r) => child.once("exit", (code) => r(code)));
}

function alive(pid: number) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("pgchatd serve", () => {
  it("starts embedded Postgres, prints the URL and admin token, and stops everything on SIGTERM", async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-serve-"));
    await fs.chmod(dataDir, 0o755);
    dirs.push(dataDir);
    const s = await startServe({ PGCHATD_DATA_DIR: dataDir });
    expect(s.token).toMatch(/^[a-z0-9]{10}-/);

    const me = await fetch(`${s.url}/api/v2/users/me`, {
      headers: { authorization: `Bearer ${s.token}` },
    });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ username: "admin", roles: ["owner"] });
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);

    const tokenFile = path.join(dataDir, "admin-token");
    expect((await fs.readFile(tokenFile, "utf8")).trim()).toBe(s.token);
    expect((await fs.stat(tokenFile)).mode & 0o777).toBe(0o600);

    const postmasterPid = Number(
      (await fs.readFile(path.join(dataDir, "pg", "postmaster.pid"), "utf8")).split("\n")[0],
    );
    expect(alive(postmasterPid)).toBe(true);
    s.child.kill("SIGTERM");
    expect(await exitOf(s.child)).toBe(0);
    expect(alive(postmasterPid)).toBe(false);

    // A second start on the same data dir keeps the admin and prints no new token.
    const again = await startServe({ PGCHATD_DATA_DIR: dataDir });
    expect(again.token).toBeUndefined();
    const me2 = await fetch(`${again.url}/api/v2/users/me`, {
      headers: { authorization: `Bearer ${s.token}` },
    });
    expect(me2.status).toBe(200);
    again.child.kill("SIGINT");
    expect(await exitOf(again.child)).toBe(0);
  });

  it("answers a chat created through the API with the local echo model, with nothing else configured", async () => {
    const db = await emptyDatabase();
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-serve-"));
    dirs.push(dataDir);
    const s = await startServe({ DATABASE_URL: db.url, PGCHATD_DATA_DIR: dataDir });
    const auth = { authorization: `Bearer ${s.token}`, "content-type": "application/json" };
    const created = await fetch(`${s.url}/api/experimental/chats`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ content: [{ type: "text", text: "hello, server" }] }),
    });
    expect(created.status).toBe(201);
    const chat = (await created.json()) as { id: string; status: string };
    expect(chat.status).toBe("pending");
    const deadline = Date.now() + 15_000;
    let history: { messages: { role: string; content: unknown }[] } | undefined;
    while (Date.now() < deadline) {
      const got = await fetch(`${s.url}/api/experimental/chats/${chat.id}`, { headers: auth });
      if (((await got.json()) as { status: string }).status === "waiting") {
        const res = await fetch(`${s.url}/api/experimental/chats/${chat.id}/messages`, {
          headers: auth,
        });
        history = (await res.json()) as typeof history;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(history?.messages[0]).toMatchObject({
      role: "assistant",
      content: [{ type: "text", text: "echo: hello, server" }],
    });
    // The runner counts the turn once it has seen its end commit, which the status poll (another
    // connection) can see first.
    let metrics = "";
    const counted = /^pgchatd_runner_turns_total\{outcome="completed"\} [1-9]/m;
    const countedBy = Date.now() + 15_000;
    while (!counted.test(metrics) && Date.now() < countedBy) {
      metrics = await (await fetch(`${s.url}/metrics`)).text();
      if (!counted.test(metrics)) await new Promise((r) => setTimeout(r, 50));
    }
    expect(metrics).toMatch(/^pgchatd_runner_turns_total\{outcome="completed"\} 1$/m);
    expect(metrics).toMatch(/^pgchatd_runner_active_turns 0$/m);
    s.child.kill("SIGTERM");
    expect(await exitOf(s.child)).toBe(0);
  });

  it("brings up two servers started at the same moment on one empty DATABASE_URL", async () => {
    const db = await emptyDatabase();
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-serve-"));
    dirs.push(dataDir);
    const env = { DATABASE_URL: db.url, PGCHATD_DATA_DIR: dataDir };
    const [a, b] = await Promise.all([startServe(env), startServe(env)]);
    for (const s of [a, b]) expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    const tokens = [a.token, b.token].filter(Boolean);
    expect(tokens).toHaveLength(1);
    for (const s of [a, b]) {
      const me = await fetch(`${s.url}/api/v2/users/me`, {
        headers: { authorization: `Bearer ${tokens[0]}` },
      });
      expect(me.status).toBe(200);
    }
    a.child.kill("SIGTERM");
    b.child.kill("SIGTERM");
    expect(await Promise.all([exitOf(a.child), exitOf(b.child)])).toEqual([0, 0]);
  });

  it("uses PGCHATD_BOOTSTRAP_TOKEN as the admin token and refuses a malformed one", async () => {
    const db = await emptyDatabase();
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-serve-"));
    dirs.push(dataDir);
    const bad = spawnPgchatd("serve", {
      env: {
        PATH: process.env.PATH ?? "",
        DATABASE_URL: db.url,
        PGCHATD_BOOTSTRAP_TOKEN: "short",
        PORT: "0",
      },
      onSpawn: (child) => children.push(child),
    });
    await expect(bad).rejects.toThrow(/exited 1:[\s\S]*PGCHATD_BOOTSTRAP_TOKEN/);

    const token = `bootstrapa-${"t".repeat(30)}`;
    const s = await startServe({
      DATABASE_URL: db.url,
      PGCHATD_DATA_DIR: dataDir,
      PGCHATD_BOOTSTRAP_TOKEN: token,
    });
    expect(s.token).toBeUndefined();
    expect(s.stdout()).not.toContain(token);
    const me = await fetch(`${s.url}/api/v2/users/me`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(me.status).toBe(200);
    s.child.kill("SIGTERM");
    expect(await exitOf(s.child)).toBe(0);
  });

  it.skipIf(process.getuid?.() !== 0)(
    "starts as root in a private directory without changing its permissions, and keeps the database across restarts",
    async () => {
      // Like `git clone` into /root (mode 0700), then `npm start`.
      const parent = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-private-"));
      await fs.chmod(parent, 0o700);
      dirs.push(parent);
      const dataDir = path.join(parent, ".data");
      const clusters = path.join(defaultStateDir, "clusters");
      const createdStateDirs = [clusters, defaultStateDir].filter((d) => !existsSync(d));
      cleanups.push(async () => {
        const cluster = await fs.readlink(path.join(dataDir, "pg")).catch(() => null);
        if (cluster) await fs.rm(path.dirname(cluster), { recursive: true, force: true });
        // Only when this test created them and no other cluster has appeared there since.
        for (const d of createdStateDirs) await fs.rmdir(d).catch(() => {});
      });

      const first = await startServe({ PGCHATD_DATA_DIR: dataDir });
      const cluster = await fs.realpath(path.join(dataDir, "pg"));
      expect(path.dirname(path.dirname(cluster))).toBe(clusters);
      // Logged on the start that placed it, for whoever plans backups.
      expect(first.stdout()).toContain(cluster);
      expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
      const postmasterPid = Number(
        (await fs.readFile(path.join(dataDir, "pg", "postmaster.pid"), "utf8")).split("\n")[0],
      );
      first.child.kill("SIGTERM");
      expect(await exitOf(first.child)).toBe(0);
      expect(alive(postmasterPid)).toBe(false);

      const again = await startServe({ PGCHATD_DATA_DIR: dataDir });
      expect(again.token).toBeUndefined();
      expect(again.stdout()).not.toContain(cluster);
      const token = (await fs.readFile(path.join(dataDir, "admin-token"), "utf8")).trim();
      const me = await fetch(`${again.url}/api/v2/users/me`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(me.status).toBe(200);
      again.child.kill("SIGTERM");
      expect(await exitOf(again.child)).toBe(0);

      const st = await fs.stat(parent);
      expect({ uid: st.uid, mode: st.mode & 0o777 }).toEqual({ uid: 0, mode: 0o700 });
    },
  );
});
