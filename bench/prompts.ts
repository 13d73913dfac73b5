/*
 * The prompt history (GET /api/experimental/chats/{chat}/prompts) on a seeded chat with 10,000
 * user messages: our design (chat_prompts, kept by the chat_messages__sync_prompt trigger) against
 * unrolling content at read time instead, read side and write side.
 * Prints numbers next to their targets; never passes or fails.
 *
 *   npm run bench -- prompts                 51 chats, 270,000 messages, each chat's rows adjacent
 *   npm run bench -- prompts interleaved     the same messages, the chats' rows interleaved
 *
 * Read side, for LIMIT 500 (the route's default) and 2000 (its maximum):
 * - ours: the generated listChatPromptsByChatID, exactly as the route runs it;
 * - the reference: referencePromptsQuery below, with its partial index created on the scratch
 *   database, and again after dropping it (the schema's own indexes only). Each both as the
 *   planner plans it and steered to its intended plan (ordered index scan, stopping at the
 *   limit) with enable_bitmapscan off: its jsonb_typeof guard is estimated at the default 0.5%
 *   selectivity, so the planner expects ~50 rows where ~9,500 match, never expects the LIMIT to
 *   stop the scan early, and picks a bitmap scan of the whole chat plus a Sort.
 * Each gets EXPLAIN (ANALYZE, BUFFERS) (median execution time of 5, after a warm-up; shared
 * buffers hit + read; rows removed by any filter, times loops: EXPLAIN reports a per-loop average
 * rounded to a whole row, so the reference's Function Scan, which drops ~0.3 file parts per
 * message, counts as 0) and p50/p99 of 1,000 sequential runs from a pg pool in this process. Both designs must return the same prompts, or the bench
 * stops.
 * HTTP: the real app (createApp) on 127.0.0.1 in this process, loaded by autocannon in a worker
 * thread for 5 s at 1 and 8 connections.
 * Write side: 10,000 user messages inserted one statement at a time through the generated
 * insertChatMessage, with the sync trigger enabled and disabled (ALTER TABLE ... DISABLE TRIGGER
 * on the scratch database), in alternating blocks of 1,000 so drift hits both arms alike; with
 * synchronous_commit off on that session, since a WAL flush per commit costs the same in both
 * arms and would drown the difference. One more run with the trigger on and synchronous_commit
 * on gives the absolute cost as the API pays it.
 *
 * Experiments: BENCH_PROMPTS_SETUP is SQL run on the scratch database after seeding, e.g.
 *   BENCH_PROMPTS_SETUP="ALTER TABLE chat_prompts DROP CONSTRAINT chat_prompts_chat_id_fkey" \
 *     npm run bench -- prompts
 */
import pg from "pg";
import { pino } from "pino";
import { migrate } from "../src/db/migrate.ts";
import { clientConfig, connectClient, createPool } from "../src/db/pool.ts";
import { insertAPIKey } from "../src/generated/api_keys.ts";
import { insertChatMessage, listChatPromptsByChatID } from "../src/generated/chat_messages.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { createApp } from "../src/server/app.ts";
import { explainAnalyze, type PlanNode, planNodes, type Queryable } from "../support/plans.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { capturedQuery } from "../support/seed_chats.ts";
import {
  createChat,
  describeMessages,
  type MessagesLayout,
  seedMessages,
} from "../support/seed_messages.ts";
import {
  autocannon,
  describeMachine,
  type HttpRun,
  int,
  latencies,
  mark,
  ms,
  pair,
  serveLocal,
  serverSettings,
  table,
} from "./measure.ts";
import { mean, percentile } from "./stats.ts";

/**
 * The reference system's prompt history: no side table; each user message's content is unrolled
 * at read time. Its partial index is referenceIndexSql.
 */
