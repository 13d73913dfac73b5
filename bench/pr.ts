/*
 * The pull-request status refresher (docs/operations.md "Pull-request status") under load. Prints
 * numbers; never passes or fails.
 *
 *   npm run bench -- pr              10,000 stale references, 1 then 2 runner processes
 *   npm run bench -- pr 20000        20,000
 *
 * Database: a scratch database on DATABASE_URL's server when set, else an embedded cluster in a
 * temporary directory; removed afterwards. The forge: support/fake_forge.ts on loopback in this
 * process, a pull request for every branch (each refresh asks it 3 things: the branch's pull
 * requests, the pull request, its reviews), answering at once: what is measured is pgchatd's
 * own cost, not a forge's latency.
 *
 * N chats over 100 owners, each with a reference (branch and remote) that is fresh. Then, for 1 and
 * for 2 `pgchatd runner` processes (`node bin/pgchatd.js runner`, default settings, its refresher
 * polling every 5 s) started on the database, twice: once with a new pull request for every branch
 * (each refresh stores it: an event, which also wakes the runners' claim of pending chats), once
 * with the same ones (nothing to store but the times). Every reference is made stale in one
 * statement, and the run ends when all N are refreshed. rows/s = (N − 1) / (last refreshed_at − first
 * refreshed_at), on the database's clock (each refresh's transaction start), so the poll interval
 * before the first claim is not counted. Transactions per row: pg_stat_database.xact_commit over the
 * run, read after the processes exit (which flushes their counters); each of the refresher's
 * statements is a transaction of its own, and the runners' own idle polling is included. Also
 * printed: the claim's plan with N stale references, as auto_explain reports it from inside
 * chat_diff_statuses_claim.
 */
import { migrate } from "../src/db/migrate.ts";
import { connectClient } from "../src/db/pool.ts";
import { refreshBatchSize, refreshConcurrency } from "../src/jobs/chat_diff_statuses.ts";
import { fakeForge } from "../support/fake_forge.ts";
import { nestedPlans } from "../support/plans.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { defaultModelConfigId } from "../support/seed_chats.ts";
import { spawnPgchatd } from "../support/spawn.ts";
import { describeMachine, int, ms, table } from "./measure.ts";

const owners = 100;
const repos = 50;

const sleep = (msec: number) => new Promise((r) => setTimeout(r, msec));

