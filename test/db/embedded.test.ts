import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EmbeddedPostgres } from "../../src/db/embedded.ts";
import { connectClient } from "../../src/db/pool.ts";

const dirs: string[] = [];
async function tempDir() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-embedded-"));
  await fs.chmod(dir, 0o755);
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

function alive(pid: number) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(cond: () => boolean, ms: number) {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return cond();
}

const opts = (dir: string) => ({
  pgDir: path.join(dir, "pg"),
  passwordFile: path.join(dir, "pg-password"),
});

describe("embedded PostgreSQL", () => {
  it("initialises a new cluster, keeps its data across restarts, and leaves no process after stop", async () => {
    const dir = await tempDir();
    const first = await EmbeddedPostgres.start(opts(dir));
    const pid = first.pid!;
    const c1 = await connectClient(first.url());
    const { rows } = await c1.query("SHOW server_version_num");
    expect(Number(rows[0].server_version_num)).toBeGreaterThanOrEqual(180000);
    await c1.query("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)");
    await c1.end();
    await first.stop();
    expect(alive(pid)).toBe(false);
    expect((await fs.stat(path.join(dir, "pg-password"))).mode & 0o777).toBe(0o600);

    const second = await EmbeddedPostgres.start(opts(dir));
    const c2 = await connectClient(second.url());
    expect((await c2.query("SELECT v FROM kept")).rows).toEqual([{ v: 42 }]);
    await c2.end();
    await second.stop();
  });

  it("requires a password: the cluster does not trust local connections", async () => {
    const dir = await tempDir();
    const pg = await EmbeddedPostgres.start(opts(dir));
    try {
      await expect(
        connectClient(`postgres://postgres@127.0.0.1:${pg.port}/postgres`),
      ).rejects.toThrow(/password/);
    } finally {
      await pg.stop();
    }
  });

  it("reports the server's own log when it fails to start", async () => {
    const dir = await tempDir();
    const pg = await EmbeddedPostgres.start(opts(dir));
    await pg.stop();
    await fs.appendFile(path.join(dir, "pg", "postgresql.conf"), "\nshared_buffers = 'lots'\n");
    await expect(EmbeddedPostgres.start(opts(dir))).rejects.toThrow(
      /exited during start[\s\S]*shared_buffers/,
    );
  });

  it("stops a postmaster orphaned by a killed process before starting again", async () => {
    const dir = await tempDir();
    // A separate process starts the cluster and is then killed without a chance to stop it.
    const script = `
      import { EmbeddedPostgres } from ${JSON.stringify(path.resolve("src/db/embedded.ts"))};
      const pg = await EmbeddedPostgres.start(${JSON.stringify(opts(dir))});
      console.log("pid " + pg.pid);
      setInterval(() => {}, 1000);
    `;
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", script],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    const orphanPid = await new Promise<number>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => {
        const m = /pid (\d+)/.exec(d.toString());
        if (m) resolve(Number(m[1]));
      });
      child.once("exit", (code) => reject(new Error(`child exited ${code}`)));
    });
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(alive(orphanPid)).toBe(true);

    const pg = await EmbeddedPostgres.start(opts(dir));
    try {
      expect(await waitUntil(() => !alive(orphanPid), 10_000)).toBe(true);
      expect(pg.pid).not.toBe(orphanPid);
      const c = await connectClient(pg.url());
      await c.end();
    } finally {
      await pg.stop();
    }
  });

  it("shares a cluster another live process runs instead of starting a second one", async () => {
    const dir = await tempDir();
    const owner = await EmbeddedPostgres.start(opts(dir));
    try {
      const guest = await EmbeddedPostgres.start(opts(dir));
      expect(guest.port).toBe(owner.port);
      expect(guest.pid).toBeUndefined();
      await guest.stop(); // a no-op for the guest
      const c = await connectClient(owner.url());
      await c.end();
    } finally {
      await owner.stop();
    }
  });
});
