import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Config } from "../config.ts";
import type { Database, Pool } from "../db/index.ts";
import { ReadReplica } from "../db/replica.ts";
import type { Forge } from "../forge/github.ts";
import { type DiffStatusRefresher, startDiffStatusRefresher } from "../jobs/chat_diff_statuses.ts";
import { startEventPruning } from "../jobs/chat_events.ts";
import { type Housekeeping, startHousekeeping } from "../jobs/housekeeping.ts";
import type { Secrets } from "../lib/secrets.ts";
import type { Logger } from "../log.ts";
import { createModels, type ModelRouting } from "../models/index.ts";
import type { Runner } from "../runner/index.ts";
import { createApp } from "../server/app.ts";
import { ensureWebBuilt } from "../server/web.ts";
import { type EventsNotifyMode, startWatch, type Watch } from "../watch/index.ts";
import { openConfigured, runnerSettings } from "./open.ts";
import { createRunner, type RunnerParts } from "./runner.ts";

/*
 * The server's composition root: `pgchatd serve` (startServer) and the tests that need a real
 * HTTP server (assembleServer) build it here, so a test server is wired as the product is.
 */

/** How often a draining server closes connections that went idle. */
const idleSweepMs = 100;

export interface ServerParts {
  pool: Pool;
  /** A standby for read routes (PGCHATD_READ_DATABASE_URL); closed by the caller. */
  reads?: ReadReplica | undefined;
  databaseUrl: string;
  logger: Logger;
  secrets?: Secrets | undefined;
  host: string;
  /** 0 picks a free port. */
  port: number;
  events: {
    mode: EventsNotifyMode;
    heldBackWarnMs?: number | undefined;
    safetyPollMs?: number | undefined;
    maxQueuedBytes?: number | undefined;
  };
  /** Events older than this are pruned; undefined runs no pruning. */
  eventRetentionSeconds?: number | undefined;
  /**
   * Where pull-request statuses come from: GET /{chat} resolves a stale one inline (for at most
   * `inlineMs`), and a server with a runner also runs the refresher. Absent, neither happens.
   */
  forge?: { forge: Forge; inlineMs: number; refreshPollMs?: number | undefined } | undefined;
  /** How model calls leave the process; direct when absent. */
  modelRouting?: ModelRouting | undefined;
  /** audit_logs retention for the housekeeping a server with a runner runs; undefined: none. */
  auditRetentionDays?: number | undefined;
  /** This process's own runner (its settings), or none. */
  runner?: Omit<RunnerParts, "pool" | "databaseUrl" | "logger" | "secrets" | "models"> | undefined;
  /** How long a shutdown waits for in-flight requests before closing their connections. */
  shutdownTimeoutMs: number;
}

export interface AssembledServer {
  url: string;
  watch: Watch;
  runner: Runner | undefined;
  refresher: DiffStatusRefresher | undefined;
  /** Stops accepting, drains in-flight requests (up to the shutdown timeout), stops the rest. */
  close(): Promise<void>;
}

export interface RunningServer extends AssembledServer {
  database: Database;
}

