/*
 * Workspace context pushes (docs/api.md PUT /workspaceagents/me/context) to an agent with many
 * bound chats. Prints numbers; never passes or fails.
 *
 *   npm run bench -- context            10, 100 and 1,000 bound chats
 *   npm run bench -- context 10000      ... and 10,000
 *
 * Database: a scratch database on DATABASE_URL's server when set, else an embedded cluster in a
 * temporary directory; removed afterwards.
 *
 * For each size N: one agent with a snapshot of 3 resources (an instruction file, a skill, an MCP
 * config), N chats bound to it and pinned to that snapshot (created through chat_create, which
 * hydrates them). A push of changed content marks all N dirty; its time is taken over 5 pushes
 * (the chats are made clean again between them, outside the timing), p50 and max, next to a push
 * of identical content (marks nothing). The statements the push runs inside the database are
 * counted with auto_explain (log_nested_statements, which slows those runs): the marking must be
 * one set-based UPDATE whatever N is; what runs per chat is the chats row triggers it fires and
 * the function that lists a chat's changed sources. The plan of that UPDATE for the largest N is
 * printed.
 */
import type pg from "pg";
import { migrate } from "../src/db/migrate.ts";
import { connectClient } from "../src/db/pool.ts";
import { pushWorkspaceAgentContext } from "../src/generated/chat_context.ts";
import { nestedPlans } from "../support/plans.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { describeMachine, int, ms, table } from "./measure.ts";
import { percentile } from "./stats.ts";

const runs = 5;

function resources(version: string) {
  return [
    {
      source: "AGENTS.md",
      kind: "instruction_file",
      body: `Project rules, version ${version}.\n`.repeat(40),
    },
    { source: "skills/release/SKILL.md", kind: "skill", body: `How to release (${version}).` },
    { source: ".mcp.json", kind: "mcp_config", body: '{"servers": {}}' },
  ];
}

async function seedAgent(client: pg.Client, n: number, size: number) {
  const q = async <T extends pg.QueryResultRow>(sql: string, values: unknown[] = []) =>
    (await client.query<T>(sql, values)).rows[0]!;
  const org = await q<{ id: string }>("INSERT INTO organizations (name) VALUES ($1) RETURNING id", [
    `context-bench-${size}`,
  ]);
  const user = await q<{ id: string }>(
    "INSERT INTO users (username, name) VALUES ($1, $1) RETURNING id",
    [`context-bench-${size}`],
  );
  await client.query(
    "INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)",
    [org.id, user.id],
  );
  const ws = await q<{ id: string }>(
    "INSERT INTO workspaces (organization_id, owner_id, name, latest_build_number) VALUES ($1, $2, 'ws', 1) RETURNING id",
    [org.id, user.id],
  );
  const build = await q<{ id: string }>(
    "INSERT INTO workspace_builds (workspace_id, build_number) VALUES ($1, 1) RETURNING id",
    [ws.id],
  );
  const agent = await q<{ id: string }>(
    `INSERT INTO workspace_agents (build_id, name, ordinal, token_id, hashed_token)
     VALUES ($1, 'main', 0, substr(md5($2), 1, 10), sha256(convert_to($2, 'UTF8'))) RETURNING id`,
    [build.id, build.id],
  );
  await pushWorkspaceAgentContext(client, {
    agent_id: agent.id,
    resources: resources("0"),
    error: null,
  });
  for (let i = 0; i < n; i++) {
    await client.query(
      `SELECT chat_create($1, $2, $3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         '[{"type": "text", "text": "hello"}]'::jsonb, NULL)`,
      [user.id, org.id, ws.id],
    );
  }
  await client.query("ANALYZE chats; ANALYZE chat_context_resources");
  return agent.id;
}

/** Makes every chat of the agent clean and pinned to something older, outside any timing. */
async function dirtyable(client: pg.Client, agentId: string) {
  await client.query(
    `UPDATE chats SET context_dirty_since = NULL, context_dirty_resources = NULL
     WHERE agent_id = $1`,
    [agentId],
  );
}

