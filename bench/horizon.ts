/*
 * Open transactions and the change-event read horizon (docs/operations.md "Long transactions").
 * Prints numbers; never passes or fails.
 *
 *   npm run bench -- horizon
 *
 * Database: a scratch database on DATABASE_URL's server when set, else an embedded cluster in a
 * temporary directory; removed afterwards. A second scratch database on the same server plays
 * "another application's database".
 *
 * Part 1, delivery while a transaction is open. A Watch (src/watch, as a server runs it) with one
 * watch subscriber; a writer commits 40 title updates at 20/s; latency is from the writer's COMMIT
 * acknowledgement to the frame reaching the subscriber's queue, p50 / max. Three situations:
 *   quiet:            nothing else open;
 *   other database:   a write transaction open in the other database all along (it holds the
 *                     cluster-wide xmin the tailer used to read below);
 *   this database:    a write transaction open in this database for the first 2 s (events wait
 *                     for it: the no-loss rule), then committed.
 * Printed with what the tailer reported meanwhile (held back, the blocker's application).
 *
 * Part 2, what a read costs. 2,000 sequential tailer reads (ListChatEventsAfterCursor at the head)
 * with the cheap horizon (the snapshot's xmin) and with chat_events_horizon(), which looks past
 * other databases' transactions and reads pg_stat_get_activity to place them, while the other
 * database's transaction is open; and the once-a-second GetChatEventHorizonStatus.
 *
 * Part 3, what delivering past this database's open transactions would take. 8 connections commit
 * title updates as fast as they can for 5 s while a sampler reads, every 2 ms, how many
 * transactions of this database are in progress below the newest committed one (the xids a
 * resume cursor would have to list if the tailer handed out events committed after them):
 * p50 / p99 / max, and the share of samples in which any was.
 */
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { migrate } from "../src/db/migrate.ts";
import { connectClient, createPool } from "../src/db/pool.ts";
import {
  getChatEventHorizonStatus,
  listChatEventsAfterCursor,
} from "../src/generated/chat_events.ts";
import { createLogger } from "../src/log.ts";
import { startWatch } from "../src/watch/index.ts";
import { withScratchDatabase } from "../support/scratch_db.ts";
import { seedOwner } from "../support/seed_chats.ts";
import { describeMachine, table } from "./measure.ts";
import { median, percentile } from "./stats.ts";

const sleep = (msec: number) => new Promise((r) => setTimeout(r, msec));

