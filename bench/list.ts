/*
 * The chat list (GET /api/experimental/chats) on a seeded data set: the SQL alone and the whole
 * HTTP request, for a typical owner and a heavy one, on the first page and a deep after_id page.
 * Prints numbers next to their targets; never passes or fails.
 *
 *   npm run bench -- list                 100,000 chats over 1,000 owners (+ one with 10,000)
 *   npm run bench -- list 20000 500       20,000 chats over 500 owners
 *
 * SQL: the generated listChatsByOwner (and listChildChatsByRootIDs, which the route runs next for
 * the page's children) with the route's arguments, on a pg pool from this process: p50/p99 over
 * 2,000 sequential runs, and runs/s with 8 in flight for 5 s. "+auth" adds the request's
 * authentication query (GetAPIKeyForAuthByID), i.e. all the SQL one request runs.
 * HTTP: the real app (createApp) served on 127.0.0.1 in this process, loaded by autocannon in a
 * worker thread (so the load generator does not share the server's event loop) for 5 s per run.
 * Latencies are taken from every response (autocannon's own histogram has 1 ms resolution).
 *
 * Experiments: BENCH_LIST_SETUP is SQL run on the scratch database after seeding (an extra index,
 * or a setting for every later connection), e.g.
 *   BENCH_LIST_SETUP="DO \$\$ BEGIN EXECUTE format('ALTER DATABASE %I SET random_page_cost = 1.1',
 *     current_database()); END \$\$" npm run bench -- list
 */