/** The statements a push runs inside the database, as auto_explain reports them. */
async function nestedStatements(client: pg.Client, agentId: string, version: string) {
  const plans = await nestedPlans(
    client,
    "SELECT * FROM workspace_agent_context_push($1, $2::jsonb, NULL)",
    [agentId, JSON.stringify(resources(version))],
  );
  // The top-level statement (the push itself) is reported too; the rest ran inside it.
  const inside = plans.filter((n) => !n.includes("workspace_agent_context_push("));
  const marking = inside.find((n) => /UPDATE chats c\s+SET context_dirty_since/.test(n));
  const byStatement = new Map<string, number>();
  for (const n of inside) {
    const text = /Query Text:\s*(\S[^\n]*)/.exec(n)?.[1] ?? n;
    const first = text.trim().slice(0, 90);
    byStatement.set(first, (byStatement.get(first) ?? 0) + 1);
  }
  return { count: inside.length, marking, byStatement };
}

export async function benchContext(extraArg?: string) {
  const sizes = [10, 100, 1_000, ...(extraArg ? [Number(extraArg)] : [])];
  console.log(describeMachine());
  await withScratchDatabase("pgchatd_bench_context", async (url, where) => {
    console.log(`database: ${where}`);
    await migrate(url);
    const client = await connectClient(url, "pgchatd-bench-context");
    try {
      const rows: string[][] = [];
      let lastPlan: string | undefined;
      let lastStatements = new Map<string, number>();
      for (const n of sizes) {
        const agentId = await seedAgent(client, n, n);
        const times: number[] = [];
        let marked = 0;
        for (let i = 1; i <= runs; i++) {
          await dirtyable(client, agentId);
          const t = performance.now();
          const r = await pushWorkspaceAgentContext(client, {
            agent_id: agentId,
            resources: resources(String(i)),
            error: null,
          });
          times.push(performance.now() - t);
          marked = r!.marked_dirty ?? 0;
        }
        const same: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t = performance.now();
          await pushWorkspaceAgentContext(client, {
            agent_id: agentId,
            resources: resources(String(runs)),
            error: null,
          });
          same.push(performance.now() - t);
        }
        await dirtyable(client, agentId);
        const nested = await nestedStatements(client, agentId, "explained");
        lastPlan = nested.marking;
        lastStatements = nested.byStatement;
        rows.push([
          int(n),
          int(marked),
          `${ms(percentile(times, 50))} / ${ms(Math.max(...times))} ms`,
          `${ms((percentile(times, 50) * 1000) / Math.max(1, n))} µs`,
          `${ms(percentile(same, 50))} ms`,
          String(
            [...nested.byStatement]
              .filter(([text]) => text.includes("WITH compared AS"))
              .reduce((sum, [, runs]) => sum + runs, 0),
          ),
          int(nested.count),
        ]);
      }
      console.log(
        `\nA push of changed content to an agent with N bound, pinned chats (${runs} pushes each):\n`,
      );
      console.log(
        table([
          [
            "chats N",
            "marked dirty",
            "push p50 / max",
            "per chat",
            "identical push p50",
            "marking statements",
            "all statements inside",
          ],
          ...rows,
        ]),
      );
      console.log(
        `\nThe statements inside one push for ${int(sizes.at(-1)!)} chats (auto_explain): the push's ` +
          "own run once each; per marked chat run the chats row triggers that the one marking " +
          "UPDATE fires (change events) and the listing of the chat's changed sources:\n",
      );
      console.log(
        table([
          ["statement (first line)", "runs"],
          ...[...lastStatements].sort((a, b) => a[1] - b[1]).map(([q, c]) => [q, int(c)]),
        ]),
      );
      if (lastPlan) {
        console.log(
          `\nThe marking statement for ${int(sizes.at(-1)!)} chats (auto_explain, inside the push):\n`,
        );
        console.log(lastPlan);
      }
    } finally {
      await client.end();
    }
  });
}
