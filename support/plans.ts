import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type pg from "pg";

/*
 * Reading query plans, for the benchmarks and for the plans of docs/sql.md (scripts/explain.ts).
 */

/** A node of EXPLAIN (FORMAT JSON) output: the fields the benchmarks and docs/sql.md read. */
export interface PlanNode {
  "Node Type": string;
  Strategy?: string;
  "Parallel Aware"?: boolean;
  "Relation Name"?: string;
  Alias?: string;
  "Index Name"?: string;
  "Function Name"?: string;
  "Sort Key"?: string[];
  "Scan Direction"?: string;
  "Actual Loops"?: number;
  "Actual Rows"?: number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Join Filter"?: number;
  "Rows Removed by Index Recheck"?: number;
  "Shared Hit Blocks"?: number;
  "Shared Read Blocks"?: number;
  Plans?: PlanNode[];
}

/** Every node of a plan, depth first (each before its children), for checks over the whole tree. */
export function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

/** The top object of EXPLAIN (ANALYZE, FORMAT JSON) output. */
export interface ExplainedPlan {
  Plan: PlanNode;
  "Planning Time": number;
  "Execution Time": number;
}

/** A pg Pool or Client, as far as EXPLAIN needs one. */
export interface Queryable {
  query: (text: string, values: unknown[]) => Promise<{ rows: unknown[] }>;
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of a query as the route sends it (see capturedQuery), so the plan is
 * the one the route gets, parameters and all.
 */
export async function explainAnalyze(
  db: Queryable,
  q: { text: string; values: unknown[] },
): Promise<ExplainedPlan> {
  const { rows } = await db.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${q.text}`, q.values);
  const doc = (rows[0] as { "QUERY PLAN": unknown })["QUERY PLAN"] as ExplainedPlan[];
  return doc[0]!;
}

/**
 * The plans of the statements `sql` runs inside functions and triggers, as auto_explain reports
 * them (EXPLAIN shows only the outer call), in a transaction that is rolled back.
 */
export async function nestedPlans(
  client: pg.Client,
  sql: string,
  values: unknown[] = [],
  format: "text" | "json" = "text",
): Promise<string[]> {
  const notices: string[] = [];
  const onNotice = (n: { message?: string }) => {
    if (n.message) notices.push(n.message);
  };
  client.on("notice", onNotice);
  try {
    await client.query("BEGIN");
    await client.query("LOAD 'auto_explain'");
    await client.query(`SET LOCAL auto_explain.log_min_duration = 0;
      SET LOCAL auto_explain.log_nested_statements = on; SET LOCAL auto_explain.log_analyze = on;
      SET LOCAL auto_explain.log_buffers = on; SET LOCAL auto_explain.log_timing = on;
      SET LOCAL auto_explain.log_triggers = on; SET LOCAL auto_explain.log_format = ${format};
      SET LOCAL auto_explain.log_level = notice; SET LOCAL client_min_messages = notice`);
    await client.query(sql, values);
  } finally {
    await client.query("ROLLBACK");
    client.off("notice", onNotice);
  }
  return notices.map((n) => n.replace(/^duration: [\d.]+ ms\s+plan:\n/, ""));
}

/** A statement run inside a function, as auto_explain reported it: text for the reader, tree for the check. */
export interface NestedPlan {
  text: string;
  plan: PlanNode;
}

/**
 * nestedPlans twice, in text and as JSON (auto_explain logs one format per run), paired by
 * position. Both runs are rolled back, so they run the same statements; a pair whose query texts
 * differ means they did not, and is refused rather than checked against the wrong plan.
 */
export async function nestedPlanTrees(
  client: pg.Client,
  sql: string,
  values: unknown[] = [],
): Promise<NestedPlan[]> {
  const texts = await nestedPlans(client, sql, values, "text");
  const trees = (await nestedPlans(client, sql, values, "json")).map(
    (n) => JSON.parse(n) as { "Query Text": string; Plan: PlanNode },
  );
  if (texts.length !== trees.length) {
    throw new Error(`${sql}: ${texts.length} statements in text, ${trees.length} as JSON`);
  }
  return texts.map((text, i) => {
    const tree = trees[i]!;
    if (!text.startsWith(`Query Text: ${tree["Query Text"]}`)) {
      throw new Error(`${sql}: statement ${i + 1} differs between the text and the JSON runs`);
    }
    return { text, plan: tree.Plan };
  });
}

/*
 * The check of `npm run explain -- --check` (docs/sql.md, "Plans of the hot queries"): a hot
 * query's plan must not read a large table whole, nor sort what an index could give in order.
 */

/**
 * Rows from which a table counts as large. The seed's small tables (configuration, runners,
 * providers: tens of rows) are read whole by design; its large ones hold 10,000 rows and more,
 * where a sequential scan is a missing or unusable index.
 */
export const largeTableRows = 10_000;

/** What a hot query's plan may contain though the check would otherwise fail it, each with why. */
export interface PlanAllowances {
  /** Why Sort nodes are expected (a top-N over a handful of rows); absent, the order must come from an index. */
  sort?: string;
  /** Large tables the plan may read whole, each with why. */
  seqScan?: Record<string, string>;
}

export interface PlanProblem {
  /** The node, as EXPLAIN names it ("Seq Scan", "Incremental Sort"). */
  node: string;
  /** The table it reads (a Sort: the first table below it). */
  table: string | undefined;
  message: string;
}

/** The first table read at or below `node`, depth first. */
function tableBelow(node: PlanNode): string | undefined {
  return planNodes(node).find((n) => n["Relation Name"])?.["Relation Name"];
}

/** The tables a plan reads with a sequential scan: those whose size the check needs. */
export function seqScannedTables(plan: PlanNode): string[] {
  return [
    ...new Set(
      planNodes(plan)
        .filter((n) => n["Node Type"] === "Seq Scan" && n["Relation Name"])
        .map((n) => n["Relation Name"]!),
    ),
  ];
}

/** Rows in each of `tables` now, counted (an estimate would depend on when ANALYZE last ran). */
export async function tableRows(db: Queryable, tables: string[]): Promise<Map<string, number>> {
  const rows = new Map<string, number>();
  for (const table of tables) {
    const quoted = `"${table.replaceAll('"', '""')}"`;
    const { rows: r } = await db.query(`SELECT count(*)::bigint AS n FROM ${quoted}`, []);
    rows.set(table, Number((r[0] as { n: string }).n));
  }
  return rows;
}