export const referencePromptsQuery = `SELECT m.id, string_agg(e.part ->> 'text', '' ORDER BY e.ordinality) AS text
FROM chat_messages m
CROSS JOIN LATERAL jsonb_array_elements(m.content) WITH ORDINALITY AS e(part, ordinality)
WHERE m.chat_id = $1 AND m.deleted = false AND m.role = 'user'
  AND m.visibility IN ('user', 'both')
  AND jsonb_typeof(m.content) = 'array'
  AND e.part ->> 'type' = 'text'
GROUP BY m.id
HAVING string_agg(e.part ->> 'text', '' ORDER BY e.ordinality) ~ '\\S'
ORDER BY m.id DESC
LIMIT $2`;

export const referenceIndexSql = `CREATE INDEX chat_messages_reference_prompts_idx
  ON chat_messages (chat_id, id DESC)
  WHERE deleted = false AND role = 'user' AND visibility IN ('user', 'both')`;

/** The reference query in the generated functions' style (array rows, mapped). */
async function listReferencePrompts(
  client: { query: (c: pg.QueryArrayConfig) => Promise<pg.QueryArrayResult> },
  args: { chat_id: string; page_limit: number },
): Promise<{ id: number; text: string }[]> {
  const result = await client.query({
    text: referencePromptsQuery,
    values: [args.chat_id, args.page_limit],
    rowMode: "array",
  });
  return result.rows.map((row) => ({ id: row[0], text: row[1] }));
}

const sqlRuns = 1_000;
const warmupRuns = 100;
const explainRuns = 5;
const durationS = 5;
const writes = 10_000;
const writeBlock = 1_000;
const serverWrites = 1_000;
const assistantContent = [
  {
    type: "text",
    text: `Done: ${"I updated the handler, ran the suite and all tests pass. ".repeat(5)}`,
  },
];

interface ExplainedInsert {
  "Execution Time": number;
  Triggers?: { "Trigger Name": string; Time: number; Calls: number }[];
}
const limits = [500, 2000] as const;
const targets = { execMs: 1.0 };

interface Plan {
  /** Nodes, outermost first: "Limit > Index Scan chat_prompts_chat_id_idx". */
  shape: string;
  /** Rows removed by filters (scan, join and HAVING filters, index rechecks), times loops. */
  removed: number;
  buffers: number;
  reads: number;
  rows: number;
  /** Median over explainRuns. */
  execMs: number;
  planMs: number;
}

function nodeLabel(n: PlanNode): string {
  const t = n["Node Type"];
  if (t === "Aggregate") {
    return n.Strategy === "Sorted"
      ? "GroupAggregate"
      : n.Strategy === "Hashed"
        ? "HashAggregate"
        : t;
  }
  if (n["Index Name"]) {
    return `${t}${n["Scan Direction"] === "Backward" ? " Backward" : ""} ${n["Index Name"]}`;
  }
  if (n["Relation Name"]) return `${t} ${n["Relation Name"]}`;
  if (n["Function Name"]) return `${t} ${n["Function Name"]}`;
  return t;
}

function nodeShape(n: PlanNode): string {
  const kids = n.Plans ?? [];
  if (kids.length === 0) return nodeLabel(n);
  if (kids.length === 1) return `${nodeLabel(n)} > ${nodeShape(kids[0]!)}`;
  return `${nodeLabel(n)} > (${kids.map(nodeShape).join("; ")})`;
}