export async function benchHorizon() {
  console.log(describeMachine());
  await withScratchDatabase("pgchatd_bench_horizon", async (url, where) => {
    console.log(`database: ${where}`);
    await migrate(url);
    const otherUrl = new URL(url);
    otherUrl.pathname = `/pgchatd_bench_other_${randomUUID().slice(0, 8)}`;
    const admin = await connectClient(url);
    await admin.query(`CREATE DATABASE ${otherUrl.pathname.slice(1)}`);
    const pool = createPool({ connectionString: url, max: 12 });
    const logger = createLogger("silent");
    try {
      const { org, owner } = await seedOwner(pool);
      const { rows: chats } = await pool.query<{ id: string }>(
        `SELECT chat_create($1, $2, NULL, NULL, NULL, 'api', NULL, NULL, '{}', NULL, NULL,
           '[{"type": "text", "text": "hi"}]', NULL) AS id FROM generate_series(1, 8)`,
        [owner, org],
      );
      const chatIds = chats.map((c) => c.id);

      // Part 1.
      const watch = await startWatch({
        url,
        pool,
        logger,
        mode: "trigger",
      });
      const rows: string[][] = [];
      try {
        const situations: { name: string; open?: () => Promise<() => Promise<void>> }[] = [
          { name: "quiet" },
          {
            name: "other database, open all along",
            open: async () => {
              const other = await connectClient(otherUrl.toString(), "another-application");
              await other.query("BEGIN");
              await other.query("SELECT pg_current_xact_id()");
              return async () => {
                await other.query("COMMIT");
                await other.end();
              };
            },
          },
          {
            name: "this database, open for the first 2 s",
            open: async () => {
              const here = await connectClient(url, "a-dba-session");
              await here.query("BEGIN");
              await here.query("SELECT pg_current_xact_id()");
              const done = sleep(2_000).then(async () => {
                await here.query("COMMIT");
                await here.end();
              });
              return () => done;
            },
          },
        ];
        for (const s of situations) {
          const sub = watch.hub.subscribeWatch(owner);
          sub.release();
          const arrived = new Map<string, number>();
          const reading = (async () => {
            for (;;) {
              const chunk = await sub.take();
              if (chunk === null) return;
              const now = performance.now();
              // The frame shows the chat as it is when read, so writes are matched by the xid of
              // the event's SSE id "<xid>.<id>" (each UPDATE returned its own).
              for (const m of Buffer.concat(chunk)
                .toString()
                .matchAll(/^id: (\d+)\.\d+$/gm))
                if (!arrived.has(m[1]!)) arrived.set(m[1]!, now);
            }
          })();
          const close = await s.open?.();
          let maxHeld = 0;
          let blocker = "";
          const watching = setInterval(() => {
            maxHeld = Math.max(maxHeld, watch.tailer.horizon.heldBackSeconds);
            blocker ||= watch.tailer.horizon.blocker?.application ?? "";
          }, 50);
          const committed = new Map<string, number>();
          const writes = 40;
          for (let i = 0; i < writes; i++) {
            const { rows: x } = await pool.query<{ xid: string }>(
              "UPDATE chats SET title = $2 WHERE id = $1 RETURNING pg_current_xact_id()::text AS xid",
              [chatIds[i % 8], `t-${i}-${randomUUID().slice(0, 6)}`],
            );
            committed.set(x[0]!.xid, performance.now());
            watch.poke();
            await sleep(50);
          }
          const deadline = Date.now() + 15_000;
          const delivered = () => [...committed.keys()].filter((x) => arrived.has(x)).length;
          while (delivered() < writes && Date.now() < deadline) await sleep(20);
          await close?.();
          clearInterval(watching);
          sub.close("client");
          await reading;
          const latencies = [...committed].flatMap(([xid, at]) =>
            arrived.has(xid) ? [arrived.get(xid)! - at] : [],
          );
          rows.push([
            s.name,
            `${latencies.length}/${writes}`,
            `${median(latencies).toFixed(1)} ms`,
            `${Math.max(...latencies).toFixed(0)} ms`,
            `${maxHeld.toFixed(1)} s`,
            blocker || "-",
          ]);
        }
      } finally {
        await watch.close();
      }
      console.log("\nPart 1: 40 title updates at 20/s to one watch subscriber (commit → queued)");
      console.log(
        table(
          [
            ["open transaction", "delivered", "p50", "max", "held back (max)", "blocker named"],
            ...rows,
          ],
          [0, 5],
        ),
      );

      // Part 2.
      const other = await connectClient(otherUrl.toString(), "another-application");
      await other.query("BEGIN");
      await other.query("SELECT pg_current_xact_id()");
      await pool.query("UPDATE chats SET title = 'advance' WHERE id = $1", [chatIds[0]]);
      const head = (
        await pool.query<{ xid: string; id: number }>(
          "SELECT xid::text, id FROM chat_events ORDER BY xid DESC, id DESC LIMIT 1",
        )
      ).rows[0]!;
      const client = await pool.connect();
      const timeEach = async (n: number, fn: (c: pg.PoolClient) => Promise<unknown>) => {
        const ts: number[] = [];
        for (let i = 0; i < n; i++) {
          const t = performance.now();
          await fn(client);
          ts.push(performance.now() - t);
        }
        return ts;
      };
      const read = (past: boolean) => (c: pg.PoolClient) =>
        listChatEventsAfterCursor(c, {
          after_xid: head.xid,
          after_id: head.id,
          past_other_databases: past,
          page_limit: 1000,
        });
      const costs = [
        ["tailer read, cheap horizon (xmin)", await timeEach(2000, read(false))],
        ["tailer read, chat_events_horizon()", await timeEach(2000, read(true))],
        [
          "GetChatEventHorizonStatus",
          await timeEach(500, (c) =>
            getChatEventHorizonStatus(c, { after_xid: head.xid, after_id: head.id }),
          ),
        ],
      ] as const;
      client.release();
      await other.query("COMMIT");
      await other.end();
      console.log("\nPart 2: statement cost with another database's transaction open (sequential)");
      console.log(
        table(
          [
            ["statement", "p50", "p99"],
            ...costs.map(([name, ts]) => [
              name,
              `${median([...ts]).toFixed(3)} ms`,
              `${percentile([...ts], 99).toFixed(3)} ms`,
            ]),
          ],
          [0],
        ),
      );

      // Part 3.
      let stop = false;
      let commits = 0;
      const writers = Array.from({ length: 8 }, async (_, w) => {
        const c = await connectClient(url, "bench-writer");
        try {
          for (let i = 0; !stop; i++) {
            await c.query("UPDATE chats SET title = $2 WHERE id = $1", [chatIds[w], `w${w}-${i}`]);
            commits++;
          }
        } finally {
          await c.end();
        }
      });
      const sampler = await connectClient(url, "bench-sampler");
      const inProgress: number[] = [];
      const until = Date.now() + 5_000;
      await sleep(200);
      while (Date.now() < until) {
        const { rows: r } = await sampler.query<{ n: number }>(
          `SELECT count(*)::int AS n
           FROM pg_snapshot_xip(pg_current_snapshot()) x
           JOIN pg_stat_get_activity(NULL) a
             ON a.backend_xid::text::bigint = (x::text::numeric % 4294967296)::bigint
           WHERE a.datid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        );
        inProgress.push(r[0]!.n);
        await sleep(2);
      }
      stop = true;
      await Promise.all(writers);
      await sampler.end();
      const any = inProgress.filter((n) => n > 0).length / inProgress.length;
      console.log(
        `\nPart 3: 8 writers, ${Math.round(commits / 5).toLocaleString("en")} commits/s; ` +
          `${inProgress.length.toLocaleString("en")} samples of this database's transactions in progress below the newest commit:`,
      );
      console.log(
        table(
          [
            ["p50", "p99", "max", "samples with any"],
            [
              String(percentile(inProgress, 50)),
              String(percentile(inProgress, 99)),
              String(Math.max(...inProgress)),
              `${(any * 100).toFixed(0)}%`,
            ],
          ],
          [],
        ),
      );
    } finally {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${otherUrl.pathname.slice(1)} WITH (FORCE)`);
      await admin.end();
    }
  });
}