/**
 * What is wrong with a hot query's plan: every Seq Scan of a table with `largeTableRows` rows or
 * more (`rows` gives the sizes, see seqScannedTables and tableRows), and every Sort or Incremental
 * Sort, unless `allow` says why each is expected.
 */
export function planProblems(
  plan: PlanNode,
  rows: ReadonlyMap<string, number>,
  allow: PlanAllowances = {},
): PlanProblem[] {
  const problems: PlanProblem[] = [];
  for (const n of planNodes(plan)) {
    const type = n["Node Type"];
    if (type === "Seq Scan") {
      const table = n["Relation Name"];
      const size = table === undefined ? undefined : rows.get(table);
      if (table === undefined || size === undefined) {
        problems.push({ node: type, table, message: `Seq Scan on ${table}: its size is unknown` });
      } else if (size >= largeTableRows && !allow.seqScan?.[table]) {
        const node = n["Parallel Aware"] ? "Parallel Seq Scan" : type;
        problems.push({
          node,
          table,
          message: `${node} on ${table} (${size.toLocaleString("en")} rows): no index serves this read`,
        });
      }
    } else if ((type === "Sort" || type === "Incremental Sort") && allow.sort === undefined) {
      const table = tableBelow(n);
      const key = n["Sort Key"]?.join(", ") ?? "?";
      problems.push({
        node: type,
        table,
        message: `${type} by ${key} over ${table ?? "no table"}: the order should come from an index (or declare why a Sort is expected)`,
      });
    }
  }
  return problems;
}

/*
 * Staleness of docs/sql.md: the section regenerated now against the one in the file. What a DBA
 * reads it for is which table each hot query reads, and through which index; that is what is
 * compared. The rest of a plan is the planner's pick among equal ways, and it changes between two
 * runs on the same code: ANALYZE reads a random sample of the large tables, and the seed sits
 * relative to the clock (the cost rollups' days), so an Index Scan and a Bitmap Heap Scan of the
 * same index, one join method or order and another, trade places at the margin (CI saw
 * chat_cost_daily_owner_idx read both ways a day apart).
 */

const uuid = /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/g;
const timestamp =
  /\b\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}(?::\d{2})?|Z)?)?/g;
