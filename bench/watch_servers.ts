import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedPostgres } from "../src/db/embedded.ts";
import { connectClient } from "../src/db/pool.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { spawnPgchatd } from "../support/spawn.ts";

/*
 * What both parts of `npm run bench -- watch` share (bench/watch.ts): the scratch database, the
 * server processes, readings of /proc and of /metrics, and the rule for repeating a noisy run.
 */

/**
 * A run during which other processes used more than this (% of one core) is repeated, up to
 * `maxAttempts` times in all, and the quietest attempt is kept: the machine is shared.
 */
export const noisyOutsidePct = 25;
export const maxAttempts = 3;

/** Seconds each run writes before it measures (both parts). */
export const warmupSeconds = 1;

/** CLOCK_MONOTONIC in ms: the same clock in every thread and process of the machine. */
export const now = () => Number(process.hrtime.bigint()) / 1e6;
export const sleep = (msec: number) => new Promise((r) => setTimeout(r, msec));

// ---------------------------------------------------------------------------------------------
// The database and the server processes

export interface BenchDatabase {
  url: string;
  where: string;
  /** The embedded postmaster, whose children's CPU is Postgres' CPU; unknown on DATABASE_URL. */
  postmasterPid: number | undefined;
}

/**
 * A scratch database (see withScratchDatabase), except that the embedded cluster is restarted
 * once with max_connections 400: part 2 holds 10 servers' pools and 100 idle listeners at once.
 */
