/*
 * Change events under load (docs/operations.md "Change events", docs/api.md "Streams"): how fast a
 * committed change reaches many watch streams, and what each NOTIFY mode costs the writers. Prints
 * numbers next to the design's targets; never passes or fails.
 *
 *   npm run bench -- watch                  W = 100 and 1,000 watchers, 500 events/s
 *   npm run bench -- watch 10000            the same, plus W = 10,000
 *   npm run bench -- watch 100,1000 200     exactly W = 100 and 1,000, at 200 events/s
 *   BENCH_WATCH_PART=1 npm run bench -- watch      part 1 only (BENCH_WATCH_PART=2: part 2 only)
 *   BENCH_PG_STATEMENTS=1 ...                      part 1 also lists each run's costliest
 *                                                  statements (pg_stat_statements, embedded only)
 *   BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=<dir>" ...   Node options for the servers
 *   BENCH_SERVER_HEAPSNAPSHOT=<ms> with BENCH_SERVER_NODE_ARGS="--heapsnapshot-signal=SIGUSR2
 *     --diagnostic-dir=<dir>": part 1 signals the server once its W streams are open and waits
 *     <ms> for the heap snapshot to be written
 *
 * Database: a scratch database on DATABASE_URL's server when set (it needs ~160 connections
 * free), else an embedded cluster in a temporary directory started with max_connections 400
 * (part 2 runs 10 servers and 100 idle listeners at once). Both are removed afterwards.
 *
 * Part 1, fan-out latency (bench/watch_fanout.ts). A real server (`pgchatd serve` through
 * bin/pgchatd.js, PGCHATD_EVENTS_NOTIFY=trigger, its own process so its RSS and CPU are
 * read from /proc) and W SSE clients on GET /api/experimental/chats/watch over loopback, run from
 * two worker threads of this process, 10 per owner over W/10 owners (each seeded by
 * support/seed_chats.ts with 20 chats). 8 pg connections UPDATE the titles of the watched owners'
 * unarchived chats (round robin over owners, then chats) at E per second for 1 s of warm-up
 * and 10 s measured. Each UPDATE returns its transaction id, which is the xid of its
 * title_change event's SSE id "<xid>.<id>", so every delivery is matched to its write exactly
 * (the chat JSON in the frame may be a newer version, so the title could not be trusted).
 * Latency is commit → receive: from the write's COMMIT acknowledgement (taken when the writer's
 * `await` resumes; the true commit is a little earlier, so this may flatter by a fraction of a
 * write's own latency, printed too) to the arrival of the chunk holding the frame in a client
 * thread; both clocks are CLOCK_MONOTONIC (process.hrtime), the same in every thread. p50 / p99 /
 * max over all (event, watcher) deliveries of the measured writes; lost = expected deliveries
 * (writes × the owner's watchers) minus distinct ones received, and misdelivered = frames that
 * reached a watcher of another owner (both must be 0). Server RSS (idle, with W streams open,
 * peak while writing) and CPU (% of one core, from /proc/<pid>/stat) during the measured 10 s,
 * Postgres' CPU (the embedded postmaster and its children), this process's, the machine's busy
 * share and "outside": CPU used by anything else meanwhile (other work on the machine; a run with
 * more than 25% of a core outside is repeated, up to 3 times, and the quietest kept). The
 * floor: a bare LISTEN/NOTIFY round trip between two pg clients of this process on the same
 * database (NOTIFY sent → notification received), 2,000 sequential, p50 / p99; printed with the
 * ratio p50 / floor p50. To tell a stall from a steady cost: p99 / max by second of the run;
 * how many events had a delivery over 250 ms, split into late to every stream (the event was
 * read or rendered late) and late to some (socket writes or client threads); and the server's
 * own event-loop delay and GC time over warm-up and window (its /metrics, prom-client defaults).
 * Note that every event fans out to 10 streams whatever W is: W adds idle connections, E × 10
 * is the frame rate (5,000/s by default). Cost per event, steadier than latency on a shared
 * machine: Postgres CPU per 1,000 events, split by the backends that used it (application_name:
 * the server's pgchatd* connections; the writers, whose UPDATEs run the triggers; the rest), the
 * server's database transactions per event (pg_stat_database, less the writes), and the server's
 * CPU per 1,000 deliveries. GET /metrics is timed (median of 5) with the W streams open. The
 * seeded pull-request statuses are marked fresh, so the server's refresher stays idle.
 *
 * Part 2, write throughput by NOTIFY mode (bench/watch_writes.ts). POST
 * /api/experimental/chats/{chat}/messages from autocannon (16 connections, a worker thread) against
 * one server with PGCHATD_EVENTS_NOTIFY = off (the triggers write nothing: the baseline), trigger,
 * batched; each with 1 process listening on the database (the loaded one), 10 (9 more servers that
 * only run and LISTEN), and 1 + 100 idle LISTEN connections (on another channel: Postgres wakes
 * every listening backend of the database on each NOTIFY, whatever its channel, and this keeps
 * 100,000 notifications a second out of this process). Each request sends the first message of an
 * idle chat (a message row, the chat to pending; 3 events and, in trigger mode, 1 NOTIFY), taking
 * the next of 40,000 chats in turn: the queue limit (20 per busy chat) never answers 429, and every
 * request takes the same path. (The create-chat route would also do, but sends are the write a busy
 * installation makes most.) The chats are reset to idle (SQL, no events) and vacuumed after the 1 s
 * warm-up and after each 5 s run. Each mode × listeners runs 3 times, interleaved with the other
 * modes; prints the median req/s (and all three), its ratio to "off", latency, change events and
 * database transactions per request (xacts: every server's tailer reads included, from
 * pg_stat_database), and CPU of the loaded server, Postgres, the other servers and the machine.
 */
import os from "node:os";
import { migrate } from "../src/db/migrate.ts";
import { describeMachine } from "./measure.ts";
import { fanOut } from "./watch_fanout.ts";
import { withBenchDatabase } from "./watch_servers.ts";
import { writeThroughput } from "./watch_writes.ts";

export async function benchWatch(watchersArg?: string, rateArg?: string) {
  const explicit = watchersArg?.includes(",");
  const asked = (watchersArg ?? "").split(",").filter(Boolean).map(Number);
  const watcherCounts = explicit
    ? asked
    : [...new Set([100, 1_000, ...asked])].sort((a, b) => a - b);
  const rate = rateArg ? Number(rateArg) : 500;
  if (!watcherCounts.every((w) => Number.isInteger(w) && w >= 1) || !(rate > 0)) {
    throw new Error("usage: npm run bench -- watch [watchers[,watchers...]] [eventsPerSecond]");
  }
  const part = process.env.BENCH_WATCH_PART;
  await withBenchDatabase(async (db) => {
    console.log(
      `database: ${db.where}\nmachine: ${describeMachine()}, ${os.platform()} ${os.arch()}; ` +
        "Postgres, the servers and the load generators share these cores",
    );
    const t = performance.now();
    await migrate(db.url);
    console.log(`migrations: ${((performance.now() - t) / 1000).toFixed(1)} s`);
    if (part !== "2") await fanOut(db, watcherCounts, rate);
    if (part !== "1") await writeThroughput(db);
  });
}