/** A number (with its unit: 25kB) that is not part of a name (chats_100_idx, $1, t17). */
const number = /(?<![\w$])\d+(?:[.,]\d+)*(?:kB|MB|GB|ms)?(?!\w)/g;

function mask(line: string): string {
  return line.replace(uuid, "<uuid>").replace(timestamp, "<time>").replace(number, "N").trimEnd();
}

/** A plain, index-only, backward or parallel index scan: the index and its table. */
const indexScan = /(?:Parallel )?Index (?:Only )?Scan(?: Backward)? using (\S+) on (\S+)/;
const bitmapHeapScan = /Bitmap Heap Scan on (\S+)/;
const bitmapIndexScan = /Bitmap Index Scan on (\S+)/;
const seqScan = /(?:Parallel )?Seq Scan on (\S+)/;
const tidScan = /Tid (?:Range )?Scan on (\S+)/;

/**
 * The reads of one text plan: a sorted line per table and way in ("api_keys through
 * api_keys_pkey", "chat_model_configs read whole"), the same whichever scan node the planner took.
 */
export function planReads(plan: string): string[] {
  const reads = new Set<string>();
  // A Bitmap Index Scan names only its index; its table is the Bitmap Heap Scan above it, the
  // last one printed (a bitmap heap scan's subtree holds only bitmap nodes).
  let bitmapTable = "?";
  for (const line of plan.split("\n")) {
    const index = indexScan.exec(line);
    const heap = bitmapHeapScan.exec(line);
    const bitmap = bitmapIndexScan.exec(line);
    const whole = seqScan.exec(line);
    const tid = tidScan.exec(line);
    if (index) reads.add(`${index[2]} through ${index[1]}`);
    else if (heap) bitmapTable = heap[1]!;
    else if (bitmap) reads.add(`${bitmapTable} through ${bitmap[1]}`);
    else if (whole) reads.add(`${whole[1]} read whole`);
    else if (tid) reads.add(`${tid[1]} by tuple id`);
  }
  return [...reads].sort();
}

/**
 * The statement auto_explain names above a plan from inside a function ("Query Text: ..." up to
 * its parameters or its first plan node), masked: a function's statement rewritten is stale too.
 */
function queryText(plan: string[]): string[] {
  if (!plan[0]?.startsWith("Query Text:")) return [];
  const end = plan.findIndex((l) => l.startsWith("Query Parameters:") || l.includes("(cost="));
  return plan
    .slice(0, end < 0 ? plan.length : end)
    .map(mask)
    .filter((l) => l.trim() !== "");
}

/**
 * A Plans section as the staleness check compares it: the headings (the query list) as written,
 * the prose with ids, times and numbers masked, and each plan (fenced block) as the statement
 * auto_explain names (queryText) and its reads (planReads).
 */
export function normalizePlans(section: string): string {
  let plan: string[] | undefined;
  const out: string[] = [];
  for (const line of section.split("\n")) {
    if (line.startsWith("```")) {
      if (plan === undefined) {
        plan = [];
      } else {
        out.push("```", ...queryText(plan), ...planReads(plan.join("\n")), "```");
        plan = undefined;
      }
    } else if (plan !== undefined) {
      plan.push(line);
    } else {
      // The prose says what was seeded, and some of it moves with the clock (the cost rollup's days).
      out.push(line.startsWith("#") ? line.trimEnd() : mask(line));
    }
  }
  if (plan !== undefined) throw new Error("a plan's fenced block is not closed");
  return out.join("\n").trim();
}

/**
 * A unified diff of the normalized sections, or "" when they agree (GNU diff, which git needs
 * anyway, prints it).
 */
export function plansDiff(inFile: string, regenerated: string): string {
  const a = normalizePlans(inFile);
  const b = normalizePlans(regenerated);
  if (a === b) return "";
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pgchatd-plans-"));
  try {
    fs.writeFileSync(path.join(dir, "a"), `${a}\n`);
    fs.writeFileSync(path.join(dir, "b"), `${b}\n`);
    const r = spawnSync(
      "diff",
      ["-u", "--label", "docs/sql.md", "--label", "regenerated", "a", "b"],
      { cwd: dir, encoding: "utf8" },
    );
    if (r.status !== 1) throw new Error(`diff failed: ${r.error?.message ?? r.stderr}`);
    return r.stdout;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
