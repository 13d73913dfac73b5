import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient } from "../../src/db/pool.ts";
import {
  largeTableRows,
  nestedPlans,
  nestedPlanTrees,
  type PlanAllowances,
  type PlanNode,
  planProblems,
  plansDiff,
  seqScannedTables,
  tableRows,
} from "../../support/plans.ts";
import { testDb } from "../setup/db.ts";

/*
 * The check of `npm run explain -- --check` (docs/sql.md, "Plans of the hot queries") on real
 * plans: a table just large enough to count as large, and the plans PostgreSQL makes for it with
 * and without its indexes.
 */

let client: pg.Client;
const probeRows = largeTableRows * 2;

beforeAll(async () => {
  client = await connectClient((await testDb()).url, "pgchatd-test-plans");
  await client.query(`
    CREATE TABLE plan_probe (id bigint PRIMARY KEY, owner int NOT NULL, created_at timestamptz NOT NULL, note text NOT NULL);
    INSERT INTO plan_probe
      SELECT g, g % 200, timestamptz '2026-01-01' + g * interval '1 minute', 'n' || g
      FROM generate_series(1, ${probeRows}) g;
    CREATE INDEX plan_probe_owner_idx ON plan_probe (owner, created_at);
    CREATE TABLE plan_config (id int PRIMARY KEY, name text NOT NULL);
    INSERT INTO plan_config SELECT g, 'c' || g FROM generate_series(1, 20) g;
    ANALYZE plan_probe, plan_config;
    CREATE FUNCTION plan_probe_count(p_note text) RETURNS bigint LANGUAGE plpgsql AS $$
    BEGIN
      RETURN (SELECT count(*) FROM plan_probe WHERE note = p_note);
    END $$;
  `);
});

afterAll(async () => {
  await client?.end();
});

async function explain(sql: string): Promise<PlanNode> {
  const { rows } = await client.query(`EXPLAIN (FORMAT JSON) ${sql}`);
  return (rows[0]["QUERY PLAN"] as { Plan: PlanNode }[])[0]!.Plan;
}

/** The check's findings on the plan of `sql`, with the tables' real sizes. */
async function problemsOf(sql: string, allow?: PlanAllowances) {
  const plan = await explain(sql);
  return planProblems(plan, await tableRows(client, seqScannedTables(plan)), allow);
}

/** Runs `fn` with `sql` applied in a transaction that is rolled back afterwards. */
async function rolledBack<T>(sql: string, fn: () => Promise<T>): Promise<T> {
  await client.query("BEGIN");
  try {
    await client.query(sql);
    return await fn();
  } finally {
    await client.query("ROLLBACK");
  }
}

describe("planProblems", () => {
  const byOwner = "SELECT * FROM plan_probe WHERE owner = 7 ORDER BY created_at LIMIT 20";

  it("passes a read that an index serves in order", async () => {
    expect(await problemsOf(byOwner)).toEqual([]);
  });

  it("reports the Seq Scan of a large table once the index that served the read is dropped", async () => {
    const problems = await rolledBack("DROP INDEX plan_probe_owner_idx", () =>
      problemsOf("SELECT * FROM plan_probe WHERE owner = 7"),
    );
    expect(problems).toEqual([
      expect.objectContaining({
        node: "Seq Scan",
        table: "plan_probe",
        message: expect.stringContaining(
          `Seq Scan on plan_probe (${probeRows.toLocaleString("en")} rows)`,
        ),
      }),
    ]);
  });

  it("reports a filter on a column no index covers as a Seq Scan, unless the table is allowed with a reason", async () => {
    const sql = "SELECT * FROM plan_probe WHERE note = 'n42'";
    expect((await problemsOf(sql)).map((p) => [p.node, p.table])).toEqual([
      ["Seq Scan", "plan_probe"],
    ]);
    expect(await problemsOf(sql, { seqScan: { plan_probe: "a one-off report" } })).toEqual([]);
  });

  it("lets a small table be read whole", async () => {
    const plan = await explain("SELECT * FROM plan_config WHERE name = 'c3'");
    expect(seqScannedTables(plan)).toEqual(["plan_config"]);
    expect(planProblems(plan, await tableRows(client, ["plan_config"]))).toEqual([]);
  });

  it("reports the Sort of an ORDER BY that no index gives, unless the query declares why it is expected", async () => {
    const sql = "SELECT * FROM plan_probe WHERE owner = 7 ORDER BY note LIMIT 20";
    const problems = await problemsOf(sql);
    expect(problems).toEqual([
      expect.objectContaining({
        node: expect.stringMatching(/^(Incremental )?Sort$/),
        table: "plan_probe",
        message: expect.stringContaining("note"),
      }),
    ]);
    expect(await problemsOf(sql, { sort: "an owner's 100 rows, sorted by note" })).toEqual([]);
  });

  it("reports a Sort the planner makes once the index order is unavailable", async () => {
    const problems = await rolledBack("SET LOCAL enable_indexscan = off", () =>
      problemsOf(byOwner),
    );
    expect(problems.map((p) => p.node)).toContain("Sort");
  });

  it("checks the statements inside a function, as auto_explain reports them in JSON", async () => {
    const statements = await nestedPlanTrees(client, "SELECT plan_probe_count($1)", ["n42"]);
    const inner = statements.find((s) => s.text.includes("FROM plan_probe WHERE note"));
    expect(inner?.text).toContain("Seq Scan on plan_probe");
    const problems = planProblems(
      inner!.plan,
      await tableRows(client, seqScannedTables(inner!.plan)),
    );
    expect(problems.map((p) => [p.node, p.table])).toEqual([["Seq Scan", "plan_probe"]]);
  });
});