import type { Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { Worker } from "node:worker_threads";
import { serve } from "@hono/node-server";
import { pino } from "pino";
import { migrate } from "../src/db/migrate.ts";
import { connectClient, createPool } from "../src/db/pool.ts";
import { getAPIKeyForAuthByID, insertAPIKey } from "../src/generated/api_keys.ts";
import { listChatsByOwner, listChildChatsByRootIDs } from "../src/generated/chats.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { createApp } from "../src/server/app.ts";
import {
  capturedQuery,
  cursorAt,
  describeSeed,
  listChatsArgs,
  seedChats,
  withScratchDatabase,
} from "./seed-chats.ts";

const sqlRuns = 2_000;
const warmupRuns = 200;
const durationS = 5;
const targets = { sqlMs: 0.5, httpOverSqlP50: 2, httpOverSqlThroughput: 0.4 };

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** Latencies (ms) of `runs` sequential calls. */
async function latencies(fn: () => Promise<unknown>, runs: number): Promise<number[]> {
  for (let i = 0; i < warmupRuns; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

/** Calls per second with `concurrency` loops in flight for `seconds`. */
async function throughput(
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

interface HttpRun {
  p50: number;
  p99: number;
  rps: number;
  non2xx: number;
  errors: number;
}

// autocannon runs in a worker thread; its "response" events give each request's latency in ms.
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const autocannon = require(workerData.autocannon);
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
  });
});
inst.on("response", (_client, status, _bytes, ms) => {
  if (status >= 200 && status < 300) {
    ok++;
    lat.push(ms);
  }
});
`;

async function autocannon(
  url: string,
  token: string,
  connections: number,
  seconds: number,
): Promise<HttpRun> {
  const opts = {
    url,
    connections,
    duration: seconds,
    headers: { authorization: `Bearer ${token}` },
  };
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: { autocannon: createRequire(import.meta.url).resolve("autocannon"), opts },
  });
  const msg = await new Promise<{
    err: string | null;
    lat: number[];
    ok: number;
    seconds: number;
    non2xx: number;
    errors: number;
  }>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  await worker.terminate();
  if (msg.err) throw new Error(`autocannon: ${msg.err}`);
  return {
    p50: percentile(msg.lat, 50),
    p99: percentile(msg.lat, 99),
    rps: msg.ok / msg.seconds,
    non2xx: msg.non2xx,
    errors: msg.errors,
  };
}

interface PlanCheck {
  /** Seq Scan / Sort nodes, as "Seq Scan on rel" / "Sort". */
  offenders: string[];
  hits: number;
  reads: number;
  planMs: number;
  execMs: number;
}

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  Plans?: PlanNode[];
  "Shared Hit Blocks"?: number;
  "Shared Read Blocks"?: number;
}

async function planCheck(
  db: { query: (text: string, values: unknown[]) => Promise<{ rows: unknown[] }> },
  q: { text: string; values: unknown[] },
): Promise<PlanCheck> {
  const { rows } = await db.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${q.text}`, q.values);
  const doc = (rows[0] as { "QUERY PLAN": unknown })["QUERY PLAN"] as {
    Plan: PlanNode;
    "Planning Time": number;
    "Execution Time": number;
  }[];
  const top = doc[0]!;
  const offenders: string[] = [];
  const walk = (n: PlanNode) => {
    if (n["Node Type"] === "Seq Scan") offenders.push(`Seq Scan on ${n["Relation Name"]}`);
    if (n["Node Type"].endsWith("Sort")) offenders.push(n["Node Type"]);
    for (const c of n.Plans ?? []) walk(c);
  };
  walk(top.Plan);
  return {
    offenders,
    hits: top.Plan["Shared Hit Blocks"] ?? 0,
    reads: top.Plan["Shared Read Blocks"] ?? 0,
    planMs: top["Planning Time"],
    execMs: top["Execution Time"],
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
const pair = (a: number, b: number) => `${ms(a)} / ${ms(b)}`;
const perS = (x: number) => Math.round(x).toLocaleString("en");
const mark = (ok: boolean) => (ok ? "✓" : "✗");

export async function benchList(chats = 100_000, owners = 1_000) {
  if (!(chats >= 2 && owners >= 1))
    throw new Error("usage: npm run bench -- list [chats] [owners]");
  await withScratchDatabase("pgchatd_bench_list", async (url, where) => {
    const t = performance.now();
    await migrate(url);
    const migrateMs = performance.now() - t;
    const client = await connectClient(url, "pgchatd-bench-seed");
    const seeded = await seedChats(client, { chats, owners });
    const setup = process.env.BENCH_LIST_SETUP;
    if (setup) await client.query(setup);

    const keys: Record<string, string> = {};
    for (const [who, id] of [
      ["typical", seeded.typicalOwnerId],
      ["heavy", seeded.heavyOwnerId],
    ] as const) {
      const tok = generateToken();
      await insertAPIKey(client, {
        id: tok.id,
        user_id: id,
        hashed_secret: tok.hashedSecret,
        lifetime_seconds: 86_400,
      });
      keys[who] = tok.token;
    }
    const cursors = {
      typical: await cursorAt(client, seeded.typicalOwnerId, 0.8),
      heavy: await cursorAt(client, seeded.heavyOwnerId, 0.8),
    };
    await client.end();
    // A new connection, so settings from BENCH_LIST_SETUP (ALTER DATABASE ... SET) show.
    const fresh = await connectClient(url, "pgchatd-bench-settings");
    const settings = (
      await fresh.query(
        `SELECT split_part(current_setting('server_version'), ' ', 1) AS version,
           current_setting('shared_buffers') AS shared_buffers,
           current_setting('random_page_cost') AS random_page_cost,
           current_setting('jit') AS jit`,
      )
    ).rows[0] as Record<string, string>;
    await fresh.end();

    const cpus = os.cpus();
    console.log(
      `dataset: ${describeSeed(seeded)}\n` +
        `seeding: ${(seeded.ms / 1000).toFixed(1)} s (migrations ${(migrateMs / 1000).toFixed(1)} s before it)\n` +
        `database: PostgreSQL ${settings.version}, ${where}; shared_buffers ${settings.shared_buffers}, ` +
        `random_page_cost ${settings.random_page_cost}, jit ${settings.jit}\n` +
        `machine: ${cpus.length} × ${cpus[0]?.model.trim() ?? "?"}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ` +
        `node ${process.version}, ${os.platform()} ${os.arch()}; Postgres, server and load share these cores\n` +
        (setup ? `experiment (BENCH_LIST_SETUP): ${setup}\n` : "") +
        `deep page cursor: root ${cursors.typical.position} of ${cursors.typical.of} (typical), ` +
        `${cursors.heavy.position.toLocaleString("en")} of ${cursors.heavy.of.toLocaleString("en")} (heavy) unarchived roots`,
    );

    const sqlPool = createPool({ connectionString: url, max: 8, applicationName: "bench-sql" });
    const appPool = createPool({ connectionString: url, max: 16, applicationName: "bench-http" });
    const app = createApp({ db: appPool, logger: pino({ level: "silent" }) });
    const server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }) as Server;
    const port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      const addr = server.address() as AddressInfo | null;
      if (addr) resolve(addr.port);
      else server.once("listening", () => resolve((server.address() as AddressInfo).port));
    });

    const cases = (["typical", "heavy"] as const).flatMap((who) =>
      (["first", "deep"] as const).map((page) => ({
        name: `${who} ${page}`,
        token: keys[who]!,
        keyId: keys[who]!.slice(0, 10),
        args: listChatsArgs(who === "typical" ? seeded.typicalOwnerId : seeded.heavyOwnerId, {
          after_id: page === "deep" ? cursors[who].id : null,
        }),
        path: `/api/experimental/chats?limit=50${page === "deep" ? `&after_id=${cursors[who].id}` : ""}`,
      })),
    );

    const latRows: string[][] = [
      [
        "case",
        "roots+children",
        "SQL list",
        "SQL list+children",
        "SQL +auth",
        "HTTP",
        "HTTP/SQL p50",
      ],
      [
        "",
        "",
        `≤ ${targets.sqlMs} ms p50`,
        `≤ ${targets.sqlMs} ms p50`,
        "",
        "",
        `vs list+children ≤ ${targets.httpOverSqlP50}×`,
      ],
    ];
    const tpRows: string[][] = [
      [
        "case",
        "SQL list c8",
        "SQL list+children c8",
        "SQL +auth c8",
        "HTTP c8",
        "HTTP/SQL c8",
        "HTTP c16",
        "HTTP c16 p50 / p99",
      ],
      ["", "", "", "", "", `vs list+children ≥ ${targets.httpOverSqlThroughput}×`, "", "ms"],
    ];
    const planRows: string[][] = [
      [
        "case",
        "query",
        "Seq Scan / Sort (target: none)",
        "shared hits",
        "reads",
        "plan ms",
        "exec ms",
      ],
    ];
    const problems: string[] = [];

    try {
      for (const c of cases) {
        process.stderr.write(`measuring ${c.name} ...\n`);
        const list = () => listChatsByOwner(sqlPool, c.args);
        const rootIds = (await list()).map((r) => r.id);
        const children = () =>
          listChildChatsByRootIDs(sqlPool, { root_ids: rootIds, archived: false });
        const childCount = (await children()).length;
        const listAndChildren = async () => {
          const rows = await list();
          const ids = rows.filter((r) => r.parent_chat_id === null).map((r) => r.id);
          if (ids.length > 0)
            await listChildChatsByRootIDs(sqlPool, { root_ids: ids, archived: false });
        };
        const withAuth = async () => {
          await getAPIKeyForAuthByID(sqlPool, { id: c.keyId });
          await listAndChildren();
        };
        // The HTTP route must answer the same page, or the comparison is void.
        const res = await fetch(`http://127.0.0.1:${port}${c.path}`, {
          headers: { authorization: `Bearer ${c.token}` },
        });
        const body = (await res.json()) as { id: string; children?: unknown[] }[];
        if (res.status !== 200 || body.length !== rootIds.length || body[0]?.id !== rootIds[0]) {
          throw new Error(
            `${c.name}: HTTP ${res.status} answered ${body.length} chats, SQL ${rootIds.length}`,
          );
        }

        const lList = await latencies(list, sqlRuns);
        const lBoth = await latencies(listAndChildren, sqlRuns);
        const lAuth = await latencies(withAuth, sqlRuns);
        const tList = await throughput(list, 8, durationS);
        const tBoth = await throughput(listAndChildren, 8, durationS);
        const tAuth = await throughput(withAuth, 8, durationS);

        const url = `http://127.0.0.1:${port}${c.path}`;
        await autocannon(url, c.token, 8, 1); // warm the app's pool and the JIT
        const h1 = await autocannon(url, c.token, 1, durationS);
        const h8 = await autocannon(url, c.token, 8, durationS);
        const h16 = await autocannon(url, c.token, 16, durationS);
        for (const [n, h] of [
          ["c1", h1],
          ["c8", h8],
          ["c16", h16],
        ] as const) {
          if (h.non2xx || h.errors)
            problems.push(`${c.name} HTTP ${n}: ${h.non2xx} non-2xx, ${h.errors} errors`);
        }

        const p50List = percentile(lList, 50);
        const p50Both = percentile(lBoth, 50);
        const ratioP50 = h1.p50 / p50Both;
        const ratioTp = h8.rps / tBoth;
        latRows.push([
          c.name,
          `${rootIds.length}+${childCount}`,
          `${pair(p50List, percentile(lList, 99))} ${mark(p50List <= targets.sqlMs)}`,
          `${pair(p50Both, percentile(lBoth, 99))} ${mark(p50Both <= targets.sqlMs)}`,
          pair(percentile(lAuth, 50), percentile(lAuth, 99)),
          pair(h1.p50, h1.p99),
          `${ratioP50.toFixed(1)}× ${mark(ratioP50 <= targets.httpOverSqlP50)} (${(h1.p50 / p50List).toFixed(1)}× vs list)`,
        ]);
        tpRows.push([
          c.name,
          perS(tList),
          perS(tBoth),
          perS(tAuth),
          perS(h8.rps),
          `${ratioTp.toFixed(2)}× ${mark(ratioTp >= targets.httpOverSqlThroughput)}`,
          perS(h16.rps),
          pair(h16.p50, h16.p99),
        ]);

        const listPlan = await planCheck(sqlPool, await capturedQuery(listChatsByOwner, c.args));
        const childPlan = await planCheck(
          sqlPool,
          await capturedQuery(listChildChatsByRootIDs, { root_ids: rootIds, archived: false }),
        );
        for (const [q, p] of [
          ["list", listPlan],
          ["children", childPlan],
        ] as const) {
          planRows.push([
            c.name,
            q,
            p.offenders.length ? `${p.offenders.join(", ")} ✗` : "none ✓",
            String(p.hits),
            String(p.reads),
            p.planMs.toFixed(2),
            p.execMs.toFixed(2),
          ]);
        }
      }
    } finally {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await Promise.all([sqlPool.end(), appPool.end()]);
    }

    console.log(
      `\nLatency at concurrency 1, ms p50 / p99 (SQL: ${sqlRuns.toLocaleString("en")} runs after ${warmupRuns} warm-up; HTTP: autocannon ${durationS} s)`,
    );
    console.log(table(latRows));
    console.log(
      `\nThroughput, per second (${durationS} s each; SQL on a pool of 8, HTTP app pool of 16)`,
    );
    console.log(table(tpRows));
    console.log("\nPlans (EXPLAIN ANALYZE, BUFFERS; hits and reads of the whole plan)");
    console.log(table(planRows));
    for (const p of problems) console.log(`WARNING: ${p}`);
  });
}