async function explain(db: Queryable, q: { text: string; values: unknown[] }): Promise<Plan> {
  let last: Omit<Plan, "execMs" | "planMs"> | undefined;
  const exec: number[] = [];
  const plan: number[] = [];
  for (let i = 0; i <= explainRuns; i++) {
    const top = await explainAnalyze(db, q);
    let removed = 0;
    for (const n of planNodes(top.Plan)) {
      removed +=
        ((n["Rows Removed by Filter"] ?? 0) +
          (n["Rows Removed by Join Filter"] ?? 0) +
          (n["Rows Removed by Index Recheck"] ?? 0)) *
        (n["Actual Loops"] ?? 1);
    }
    if (i === 0) continue; // warm-up
    exec.push(top["Execution Time"]);
    plan.push(top["Planning Time"]);
    last = {
      shape: nodeShape(top.Plan),
      removed: Math.round(removed),
      buffers: (top.Plan["Shared Hit Blocks"] ?? 0) + (top.Plan["Shared Read Blocks"] ?? 0),
      reads: top.Plan["Shared Read Blocks"] ?? 0,
      rows: Math.round(top.Plan["Actual Rows"] ?? 0),
    };
  }
  return { ...last!, execMs: percentile(exec, 50), planMs: percentile(plan, 50) };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** A deterministic PRNG (mulberry32), for the write side's message contents. */
function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** User message contents shaped like the seed's (1-3 parts, some blank, some with a file). */
function userContents(count: number): unknown[] {
  const rand = prng(42);
  const openings = ["Fix the flaky test in", "Add pagination to", "Explain the error from"];
  return Array.from({ length: count }, (_, i) => {
    const blank = rand() < 0.03;
    const parts = 1 + Math.floor(rand() * 3);
    return Array.from({ length: parts }, (_, p) =>
      p > 0 && rand() < 0.25
        ? {
            type: "file",
            file_id: `00000000-0000-4000-8000-${String(i * 3 + p).padStart(12, "0")}`,
          }
        : {
            type: "text",
            text: blank
              ? " \n "
              : `${p > 0 ? "\n\n" : ""}${openings[Math.floor(rand() * openings.length)]} module${
                  i % 40
                }. ${"Keep the public API stable and add tests. ".repeat(Math.floor(rand() * 5))}`,
          },
    );
  });
}

interface QueryCase {
  name: string;
  limit: number;
  plan: Plan;
  lat: number[];
}

export async function benchPrompts(layoutArg?: string) {
  const layout = (layoutArg ?? "per-chat") as MessagesLayout;
  if (layout !== "per-chat" && layout !== "interleaved") {
    throw new Error("usage: npm run bench -- prompts [per-chat|interleaved]");
  }
  await withScratchDatabase("pgchatd_bench_prompts", async (url, where) => {
    await migrate(url);
    const client = await connectClient(url, "pgchatd-bench-seed");
    const seeded = await seedMessages(client, { layout });
    const setup = process.env.BENCH_PROMPTS_SETUP;
    if (setup) await client.query(setup);
    const tok = generateToken();
    await insertAPIKey(client, {
      id: tok.id,
      user_id: seeded.ownerId,
      hashed_secret: tok.hashedSecret,
      lifetime_seconds: 86_400,
    });
    const settings = await serverSettings(client, [
      "pg_total_relation_size('chat_messages') AS messages_bytes",
      "pg_relation_size('chat_prompts') AS prompts_heap",
      "pg_total_relation_size('chat_prompts') AS prompts_total",
      "pg_relation_size('chat_prompts_chat_id_idx') AS prompts_idx",
    ]);
    await client.end();

    console.log(
      `dataset: ${describeMessages(seeded)}\n` +
        `seeding: ${(seeded.ms / 1000).toFixed(1)} s (VACUUM ANALYZE included)\n` +
        `sizes: chat_messages ${mib(Number(settings.messages_bytes))} with indexes; chat_prompts ` +
        `${mib(Number(settings.prompts_total))} (heap ${mib(Number(settings.prompts_heap))}, ` +
        `chat_prompts_chat_id_idx ${mib(Number(settings.prompts_idx))})\n` +
        `database: PostgreSQL ${settings.version}, ${where}; shared_buffers ${settings.shared_buffers}, ` +
        `random_page_cost ${settings.random_page_cost}\n` +
        `machine: ${describeMachine()}; Postgres, server and load share these cores` +
        (setup ? `\nexperiment (BENCH_PROMPTS_SETUP): ${setup}` : ""),
    );

    const chat = seeded.targetChatId;
    const sqlPool = createPool({ connectionString: url, max: 8, applicationName: "bench-sql" });
    const base = clientConfig(url, "bench-sql-steered");
    const steeredPool = new pg.Pool({
      ...base,
      options: `${base.options ?? ""} -c enable_bitmapscan=off`,
      max: 8,
    });
    steeredPool.on("error", () => {});
    const appPool = createPool({ connectionString: url, max: 16, applicationName: "bench-http" });
    const app = createApp({ db: appPool, logger: pino({ level: "silent" }) });
    const { port, close } = await serveLocal(app.fetch);

    const cases: QueryCase[] = [];
    const http: [string, HttpRun][] = [];
    const problems: string[] = [];
    let referenceIndexBytes = 0;
    let httpBytes = 0;
    let httpPrompts = 0;
    const writeRows: string[][] = [];
    const serverRows: string[][] = [];
    let overhead = "";
    try {
      // Both designs must answer the same prompt history, whole, or the comparison is void.
      const all = seeded.counts.targetUser;
      const ours = await listChatPromptsByChatID(sqlPool, { chat_id: chat, page_limit: all });
      const theirs = await listReferencePrompts(sqlPool, { chat_id: chat, page_limit: all });
      const same =
        ours.length === theirs.length &&
        ours.every((p, i) => p.id === theirs[i]!.id && p.text === theirs[i]!.text);
      if (!same) {
        throw new Error(
          `the designs disagree: ours ${ours.length} prompts, the reference ${theirs.length}`,
        );
      }
      console.log(
        `check: both designs return the same ${int(ours.length)} prompts for the target chat ✓`,
      );

      const measure = async (
        name: string,
        fn: typeof listChatPromptsByChatID | typeof listReferencePrompts,
        db: pg.Pool = sqlPool,
      ) => {
        for (const limit of limits) {
          process.stderr.write(`measuring ${name}, LIMIT ${limit} ...\n`);
          const args = { chat_id: chat, page_limit: limit };
          const plan = await explain(db, await capturedQuery(fn, args));
          const lat = await latencies(() => fn(db, args), sqlRuns, warmupRuns);
          cases.push({ name, limit, plan, lat });
        }
      };

      await measure("ours: chat_prompts", listChatPromptsByChatID);

      // HTTP, the route's default limit.
      const path = `/api/experimental/chats/${chat}/prompts`;
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        headers: { authorization: `Bearer ${tok.token}` },
      });
      const text = await res.text();
      const body = JSON.parse(text) as { prompts?: { id: number }[] };
      httpBytes = Buffer.byteLength(text);
      httpPrompts = body.prompts?.length ?? 0;
      if (res.status !== 200 || httpPrompts !== 500 || body.prompts?.[0]?.id !== ours[0]?.id) {
        throw new Error(`HTTP ${res.status} answered ${httpPrompts} prompts, expected 500`);
      }
      const urlOf = `http://127.0.0.1:${port}${path}`;
      process.stderr.write("measuring HTTP ...\n");
      await autocannon(urlOf, tok.token, 8, 1); // warm the app's pool and the JIT
      for (const c of [1, 8]) {
        const h = await autocannon(urlOf, tok.token, c, durationS);
        if (h.non2xx || h.errors)
          problems.push(`HTTP c${c}: ${h.non2xx} non-2xx, ${h.errors} errors`);
        http.push([`c${c}`, h]);
      }

      await sqlPool.query(referenceIndexSql);
      await sqlPool.query("ANALYZE chat_messages");
      referenceIndexBytes = Number(
        (
          await sqlPool.query<{ b: string }>(
            "SELECT pg_relation_size('chat_messages_reference_prompts_idx') AS b",
          )
        ).rows[0]!.b,
      );
      await measure("reference + partial index", listReferencePrompts);
      await measure("  same, bitmapscan off", listReferencePrompts, steeredPool);
      await sqlPool.query("DROP INDEX chat_messages_reference_prompts_idx");
      await measure("reference, no partial index", listReferencePrompts);
      await measure("  same, bitmapscan off", listReferencePrompts, steeredPool);

      // Write side.
      process.stderr.write("measuring writes ...\n");
      const w = await connectClient(url, "pgchatd-bench-writes");
      try {
        const writeChat = await createChat(
          w,
          seeded.ownerId,
          seeded.organizationId,
          "A chat for the write side.",
        );
        const contents = userContents(writes);
        const insert = (content: unknown) =>
          insertChatMessage(w, {
            chat_id: writeChat,
            role: "user",
            content,
            visibility: "both",
            model_config_id: null,
            created_by: seeded.ownerId,
            api_key_id: null,
          });
        const trigger = (on: boolean) =>
          w.query(
            `ALTER TABLE chat_messages ${on ? "ENABLE" : "DISABLE"} TRIGGER chat_messages_510_sync_prompt`,
          );
        const run = async (from: number, to: number) => {
          const out: number[] = [];
          for (let i = from; i < to; i++) {
            const t = performance.now();
            await insert(contents[i]);
            out.push(performance.now() - t);
          }
          return out;
        };
        await w.query("SET synchronous_commit = off");
        for (const on of [true, false]) {
          await trigger(on);
          await run(0, 500); // warm-up
        }
        const arms: Record<"on" | "off", number[]> = { on: [], off: [] };
        for (let b = 0; b < writes / writeBlock; b++) {
          const order = b % 2 === 0 ? [true, false] : [false, true];
          for (const on of order) {
            await trigger(on);
            arms[on ? "on" : "off"].push(...(await run(b * writeBlock, (b + 1) * writeBlock)));
          }
        }
        await trigger(true);
        await w.query("SET synchronous_commit = on");
        const synced = await run(0, writes);
        const row = (label: string, xs: number[]) => [
          label,
          `${(xs.reduce((a, b) => a + b, 0) / 1000).toFixed(2)}`,
          int(mean(xs) * 1000),
          int(percentile(xs, 50) * 1000),
          int(percentile(xs, 99) * 1000),
        ];
        writeRows.push(
          ["10,000 inserts (insertChatMessage, user)", "total s", "mean µs", "p50 µs", "p99 µs"],
          row("sync trigger on, synchronous_commit off", arms.on),
          row("sync trigger off, synchronous_commit off", arms.off),
          row("sync trigger on, synchronous_commit on", synced),
        );
        const dMean = (mean(arms.on) - mean(arms.off)) * 1000;
        const dP50 = (percentile(arms.on, 50) - percentile(arms.off, 50)) * 1000;
        overhead =
          `trigger overhead per user message: ${dMean.toFixed(1)} µs mean, ${dP50.toFixed(1)} µs p50 ` +
          `(+${((100 * dMean) / (mean(arms.off) * 1000)).toFixed(0)}% of an insert without it; ` +
          `${((100 * dMean) / (mean(synced) * 1000)).toFixed(0)}% of one with synchronous_commit on)`;

        // Server side: each trigger's own time, from EXPLAIN ANALYZE of the same single-row INSERT
        // (it inserts for real), free of the round trip's noise.
        const triggerTimes = async (role: "user" | "assistant") => {
          const times: Record<string, number[]> = { execution: [] };
          const add = (name: string, us: number) => {
            const list = times[name] ?? [];
            list.push(us);
            times[name] = list;
          };
          for (let i = 0; i < serverWrites; i++) {
            const q = await capturedQuery(insertChatMessage, {
              chat_id: writeChat,
              role,
              content: role === "user" ? contents[i] : assistantContent,
              visibility: "both",
              model_config_id: null,
              created_by: role === "user" ? seeded.ownerId : null,
              api_key_id: null,
            });
            const { rows } = await w.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${q.text}`, q.values);
            const doc = (rows[0] as { "QUERY PLAN": ExplainedInsert[] })["QUERY PLAN"][0]!;
            add("execution", doc["Execution Time"] * 1000);
            for (const t of doc.Triggers ?? []) {
              if (t["Trigger Name"].startsWith("chat_messages_")) {
                add(t["Trigger Name"], t.Time * 1000);
              }
            }
          }
          return times;
        };
        const user = await triggerTimes("user");
        const assistant = await triggerTimes("assistant");
        const names = Object.keys(user).filter((k) => k !== "execution");
        serverRows.push(
          ["per message, µs (median)", "whole INSERT", ...names.map((k) => k.slice(14))],
          ...(
            [
              ["user", user],
              ["assistant", assistant],
            ] as const
          ).map(([who, t]) => [
            who,
            int(percentile(t.execution!, 50)),
            ...names.map((k) => (t[k] ? int(percentile(t[k], 50)) : "")),
          ]),
        );
      } finally {
        await w.end();
      }
    } finally {
      await close();
      await Promise.all([sqlPool.end(), steeredPool.end(), appPool.end()]);
    }

    const ours500 = cases.find((c) => c.name.startsWith("ours") && c.limit === 500)!;
    const rows: string[][] = [
      [
        "query",
        "limit",
        "rows",
        "exec ms",
        "buffers",
        "removed by filter",
        `client p50 / p99 ms`,
        "exec vs ours",
        "target",
      ],
    ];
    for (const c of cases) {
      const oursSame = cases.find((o) => o.name.startsWith("ours") && o.limit === c.limit)!;
      const isOurs = c.name.startsWith("ours");
      const met = c.plan.execMs <= targets.execMs && c.plan.removed === 0;
      rows.push([
        c.name,
        String(c.limit),
        int(c.plan.rows),
        ms(c.plan.execMs),
        int(c.plan.buffers) + (c.plan.reads ? ` (${int(c.plan.reads)} read)` : ""),
        int(c.plan.removed),
        pair(percentile(c.lat, 50), percentile(c.lat, 99)),
        isOurs ? "" : `${(c.plan.execMs / oursSame.plan.execMs).toFixed(1)}×`,
        c === ours500 ? `≤ ${targets.execMs.toFixed(1)} ms, 0 removed ${mark(met)}` : "",
      ]);
    }
    console.log(
      `\nPrompt history of the target chat (${int(seeded.counts.targetPrompts)} prompts): ` +
        `EXPLAIN (ANALYZE, BUFFERS) median of ${explainRuns} after a warm-up, shared buffers hit+read; ` +
        `client: ${int(sqlRuns)} sequential runs after ${warmupRuns} warm-up, pg pool in this process`,
    );
    console.log(table(rows));
    console.log(
      `reference partial index: ${mib(referenceIndexBytes)}; chat_prompts and its index: ` +
        `${mib(Number(settings.prompts_total))}`,
    );
    console.log("\nPlans");
    console.log(
      table(
        [
          ["query", "limit", "plan ms", "shape"],
          ...cases.map((c) => [c.name, String(c.limit), ms(c.plan.planMs), c.plan.shape]),
        ],
        [3],
      ),
    );
    console.log(
      `\nHTTP GET /api/experimental/chats/{target}/prompts (default limit: ${httpPrompts} prompts, ` +
        `${(httpBytes / 1024).toFixed(0)} KiB), autocannon ${durationS} s, app pool of 16`,
    );
    console.log(
      table([
        ["connections", "p50 / p99 ms", "req/s"],
        ...http.map(([c, h]) => [c, pair(h.p50, h.p99), int(h.rps)]),
      ]),
    );
    console.log(
      `\nWrite side: ${int(writes)} user messages, one statement each, sequential, one connection`,
    );
    console.log(table(writeRows));
    console.log(overhead);
    console.log(
      `\nWrite side, server: EXPLAIN ANALYZE of ${int(serverWrites)} single-row inserts of each ` +
        "role, trigger times as Postgres reports them (sync_prompt includes its chat_prompts " +
        "insert and that insert's foreign-key checks)",
    );
    console.log(table(serverRows));
    for (const p of problems) console.log(`WARNING: ${p}`);
  });
}