describe("plansDiff", () => {
  /** A Plans section as scripts/explain.ts writes it, with the EXPLAIN (ANALYZE, BUFFERS) of `sql`. */
  async function section(sql: string): Promise<string> {
    const { rows } = await client.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`);
    const plan = rows.map((r) => r["QUERY PLAN"]).join("\n");
    return ["#### ByOwner", "", "Hot because: a test.", "", "```", plan, "```", ""].join("\n");
  }
  const sql = "SELECT * FROM plan_probe WHERE owner = 7 ORDER BY created_at LIMIT 20";

  it("ignores timings, costs, buffers and row counts that change from run to run", async () => {
    const first = await section(sql);
    // Another run as a slower machine with a cold cache would print it: every number changed,
    // and the buffer lines (which come and go: "Planning:" has one only when planning read a
    // page) gone.
    const second = (await section(sql))
      .replace(/actual time=[\d.]+\.\.[\d.]+/g, "actual time=12.345..67.890")
      .replace(/cost=[\d.]+\.\.[\d.]+/g, "cost=1.00..99.99")
      .replace(/^ *(Buffers|Planning):.*\n/gm, "")
      .replace(/Execution Time: [\d.]+ ms/, "Execution Time: 123.456 ms");
    expect(first).toMatch(/^ *Buffers: shared hit=\d+/m);
    expect(second).not.toEqual(first);
    expect(plansDiff(first, second)).toBe("");
  });

  it("reports a table read through another index, or read whole, as a unified diff", async () => {
    const before = await section(sql);
    const after = await rolledBack("DROP INDEX plan_probe_owner_idx", () => section(sql));
    const diff = plansDiff(before, after);
    expect(diff).toMatch(/^--- docs\/sql\.md\n\+\+\+ regenerated\n@@ /);
    expect(diff).toMatch(/^-plan_probe through plan_probe_owner_idx$/m);
    expect(diff).toMatch(/^\+plan_probe read whole$/m);
  });

  it("counts an index scan and a bitmap scan of the same index as the same read", async () => {
    const index = await rolledBack("SET LOCAL enable_bitmapscan = off", () => section(sql));
    const bitmap = await rolledBack("SET LOCAL enable_indexscan = off", () => section(sql));
    expect(index).toMatch(/Index Scan using plan_probe_owner_idx on plan_probe/);
    expect(bitmap).toMatch(/Bitmap Index Scan on plan_probe_owner_idx/);
    expect(plansDiff(index, bitmap)).toBe("");
  });

  it("reports a statement rewritten inside a function", async () => {
    const nested = async (body: string) => {
      await client.query(
        `CREATE OR REPLACE FUNCTION plan_probe_rewritten(p_note text) RETURNS bigint
         LANGUAGE plpgsql AS $$ BEGIN RETURN (${body}); END $$`,
      );
      const [statement] = await nestedPlans(client, "SELECT plan_probe_rewritten('n7')");
      return ["#### plan_probe_rewritten", "", "```", statement, "```", ""].join("\n");
    };
    const before = await nested("SELECT count(*) FROM plan_probe WHERE note = p_note");
    const after = await nested("SELECT count(*) FROM plan_probe WHERE note = p_note AND owner > 0");
    expect(before).toMatch(/^Query Text: \(SELECT count/m);
    expect(plansDiff(before, after)).toMatch(/^\+Query Text: .*AND owner > N\)?$/m);
  });

  it("reports a query added to or gone from the list", async () => {
    const one = await section(sql);
    const two = `${one}\n${(await section(sql)).replace("#### ByOwner", "#### ByOwner: second page")}`;
    expect(plansDiff(one, two)).toContain("+#### ByOwner: second page");
  });
});
