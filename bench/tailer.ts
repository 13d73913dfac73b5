/*
 * How often the tailer reads the log per commit, and how many of those reads find nothing
 * (docs/operations.md "Change events"). One server-side Watch with one subscriber, commits made
 * the way a request makes them: a write, then the app's poke once it has answered; in trigger
 * mode the commit's NOTIFY arrives as well. Prints numbers; never passes or fails.
 *
 *   npm run bench -- tailer           200 commits, 25 ms apart
 */
import { migrate } from "../src/db/migrate.ts";
import { createPool } from "../src/db/pool.ts";
import { createLogger } from "../src/log.ts";
import { startWatch } from "../src/watch/index.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { seedOwner } from "../support/seed_chats.ts";
import { describeMachine, table } from "./measure.ts";

const sleep = (msec: number) => new Promise((r) => setTimeout(r, msec));

export async function benchTailer(commitsArg?: string) {
  const commits = commitsArg ? Number(commitsArg) : 200;
  console.log(describeMachine());
  await withScratchDatabase("pgchatd_bench_tailer", async (url, where) => {
    console.log(`database: ${where}`);
    await migrate(url);
    const pool = createPool({ connectionString: url, max: 4 });
    try {
      const { org, owner } = await seedOwner(pool);
      const { rows } = await pool.query<{ id: string }>(
        `SELECT chat_create($1, $2, NULL, NULL, NULL, 'api', NULL, NULL, '{}', NULL, NULL,
           '[{"type": "text", "text": "hi"}]', NULL) AS id`,
        [owner, org],
      );
      const chatId = rows[0]!.id;
      const out: string[][] = [];
      for (const pokes of [true, false]) {
        const watch = await startWatch({
          url,
          pool,
          logger: createLogger("silent"),
          mode: "trigger",
        });
        const sub = watch.hub.subscribeWatch(owner);
        await watch.beforeSubscribe();
        await sleep(200);
        const before = { ...watch.tailer.reads };
        for (let i = 0; i < commits; i++) {
          await pool.query("UPDATE chats SET title = $2 WHERE id = $1", [chatId, `t${i}`]);
          if (pokes) watch.poke();
          await sleep(25);
        }
        // Past the last retry of the horizon ladder (5 + 20 + 80 + 250 ms).
        await sleep(1_000);
        const reads = watch.tailer.reads.total - before.total;
        const empty = watch.tailer.reads.empty - before.empty;
        out.push([
          pokes ? "write, poke, NOTIFY (a request)" : "write, NOTIFY (another process)",
          String(commits),
          (reads / commits).toFixed(2),
          (empty / commits).toFixed(2),
        ]);
        sub.close("client");
        await watch.close();
      }
      console.log(
        `\n${table([["commits made by", "commits", "reads / commit", "empty reads / commit"], ...out])}`,
      );
    } finally {
      await pool.end();
    }
  });
}