export async function withBenchDatabase(fn: (db: BenchDatabase) => Promise<void>) {
  if (process.env.DATABASE_URL) {
    return withScratchDatabase("pgchatd_bench_watch", (url, where) =>
      fn({ url, where, postmasterPid: undefined }),
    );
  }
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "pgchatd-bench-watch-"));
  await fsp.chmod(dir, 0o755);
  const opts = { pgDir: path.join(dir, "pg"), passwordFile: path.join(dir, "pw") };
  let cluster = await EmbeddedPostgres.start(opts);
  try {
    const admin = await connectClient(cluster.url(), "bench-watch-setup");
    await admin.query("ALTER SYSTEM SET max_connections = 400");
    // BENCH_PG_STATEMENTS=1: bench/watch_fanout.ts lists each run's costliest statements.
    if (process.env.BENCH_PG_STATEMENTS) {
      await admin.query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'");
      await admin.query("ALTER SYSTEM SET pg_stat_statements.track = 'all'");
      await admin.query("ALTER SYSTEM SET pg_stat_statements.track_planning = on");
    }
    await admin.end();
    await cluster.stop();
    cluster = await EmbeddedPostgres.start(opts);
    const name = `pgchatd_bench_watch_${randomBytes(4).toString("hex")}`;
    await cluster.ensureDatabase(name);
    await fn({
      url: cluster.url(name),
      where: "embedded cluster (default settings but max_connections 400)",
      postmasterPid: cluster.pid,
    });
  } finally {
    await cluster.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

export interface ServerProcess {
  pid: number;
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  /** What the server wrote to stderr (LOG_LEVEL=warn: warnings and errors only). */
  logged: string[];
  stop(): Promise<void>;
}

export const children = new Set<ChildProcess>();
// A bench that throws must not leave servers behind.
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

/**
 * `pgchatd serve` as a child process (bin/pgchatd.js runs the CLI in its own process, so the pid
 * is the server's), on DATABASE_URL `dbUrl`, a free port, logging warnings only.
 */
export async function spawnServer(
  dbUrl: string,
  mode: "trigger" | "batched" | "off",
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), "pgchatd-bench-watch-server-"));
  // pino writes JSON lines to stdout; anything else (a crash) is in the process's output.
  const logged: string[] = [];
  const keep = (line: string) => {
    logged.push(line);
    if (logged.length > 200) logged.splice(0, logged.length - 200);
  };
  const proc = await spawnPgchatd("serve", {
    env: {
      ...process.env,
      DATABASE_URL: dbUrl,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "warn",
      PGCHATD_EVENTS_NOTIFY: mode,
      PGCHATD_DATA_DIR: dataDir,
      ...env,
    },
    // BENCH_SERVER_NODE_ARGS: Node options for the server, e.g. "--cpu-prof --cpu-prof-dir=<dir>"
    // (a CPU profile written when it stops; NODE_OPTIONS refuses --cpu-prof).
    nodeArgs: process.env.BENCH_SERVER_NODE_ARGS?.split(" ").filter(Boolean),
    onLine: (line) => {
      if (line.startsWith("{")) keep(line);
    },
    onSpawn: (child) => children.add(child),
    timeoutMs: 60_000,
  });
  const { child } = proc;
  const url = proc.ready;
  return {
    pid: child.pid!,
    url,
    logged,
    async stop() {
      await proc.stop();
      children.delete(child);
      await fsp.rm(dataDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// /proc readings

export const clockTick = 100; // USER_HZ: /proc reports CPU time in 1/100 s on Linux.

/** CPU time (user + system, ms) a process has used; 0 when it is gone. */
export function cpuMsOf(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / clockTick;
  } catch {
    return 0;
  }
}

/** Resident set size (MiB). */
export function rssMiBOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU time (ms) of a postmaster and each of its children (backends, walwriter, ...), by pid.
 * Backends come and go (pools close idle connections), so a window sums per-pid differences.
 */
export function postgresCpuByPid(postmasterPid: number): Map<number, number> {
  const out = new Map([[postmasterPid, cpuMsOf(postmasterPid)]]);
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === postmasterPid) {
        out.set(Number(entry), ((Number(f[11]) + Number(f[12])) * 1000) / clockTick);
      }
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** The machine's busy and total CPU time so far (ticks, all cores). */
export function machineTicks(): { busy: number; total: number } {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3]! + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/**
 * CPU shares over a window (call `end()` when it closes), in % of one core: the server, Postgres,
 * this process (load generators), other pgchatd servers of the run, and `outside`: whatever else
 * kept the machine busy meanwhile (should be near 0; it is the noise in the numbers).
 */
export function cpuWindow(
  serverPid: number | undefined,
  postmasterPid: number | undefined,
  extraPids: number[] = [],
) {
  const t0 = now();
  const m0 = machineTicks();
  const s0 = serverPid ? cpuMsOf(serverPid) : 0;
  // Per pid: CPU when first seen in the window, and when last seen (sampled, so a backend that
  // exits mid-window still counts up to its last sample).
  const pgFirst = postmasterPid ? postgresCpuByPid(postmasterPid) : new Map<number, number>();
  const pgLast = new Map(pgFirst);
  const samplePostgres = () => {
    if (!postmasterPid) return;
    for (const [pid, cpu] of postgresCpuByPid(postmasterPid)) {
      if (!pgFirst.has(pid)) pgFirst.set(pid, 0);
      pgLast.set(pid, cpu);
    }
  };
  const e0 = extraPids.reduce((a, pid) => a + cpuMsOf(pid), 0);
  const c0 = process.cpuUsage();
  let peakRss = serverPid ? rssMiBOf(serverPid) : Number.NaN;
  const sampler = setInterval(() => {
    if (serverPid) peakRss = Math.max(peakRss, rssMiBOf(serverPid));
    samplePostgres();
  }, 250);
  return {
    end() {
      clearInterval(sampler);
      const wall = now() - t0;
      const m1 = machineTicks();
      const c = process.cpuUsage(c0);
      if (serverPid) peakRss = Math.max(peakRss, rssMiBOf(serverPid));
      const share = (cpuMs: number) => (cpuMs / wall) * 100;
      const server = serverPid ? share(cpuMsOf(serverPid) - s0) : Number.NaN;
      samplePostgres();
      let pgMs = 0;
      const postgresByPid = new Map<number, number>();
      for (const [pid, cpu] of pgLast) {
        pgMs += cpu - pgFirst.get(pid)!;
        postgresByPid.set(pid, cpu - pgFirst.get(pid)!);
      }
      const postgres = postmasterPid ? share(pgMs) : Number.NaN;
      const extras = share(extraPids.reduce((a, pid) => a + cpuMsOf(pid), 0) - e0);
      const bench = share((c.user + c.system) / 1000);
      const machine = ((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * 100;
      const known = [server, postgres, extras, bench].filter((x) => !Number.isNaN(x));
      return {
        server,
        postgres,
        extras,
        bench,
        /** % of all cores. */
        machine,
        outside: postmasterPid
          ? Math.max(0, machine * os.cpus().length - known.reduce((a, b) => a + b, 0))
          : Number.NaN,
        peakRss,
        /** CPU ms of each Postgres process over the window (the postmaster's children by pid). */
        postgresByPid,
        wallMs: wall,
      };
    },
  };
}

/**
 * Waits (up to 2 minutes) for a second in which the machine is under 15% busy, and says how busy
 * it was: other work on these 2 cores would show up as latency and lost throughput here.
 */
export async function quietCheck(label: string, print = true) {
  const deadline = now() + 120_000;
  let busy = 100;
  while (now() < deadline) {
    const a = machineTicks();
    await sleep(1000);
    const b = machineTicks();
    busy = ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * 100;
    if (busy < 15) break;
  }
  if (!print) return;
  const load = os.loadavg().map((x) => x.toFixed(2));
  console.log(
    `machine before ${label}: ${busy.toFixed(0)}% busy over 1 s (load average ${load.join(" ")})` +
      (busy >= 15 ? " — WARNING: something else is running; numbers will be noisy" : ""),
  );
}

/** Runs `run` until an attempt is quiet (see noisyOutsidePct); the quietest attempt wins. */
export async function quietest<T extends { cpu: { outside: number } }>(
  label: string,
  run: () => Promise<T>,
): Promise<T & { attempts: number }> {
  let best: T | undefined;
  let attempts = 0;
  while (attempts < maxAttempts) {
    attempts++;
    const r = await run();
    if (!best || r.cpu.outside < best.cpu.outside) best = r;
    if (!(r.cpu.outside > noisyOutsidePct)) break;
    process.stderr.write(
      `${label}: other processes used ${r.cpu.outside.toFixed(0)}% of a core; repeating\n`,
    );
    await quietCheck(`repeating ${label}`, false);
  }
  return { ...best!, attempts };
}

/** The largest value; NaN for none (a spread would overflow the stack on 100,000 values). */
export function maxOf(xs: number[]): number {
  let m = Number.NaN;
  for (const x of xs) if (!(x <= m)) m = x;
  return m;
}

export const pct = (x: number) => (Number.isNaN(x) ? "n/a" : `${x.toFixed(0)}%`);
export const mib = (x: number) => (Number.isNaN(x) ? "n/a" : `${x.toFixed(0)} MiB`);

/** The server's /metrics as "name{labels}" → value. */
export async function scrapeMetrics(baseUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/**
 * The server's own view of a window, from prom-client's default metrics: the event loop's
 * longest and p99 delay (its histogram restarts at every scrape, so `start` must be a scrape
 * taken when the window opens) and the time spent in garbage collection, major (mark-compact)
 * and all kinds.
 */
export function serverView(start: Map<string, number>, end: Map<string, number>) {
  const gc = (kind: string) =>
    (end.get(`nodejs_gc_duration_seconds_sum{kind="${kind}"}`) ?? 0) -
    (start.get(`nodejs_gc_duration_seconds_sum{kind="${kind}"}`) ?? 0);
  return {
    loopMaxMs: (end.get("nodejs_eventloop_lag_max_seconds") ?? Number.NaN) * 1000,
    loopP99Ms: (end.get("nodejs_eventloop_lag_p99_seconds") ?? Number.NaN) * 1000,
    gcMajorMs: gc("major") * 1000,
    gcAllMs: (gc("major") + gc("minor") + gc("incremental") + gc("weakcb")) * 1000,
  };
}
