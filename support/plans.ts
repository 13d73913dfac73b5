import type pg from "pg";

/*
 * Reading query plans, for the benchmarks and for the plans of docs/sql.md (scripts/explain.ts).
 */

/** A node of EXPLAIN (FORMAT JSON) output: the fields the benchmarks and docs/sql.md read. */
export interface PlanNode {
  "Node Type": string;
  Strategy?: string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Function Name"?: string;
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
      SET LOCAL auto_explain.log_triggers = on;
      SET LOCAL auto_explain.log_level = notice; SET LOCAL client_min_messages = notice`);
    await client.query(sql, values);
  } finally {
    await client.query("ROLLBACK");
    client.off("notice", onNotice);
  }
  return notices.map((n) => n.replace(/^duration: [\d.]+ ms\s+plan:\n/, ""));
}