function listen(server: Server): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.once("listening", () => {
      server.off("error", onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Change events, event pruning, the runner (when asked for) and the HTTP app on HOST:PORT, over
 * a pool the caller owns (it closes the pool after close()).
 */
export async function assembleServer(parts: ServerParts): Promise<AssembledServer> {
  const { logger } = parts;
  const watch = await startWatch({
    url: parts.databaseUrl,
    pool: parts.pool,
    logger,
    mode: parts.events.mode,
    heldBackWarnMs: parts.events.heldBackWarnMs,
    safetyPollMs: parts.events.safetyPollMs,
    maxQueuedBytes: parts.events.maxQueuedBytes,
  });
  const pruning =
    parts.eventRetentionSeconds === undefined
      ? undefined
      : startEventPruning({
          pool: parts.pool,
          retentionSeconds: parts.eventRetentionSeconds,
          logger,
        });
  const models = createModels({ secrets: parts.secrets, routing: parts.modelRouting });
  let runner: Runner | undefined;
  let refresher: DiffStatusRefresher | undefined;
  let housekeeping: Housekeeping | undefined;
  let server: Server;
  let address: AddressInfo;
  try {
    if (parts.runner) {
      runner = createRunner({
        ...parts.runner,
        pool: parts.pool,
        databaseUrl: parts.databaseUrl,
        listener: watch.listener,
        logger,
        models,
        publish: (chatId, ownerId, event, data, lease) =>
          watch.publishEphemeral(chatId, ownerId, event, data, lease),
        afterWrite: () => watch.poke(),
      });
      await runner.start();
      // Every runner process refreshes pull-request statuses (src/jobs/chat_diff_statuses.ts).
      if (parts.forge) {
        refresher = startDiffStatusRefresher({
          pool: parts.pool,
          forge: parts.forge.forge,
          secrets: parts.secrets,
          logger,
          pollMs: parts.forge.refreshPollMs,
        });
      }
      // And housekeeping, one process at a time (src/jobs/housekeeping.ts).
      if (parts.auditRetentionDays !== undefined) {
        housekeeping = startHousekeeping({
          pool: parts.pool,
          logger,
          auditRetentionDays: parts.auditRetentionDays,
        });
      }
    }
    const app = createApp({
      db: parts.pool,
      reads: parts.reads,
      logger,
      watch,
      secrets: parts.secrets,
      models,
      runner,
      forge: parts.forge,
    });
    // Without createServer options @hono/node-server builds a plain node:http server.
    server = serve({ fetch: app.fetch, hostname: parts.host, port: parts.port }) as Server;
    address = await listen(server);
  } catch (err) {
    await runner?.stop().catch(() => {});
    await refresher?.stop();
    await housekeeping?.stop();
    await pruning?.stop();
    await watch.close();
    throw err;
  }
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      // While the HTTP server drains: running turns stop and go back to pending for other runners.
      const runnerStopped = runner
        ?.stop()
        .catch((err) => logger.error({ err }, "runner stop failed"));
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          logger.warn("shutdown timeout: closing remaining connections");
          server.closeAllConnections();
        }, parts.shutdownTimeoutMs);
        // A keep-alive connection whose last request finishes during the drain would otherwise
        // hold close() open until its keep-alive timeout.
        const sweep = setInterval(() => server.closeIdleConnections(), idleSweepMs);
        server.close(() => {
          clearTimeout(force);
          clearInterval(sweep);
          resolve();
        });
        server.closeIdleConnections();
        // Streams never end by themselves: end them so their requests finish and the drain can.
        watch.hub.closeAll();
      });
      await runnerStopped;
      await refresher?.stop();
      await housekeeping?.stop();
      await pruning?.stop();
      await watch.close();
    })();
    return closing;
  };
  return { url, watch, runner, refresher, close };
}

/** `pgchatd serve`: opens the database (embedded unless DATABASE_URL), then serves the API. */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  // The web app at `/`: `npm install` builds it; a checkout without the build gets it now.
  await ensureWebBuilt().catch((err: unknown) =>
    logger.warn({ err }, "the web app could not be built; / answers 503"),
  );
  // The runner's id is on the pool's sessions: a chat this server's requests make pending wakes
  // this server's runner first, without a NOTIFY (chat_runner_choose).
  const workerId = config.runner.enabled ? crypto.randomUUID() : undefined;
  const { secrets, database, forge } = await openConfigured(config, logger, workerId);
  const reads = config.readReplica
    ? new ReadReplica({
        primary: database.pool,
        url: config.readReplica.url,
        maxWaitMs: config.readReplica.maxWaitMs,
        poolMax: config.dbPoolMax,
        logger,
      })
    : undefined;
  let server: AssembledServer;
  try {
    server = await assembleServer({
      pool: database.pool,
      databaseUrl: database.url,
      logger,
      secrets,
      host: config.host,
      port: config.port,
      events: { mode: config.eventsNotify, heldBackWarnMs: config.eventsHeldBackWarnMs },
      eventRetentionSeconds: config.eventRetentionSeconds,
      forge: { forge, inlineMs: config.diffStatusInlineMs },
      auditRetentionDays: config.auditRetentionDays,
      modelRouting: config.modelRouting,
      runner: config.runner.enabled ? { ...runnerSettings(config), workerId } : undefined,
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      reads,
    });
  } catch (err) {
    await reads?.close();
    await database.close();
    throw err;
  }
  logger.info({ url: server.url }, "pgchatd listening");
  return {
    ...server,
    database,
    async close() {
      await server.close();
      await reads?.close();
      await database.close();
      logger.info("pgchatd stopped");
    },
  };
}