export async function benchPr(referencesArg?: string) {
  const n = referencesArg ? Number(referencesArg) : 10_000;
  if (!(n >= 100)) throw new Error("usage: npm run bench -- pr [references ≥ 100]");
  const forge = await fakeForge();
  try {
    await withScratchDatabase("pgchatd_bench_pr", async (url, where) => {
      await migrate(url);
      const client = await connectClient(url, "pgchatd-bench-pr");
      try {
        const model = await defaultModelConfigId(client);
        const t0 = performance.now();
        await client.query(
          `WITH o AS (INSERT INTO organizations (name) VALUES ('pr-bench') RETURNING id),
             u AS (INSERT INTO users (username, name)
                   SELECT 'pr-' || g, 'PR ' || g FROM generate_series(1, ${owners}) g RETURNING id)
           INSERT INTO organization_members (organization_id, user_id) SELECT o.id, u.id FROM o, u`,
        );
        await client.query(
          `INSERT INTO chats (owner_id, organization_id, last_model_config_id, title)
           SELECT u.id, m.organization_id, $1, 'chat ' || g
           FROM generate_series(1, $2::int) g
           JOIN LATERAL (SELECT id FROM users WHERE username = 'pr-' || (1 + g % ${owners})) u ON true
           JOIN organization_members m ON m.user_id = u.id`,
          [model, n],
        );
        await client.query(
          `INSERT INTO chat_diff_statuses (chat_id, git_branch, git_remote_origin, stale_at,
             updated_at)
           SELECT c.id, 'feature/' || c.n, 'git@github.com:acme/repo' || (1 + c.n % ${repos}) || '.git',
             now() + interval '1 day', now() - interval '10 minutes'
           FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM chats) c`,
        );
        await client.query("VACUUM (ANALYZE) chats, chat_diff_statuses");
        const { rows: refs } = await client.query<{ branch: string; remote: string }>(
          "SELECT git_branch AS branch, git_remote_origin AS remote FROM chat_diff_statuses",
        );
        forge.pulls = refs.map((r, i) => ({
          owner: "acme",
          repo: /repo\d+/.exec(r.remote)![0],
          branch: r.branch,
          number: i + 1,
          additions: i % 500,
          deletions: i % 70,
          changed_files: 1 + (i % 20),
          reviews: i % 3 === 0 ? [{ user: 1, state: "CHANGES_REQUESTED" }] : [],
        }));
        console.log(
          `pull-request refresher: ${int(n)} references over ${owners} owners and ${repos} repositories, ` +
            `seeded in ${ms((performance.now() - t0) / 1000)} s; ${where}; ${describeMachine()}`,
        );
        console.log(
          `each process: batches of ${refreshBatchSize}, ${refreshConcurrency} forge requests at once; ` +
            "the fake forge answers at once\n",
        );

        await client.query("UPDATE chat_diff_statuses SET stale_at = now() - interval '1 second'");
        await client.query("ANALYZE chat_diff_statuses");
        const claimPlan = (
          await nestedPlans(client, "SELECT * FROM chat_diff_statuses_claim($1)", [
            refreshBatchSize,
          ])
        ).filter((p) => p.includes("SKIP LOCKED"));
        await client.query("UPDATE chat_diff_statuses SET stale_at = now() + interval '1 day'");

        const rows: string[][] = [
          [
            "runner processes",
            "pull requests",
            "rows/s",
            "run (s)",
            "forge requests/row",
            "transactions/row",
          ],
        ];
        const runs = [1, 2].flatMap((processes) =>
          (["new", "unchanged"] as const).map((prs) => ({ processes, prs })),
        );
        for (const [i, { processes, prs }] of runs.entries()) {
          // "new": every refresh stores another pull request (an event each); "unchanged": the
          // forge answers what is stored already (no event).
          if (prs === "new") for (const p of forge.pulls) p.number += refs.length * (i + 1);
          await client.query(
            "UPDATE chat_diff_statuses SET refreshed_at = NULL, stale_at = now() + interval '1 day'",
          );
          const runners = await Promise.all(
            Array.from({ length: processes }, () =>
              spawnPgchatd("runner", {
                env: {
                  ...process.env,
                  DATABASE_URL: url,
                  LOG_LEVEL: "warn",
                  PGCHATD_GITHUB_API_URL: forge.url,
                  PGCHATD_GITHUB_HOST: "github.com",
                  PGCHATD_GITHUB_TOKEN: "bench",
                },
              }),
            ),
          );
          forge.requests = [];
          const xacts = async () =>
            Number(
              (
                await client.query<{ n: string }>(
                  "SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()",
                )
              ).rows[0]!.n,
            );
          const before = await xacts();
          await client.query(
            "UPDATE chat_diff_statuses SET stale_at = now() - interval '1 second'",
          );
          for (;;) {
            const { rows: done } = await client.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM chat_diff_statuses WHERE refreshed_at IS NOT NULL",
            );
            if (done[0]!.n >= n) break;
            await sleep(200);
          }
          await Promise.all(runners.map((r) => r.stop(10_000)));
          await sleep(1_000);
          const after = await xacts();
          const { rows: span } = await client.query<{ s: number }>(
            "SELECT extract(epoch FROM max(refreshed_at) - min(refreshed_at))::float8 AS s FROM chat_diff_statuses",
          );
          const seconds = span[0]!.s;
          rows.push([
            String(processes),
            prs,
            int((n - 1) / seconds),
            ms(seconds),
            (forge.requests.length / n).toFixed(2),
            ((after - before) / n).toFixed(2),
          ]);
        }
        console.log(table(rows));
        console.log(
          `\nchat_diff_statuses_claim(${refreshBatchSize}) with ${int(n)} stale references:`,
        );
        for (const p of claimPlan) console.log(p.trim());
      } finally {
        await client.end();
      }
    });
  } finally {
    await forge.close();
  }
}
