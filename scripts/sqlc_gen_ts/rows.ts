import type pg from "pg";
import { as, list, names, obj, walk } from "./ast.ts";

/*
 * Whether a `:one` query always returns exactly one row, so its function can return the row
 * rather than `Row | null`:
 * - a plain SELECT with no FROM (`SELECT chat_create(...) AS id`), or FROM only functions that
 *   return a single row (`FROM workspace_agent_context_push(...) AS p`), with no WHERE, GROUP BY,
 *   HAVING, LIMIT, OFFSET, WITH or set operation, and no set-returning function anywhere in it;
 * - an INSERT of one VALUES row with RETURNING, and no ON CONFLICT other than an unconditional
 *   DO UPDATE (DO NOTHING, or DO UPDATE ... WHERE, may return no row).
 * Anything else may return no row, and keeps `| null`.
 */

/** Names of the functions `stmt` calls in its target list and FROM, schema stripped. */
function calledFunctions(node: unknown): string[] {
  const out: string[] = [];
  for (const o of walk(node)) {
    const call = as(o, "FuncCall");
    if (call) {
      const n = names(call.funcname);
      if (n.length > 0) out.push(n[n.length - 1]!);
    }
  }
  return out;
}

function insertsOneRow(insert: Record<string, unknown>): boolean {
  // PostgreSQL 18's parser wraps RETURNING in returningClause; older ones had returningList.
  const returning = list(obj(insert.returningClause)?.exprs ?? insert.returningList);
  if (returning.length === 0 || insert.withClause !== undefined) return false;
  const values = as(insert.selectStmt, "SelectStmt");
  if (!values || list(values.valuesLists).length !== 1) return false;
  const conflict = obj(insert.onConflictClause);
  if (!conflict) return true;
  return conflict.action === "ONCONFLICT_UPDATE" && conflict.whereClause === undefined;
}

export async function alwaysOneRow(client: pg.ClientBase, stmt: unknown): Promise<boolean> {
  const insert = as(stmt, "InsertStmt");
  if (insert) {
    if (!insertsOneRow(insert)) return false;
    return !(await callsSetReturning(client, insert));
  }
  const select = as(stmt, "SelectStmt");
  if (!select) return false;
  const op = select.op;
  if (op !== undefined && op !== "SETOP_NONE") return false;
  for (const clause of [
    "whereClause",
    "groupClause",
    "havingClause",
    "limitCount",
    "limitOffset",
    "withClause",
    "valuesLists",
    "distinctClause",
  ]) {
    if (select[clause] !== undefined) return false;
  }
  for (const item of list(select.fromClause)) {
    if (!as(item, "RangeFunction")) return false;
    // RangeFunction.functions is a list of lists [FuncCall, column definitions]; one function.
    const fns = list(obj(as(item, "RangeFunction"))?.functions);
    if (fns.length !== 1) return false;
  }
  return !(await callsSetReturning(client, [select.targetList, select.fromClause]));
}

/** Whether `node` calls a function any overload of whose name returns a set (unnest, ...). */
async function callsSetReturning(client: pg.ClientBase, node: unknown): Promise<boolean> {
  const called = [...new Set(calledFunctions(node))];
  if (called.length === 0) return false;
  const { rows } = await client.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_proc WHERE proname = ANY ($1) AND proretset",
    [called],
  );
  return rows[0]!.n > 0;
}
