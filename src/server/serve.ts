import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Config } from "../config.ts";
import { type Database, openDatabase } from "../db/index.ts";
import { startEventPruning } from "../jobs/chat_events.ts";
import { openSecrets } from "../lib/secrets.ts";
import type { Logger } from "../log.ts";
import { createModels } from "../models/index.ts";
import { Runner } from "../runner/index.ts";
import { startWatch, type Watch } from "../watch/index.ts";
import { createApp } from "./app.ts";

/** How often a draining server closes connections that went idle. */
const idleSweepMs = 100;

export interface RunningServer {
  url: string;
  database: Database;
  watch: Watch;
  /** Absent when PGCHATD_RUNNER=false. */
  runner: Runner | undefined;
  /** Stops accepting, drains in-flight requests (up to the shutdown timeout), then closes the database. */
  close(): Promise<void>;
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

/** The secrets and the database that `pgchatd serve` and `pgchatd runner` open. */
export async function openConfigured(config: Config, logger: Logger) {
  // Before the database: a damaged key file stops the start with nothing to clean up.
  const secrets = await openSecrets({ configuredKey: config.secretKey, dataDir: config.dataDir });
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    bootstrapToken: config.bootstrapToken,
    poolMax: config.dbPoolMax,
    eventsMode: config.eventsNotify,
    logger,
  });
  return { secrets, database };
}

/** The runner options PGCHATD_RUNNER_* set. */
export function runnerSettings(config: Config) {
  return {
    concurrency: config.runner.concurrency,
    heartbeatMs: config.runner.heartbeatMs,
    staleAfterMs: config.runner.staleAfterMs,
  };
}

/** Opens the database (embedded unless DATABASE_URL), then serves the API on HOST:PORT. */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const { secrets, database } = await openConfigured(config, logger);
  let server: Server;
  let address: AddressInfo;
  let watch: Watch;
  try {
    watch = await startWatch({
      url: database.url,
      pool: database.pool,
      logger,
      mode: config.eventsNotify,
      heldBackWarnMs: config.eventsHeldBackWarnMs,
    });
  } catch (err) {
    await database.close();
    throw err;
  }
  const pruning = startEventPruning({
    pool: database.pool,
    retentionSeconds: config.eventRetentionSeconds,
    logger,
  });
  const models = createModels({ secrets });
  let runner: Runner | undefined;
  try {
    if (config.runner.enabled) {
      runner = new Runner({
        pool: database.pool,
        databaseUrl: database.url,
        logger,
        models,
        publish: (chatId, ownerId, event, data) =>
          watch.publishEphemeral(chatId, ownerId, event, data),
        afterWrite: () => watch.poke(),
        ...runnerSettings(config),
      });
      await runner.start();
    }
    const app = createApp({ db: database.pool, logger, watch, secrets, models, runner });
    // Without createServer options @hono/node-server builds a plain node:http server.
    server = serve({ fetch: app.fetch, hostname: config.host, port: config.port }) as Server;
    address = await listen(server);
  } catch (err) {
    await runner?.stop().catch(() => {});
    await pruning.stop();
    await watch.close();
    await database.close();
    throw err;
  }
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url }, "pgchatd listening");

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
        }, config.shutdownTimeoutMs);
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
      await pruning.stop();
      await watch.close();
      await database.close();
      logger.info("pgchatd stopped");
    })();
    return closing;
  };
  return { url, database, watch, runner, close };
}
