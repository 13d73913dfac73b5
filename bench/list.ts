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
import os from "node:os";
import { pino } from "pino";
import { migrate } from "../src/db/migrate.ts";
import { connectClient, createPool } from "../src/db/pool.ts";
import { getAPIKeyForAuthByID, insertAPIKey } from "../src/generated/api_keys.ts";
import { listChatsByOwner, listChildChatsByRootIDs } from "../src/generated/chats.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { createApp } from "../src/server/app.ts";
import { explainAnalyze, planNodes, type Queryable } from "../support/plans.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import {
  capturedQuery,
  cursorAt,
  describeSeed,
  listChatsArgs,
  seedChats,
} from "../support/seed_chats.ts";
import {
  autocannon,
  describeMachine,
  int,
  latencies,
  mark,
  pair,
  serveLocal,
  serverSettings,
  table,
  throughput,
} from "./measure.ts";
import { percentile } from "./stats.ts";

const sqlRuns = 2_000;
const warmupRuns = 200;
const durationS = 5;
const targets = { sqlMs: 0.5, httpOverSqlP50: 2, httpOverSqlThroughput: 0.4 };

interface PlanCheck {
  /** Seq Scan / Sort nodes, as "Seq Scan on rel" / "Sort". */
  offenders: string[];
  hits: number;
  reads: number;
  planMs: number;
  execMs: number;
}

async function planCheck(
  db: Queryable,
  q: { text: string; values: unknown[] },
): Promise<PlanCheck> {
  const top = await explainAnalyze(db, q);
  const offenders: string[] = [];
  for (const n of planNodes(top.Plan)) {
    if (n["Node Type"] === "Seq Scan") offenders.push(`Seq Scan on ${n["Relation Name"]}`);
    if (n["Node Type"].endsWith("Sort")) offenders.push(n["Node Type"]);
  }
  return {
    offenders,
    hits: top.Plan["Shared Hit Blocks"] ?? 0,
    reads: top.Plan["Shared Read Blocks"] ?? 0,
    planMs: top["Planning Time"],
    execMs: top["Execution Time"],
  };
}

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
    const settings = await serverSettings(fresh, ["current_setting('jit') AS jit"]);
    await fresh.end();

    console.log(
      `dataset: ${describeSeed(seeded)}\n` +
        `seeding: ${(seeded.ms / 1000).toFixed(1)} s (migrations ${(migrateMs / 1000).toFixed(1)} s before it)\n` +
        `database: PostgreSQL ${settings.version}, ${where}; shared_buffers ${settings.shared_buffers}, ` +
        `random_page_cost ${settings.random_page_cost}, jit ${settings.jit}\n` +
        `machine: ${describeMachine()}, ${os.platform()} ${os.arch()}; ` +
        "Postgres, server and load share these cores\n" +
        (setup ? `experiment (BENCH_LIST_SETUP): ${setup}\n` : "") +
        `deep page cursor: root ${cursors.typical.position} of ${cursors.typical.of} (typical), ` +
        `${cursors.heavy.position.toLocaleString("en")} of ${cursors.heavy.of.toLocaleString("en")} (heavy) unarchived roots`,
    );

    const sqlPool = createPool({ connectionString: url, max: 8, applicationName: "bench-sql" });
    const appPool = createPool({ connectionString: url, max: 16, applicationName: "bench-http" });
    const app = createApp({ db: appPool, logger: pino({ level: "silent" }) });
    const { port, close } = await serveLocal(app.fetch);

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

        const lList = await latencies(list, sqlRuns, warmupRuns);
        const lBoth = await latencies(listAndChildren, sqlRuns, warmupRuns);
        const lAuth = await latencies(withAuth, sqlRuns, warmupRuns);
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
          int(tList),
          int(tBoth),
          int(tAuth),
          int(h8.rps),
          `${ratioTp.toFixed(2)}× ${mark(ratioTp >= targets.httpOverSqlThroughput)}`,
          int(h16.rps),
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
      await close();
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
