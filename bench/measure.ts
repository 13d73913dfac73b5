/*
 * What the benchmarks measure with and print through: sequential latencies and concurrent
 * throughput of a call, HTTP load from autocannon, the app served on a local port, EXPLAIN
 * (ANALYZE) output, and plain-text tables. Shared by bench/list.ts, bench/prompts.ts and
 * bench/watch.ts.
 */
import type { Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { Worker } from "node:worker_threads";
import { serve } from "@hono/node-server";
import type { Queryable } from "../support/plans.ts";
import { percentile } from "./stats.ts";

/** Latencies (ms) of `runs` sequential calls, after `warmup` unmeasured ones (pool, plan cache, JIT). */
export async function latencies(
  fn: () => Promise<unknown>,
  runs: number,
  warmup: number,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

/** Calls per second with `concurrency` loops in flight for `seconds`: what a pool sustains. */
export async function throughput(
  fn: () => Promise<unknown>,
  concurrency: number,
  seconds: number,
): Promise<number> {
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        await fn();
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

/** One autocannon run: latency of the 2xx responses (ms), their rate, and what went wrong. */
export interface HttpRun {
  p50: number;
  p99: number;
  /** Each 2xx response's latency in ms (to merge runs of several load generators). */
  samples: number[];
  rps: number;
  non2xx: number;
  errors: number;
  /** Responses by status code, e.g. { "200": 5123, "429": 3 }. */
  statuses: Record<string, number>;
}

/** What each request sends: GET of the URL by default; `paths` are used in turn, one per request. */
export interface HttpLoad {
  method?: "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
  /** JSON text, sent with Content-Type: application/json. */
  body?: string;
  paths?: string[];
}

// autocannon runs in a worker thread, so the load generator does not share the server's event
// loop; its "response" events give each request's latency in ms (its own histogram has 1 ms
// resolution).
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const autocannon = require(workerData.autocannon);
const paths = workerData.paths;
if (paths) {
  // One counter for all connections of this worker: every request takes the next path.
  let next = 0;
  workerData.opts.requests = [
    { setupRequest: (req) => ({ ...req, path: paths[next++ % paths.length] }) },
  ];
}
const lat = [];
let ok = 0;
const started = process.hrtime.bigint();
const inst = autocannon(workerData.opts, (err, res) => {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  parentPort.postMessage({
    err: err ? String(err) : null,
    lat,
    ok,
    seconds,
    non2xx: res ? res.non2xx : 0,
    errors: res ? res.errors + res.timeouts : 0,
    statuses: res
      ? Object.fromEntries(Object.entries(res.statusCodeStats).map(([k, v]) => [k, v.count]))
      : {},
  });
});
inst.on("response", (_client, status, _bytes, ms) => {
  if (status >= 200 && status < 300) {
    ok++;
    lat.push(ms);
  }
});
`;

/**
 * Sends `load` (GET `url` by default) with a bearer `token` on `connections` connections for
 * `seconds`, from a worker. Several URLs (servers) share the connections in turn, as a load
 * balancer would: connection i goes to url[i % n], and one worker drives them all.
 */
export async function autocannon(
  url: string | string[],
  token: string,
  connections: number,
  seconds: number,
  load: HttpLoad = {},
): Promise<HttpRun> {
  const opts = {
    url,
    connections,
    duration: seconds,
    method: load.method ?? "GET",
    headers: {
      authorization: `Bearer ${token}`,
      ...(load.body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(load.body === undefined ? {} : { body: load.body }),
  };
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: {
      autocannon: createRequire(import.meta.url).resolve("autocannon"),
      opts,
      paths: load.paths,
    },
  });
  const msg = await new Promise<{
    err: string | null;
    lat: number[];
    ok: number;
    seconds: number;
    non2xx: number;
    errors: number;
    statuses: Record<string, number>;
  }>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  await worker.terminate();
  if (msg.err) throw new Error(`autocannon: ${msg.err}`);
  return {
    p50: percentile(msg.lat, 50),
    p99: percentile(msg.lat, 99),
    samples: msg.lat,
    rps: msg.ok / msg.seconds,
    non2xx: msg.non2xx,
    errors: msg.errors,
    statuses: msg.statuses,
  };
}

/**
 * Serves `fetch` (the real app's) on 127.0.0.1 at a free port in this process, so HTTP numbers
 * include the whole stack; `close` also drops autocannon's keep-alive connections.
 */
export async function serveLocal(
  fetch: Parameters<typeof serve>[0]["fetch"],
): Promise<{ port: number; close: () => Promise<void> }> {
  const server = serve({ fetch, hostname: "127.0.0.1", port: 0 }) as Server;
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    const addr = server.address() as AddressInfo | null;
    if (addr) resolve(addr.port);
    else server.once("listening", () => resolve((server.address() as AddressInfo).port));
  });
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return { port, close };
}

/**
 * The server's version and the settings that sway plans, plus any `extra` select-list items, for
 * a report's header: the numbers mean little without them.
 */
export async function serverSettings(
  db: Queryable,
  extra: string[] = [],
): Promise<Record<string, string>> {
  const items = [
    "split_part(current_setting('server_version'), ' ', 1) AS version",
    "current_setting('shared_buffers') AS shared_buffers",
    "current_setting('random_page_cost') AS random_page_cost",
    ...extra,
  ];
  const { rows } = await db.query(`SELECT ${items.join(",\n  ")}`, []);
  return rows[0] as Record<string, string>;
}

/** Cores, CPU model, memory and Node version, for a report's header: timings depend on them. */
export function describeMachine(): string {
  const cpus = os.cpus();
  return (
    `${cpus.length} × ${cpus[0]?.model.trim() ?? "?"}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ` +
    `node ${process.version}`
  );
}

/**
 * Rows as a plain-text table for a terminal or a Markdown code block: columns right-aligned (they
 * hold numbers), except the first and any in `left`.
 */
export function table(rows: string[][], left: number[] = []): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) =>
          i === 0 || left.includes(i) ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!),
        )
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** Milliseconds with two decimals below 10 and one above, so sub-millisecond times keep digits. */
export const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
/** "p50 / p99" in ms, the benchmarks' latency cell. */
export const pair = (a: number, b: number) => `${ms(a)} / ${ms(b)}`;
/** A whole number with thousands separators ("12,345"), for counts and rates. */
export const int = (x: number) => Math.round(x).toLocaleString("en");
/** Whether a number meets its target, next to it. */
export const mark = (ok: boolean) => (ok ? "✓" : "✗");
