import fs from "node:fs/promises";
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { routePath } from "hono/route";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Pool } from "../db/index.ts";
import type { Watch } from "../watch/index.ts";
import type { AppDeps } from "./deps.ts";

export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<"method" | "route" | "status">;
}

/** A registry per app, so tests can build many apps in one process without clashes. */
export function createMetrics(
  pool: Pool,
  watch?: Watch,
  runner?: AppDeps["runner"],
  reads?: AppDeps["reads"],
): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // These walk every handle, timer or file descriptor of the process on the event loop: with
  // 10,000 open streams a scrape took ~50 ms, during which no event was delivered (`npm run
  // bench -- watch`). pgchatd_stream_subscribers counts the streams; the descriptors are
  // counted below off the event loop.
  for (const name of [
    "nodejs_active_handles",
    "nodejs_active_handles_total",
    "nodejs_active_resources",
    "nodejs_active_resources_total",
    "process_open_fds",
  ]) {
    registry.removeSingleMetric(name);
  }
  if (process.platform === "linux") {
    // Listing /proc/self/fd takes ~15 ms with 10,000 sockets open (in libuv's thread pool, off
    // the loop). A scrape does not wait for it: it reports the count the previous scrape started
    // reading, so the value is at most one scrape interval old.
    let openFds: number | undefined;
    let counting: Promise<void> | undefined;
    const countOpenFds = () => {
      counting ??= fs
        .readdir("/proc/self/fd")
        .then((names) => {
          openFds = names.length;
        })
        .catch(() => {})
        .finally(() => {
          counting = undefined;
        });
      return counting;
    };
    new Gauge({
      name: "process_open_fds",
      help: "Number of open file descriptors (as of the previous scrape).",
      registers: [registry],
      async collect() {
        const first = openFds === undefined;
        const counted = countOpenFds();
        if (first) await counted;
        if (openFds !== undefined) this.set(openFds);
      },
    });
  }
  const httpDuration = new Histogram({
    name: "pgchatd_http_request_duration_seconds",
    help: "HTTP request duration by route pattern and status",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const poolGauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  poolGauge("pgchatd_db_pool_connections", "Open connections in the pool", () => pool.totalCount);
  poolGauge("pgchatd_db_pool_idle", "Idle connections in the pool", () => pool.idleCount);
  poolGauge(
    "pgchatd_db_pool_waiting",
    "Requests waiting for a pool connection",
    () => pool.waitingCount,
  );
  if (watch) {
    new Gauge({
      name: "pgchatd_stream_subscribers",
      help: "Open SSE streams by kind (watch, chat, agent)",
      labelNames: ["kind"] as const,
      registers: [registry],
      collect() {
        const counts = watch.hub.counts();
        this.set({ kind: "watch" }, counts.watch);
        this.set({ kind: "chat" }, counts.stream);
        this.set({ kind: "agent" }, counts.agent);
      },
    });
    new Gauge({
      name: "pgchatd_events_held_back_seconds",
      help: "How long the oldest committed change event has waited for an open transaction to end (0: none waits)",
      registers: [registry],
      collect() {
        this.set(watch.tailer.horizon.heldBackSeconds);
      },
    });
    new Gauge({
      name: "pgchatd_events_horizon_blocker",
      help: "The open transaction change events wait for (1 while one does): its backend pid, database and application_name",
      labelNames: ["pid", "database", "application"] as const,
      registers: [registry],
      collect() {
        this.reset();
        const b = watch.tailer.horizon.blocker;
        if (b)
          this.set(
            {
              pid: String(b.pid ?? ""),
              database: b.database ?? "",
              application: b.application ?? "",
            },
            1,
          );
      },
    });
    let reported = 0;
    new Counter({
      name: "pgchatd_stream_overflows_total",
      help: "Streams disconnected because their client read too slowly",
      registers: [registry],
      collect() {
        this.inc(watch.hub.overflows - reported);
        reported = watch.hub.overflows;
      },
    });
  }
  if (runner) {
    new Gauge({
      name: "pgchatd_runner_active_turns",
      help: "Chat turns this process's runner is running now",
      registers: [registry],
      collect() {
        this.set(runner.active);
      },
    });
    const reportedTurns: Record<string, number> = {};
    new Counter({
      name: "pgchatd_runner_turns_total",
      help: "Chat turns this process's runner ended, by outcome",
      labelNames: ["outcome"] as const,
      registers: [registry],
      collect() {
        for (const [outcome, n] of Object.entries(runner.stats.turns)) {
          this.inc({ outcome }, n - (reportedTurns[outcome] ?? 0));
          reportedTurns[outcome] = n;
        }
      },
    });
    let reportedRecoveryFailures = 0;
    new Counter({
      name: "pgchatd_runner_recovery_failures_total",
      help: "Chats whose recovery raised an error (each is logged; the pass goes on with the others)",
      registers: [registry],
      collect() {
        this.inc(runner.stats.recoveryFailures - reportedRecoveryFailures);
        reportedRecoveryFailures = runner.stats.recoveryFailures;
      },
    });
    const reportedClaims = { all: 0, empty: 0 };
    new Counter({
      name: "pgchatd_runner_claims_total",
      help: "Claims this process's runner made, by whether they found a pending chat",
      labelNames: ["found"] as const,
      registers: [registry],
      collect() {
        const { claims, emptyClaims } = runner.stats;
        this.inc(
          { found: "true" },
          claims - emptyClaims - (reportedClaims.all - reportedClaims.empty),
        );
        this.inc({ found: "false" }, emptyClaims - reportedClaims.empty);
        reportedClaims.all = claims;
        reportedClaims.empty = emptyClaims;
      },
    });
    let reportedStatements = 0;
    new Counter({
      name: "pgchatd_runner_statements_total",
      help: "SQL statements this process's runner sent (claims, heartbeats, recovery, turns)",
      registers: [registry],
      collect() {
        this.inc(runner.stats.statements - reportedStatements);
        reportedStatements = runner.stats.statements;
      },
    });
  }
  if (reads) {
    const reported = { standby: 0, primaryLagging: 0, primaryUnavailable: 0 };
    new Counter({
      name: "pgchatd_read_replica_reads_total",
      help: "Read routes by where they ran: the standby, or the primary because the standby lagged past PGCHATD_READ_MAX_WAIT_MS or could not be asked",
      labelNames: ["served_by"] as const,
      registers: [registry],
      collect() {
        const s = reads.stats;
        this.inc({ served_by: "standby" }, s.standby - reported.standby);
        this.inc({ served_by: "primary_lagging" }, s.primaryLagging - reported.primaryLagging);
        this.inc(
          { served_by: "primary_unavailable" },
          s.primaryUnavailable - reported.primaryUnavailable,
        );
        Object.assign(reported, s);
      },
    });
  }
  return { registry, httpDuration };
}

/** The matched route pattern (never the raw path: ids would explode label sets), or "unmatched". */
export function routeLabel(c: Context): string {
  const route = routePath(c, -1);
  return c.res.status === 404 && route === "/*" ? "unmatched" : route;
}

export function metricsMiddleware(metrics: Metrics) {
  return createMiddleware(async (c, next) => {
    const end = metrics.httpDuration.startTimer();
    try {
      await next();
    } finally {
      // The route pattern, never the raw path: ids would explode the label set.
      const route =
        c.res.status === 404 && routePath(c, -1) === "/*" ? "unmatched" : routePath(c, -1);
      end({ method: c.req.method, route, status: String(c.res.status) });
    }
  });
}
