import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Pool } from "../../src/db/pool.ts";
import { createApp } from "../../src/server/app.ts";
import { type EventsNotifyMode, startWatch, type Watch } from "../../src/watch/index.ts";
import { captureLogger } from "./app.ts";
import { newPool, testDb } from "./db.ts";

export interface TestServer {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  pool: Pool;
  dbUrl: string;
  watch: Watch;
  logLines: string[];
  close(): Promise<void>;
}

/**
 * A real HTTP server with change events on this file's database (or `dbUrl`), on a free port:
 * for tests that need real SSE sockets. Options are passed to startWatch.
 */
export async function testServer(
  opts: {
    dbUrl?: string;
    mode?: EventsNotifyMode;
    maxQueuedBytes?: number;
    safetyPollMs?: number;
    heldBackWarnMs?: number;
  } = {},
): Promise<TestServer> {
  const dbUrl = opts.dbUrl ?? (await testDb()).url;
  // The pool's sessions publish in the same mode as the server (batched: no NOTIFY per commit).
  const pool = newPool(dbUrl, 20, opts.mode);
  const { logger, lines } = captureLogger();
  const watch = await startWatch({
    url: dbUrl,
    pool,
    logger,
    mode: opts.mode ?? "trigger",
    maxQueuedBytes: opts.maxQueuedBytes,
    safetyPollMs: opts.safetyPollMs,
    heldBackWarnMs: opts.heldBackWarnMs,
  });
  const app = createApp({ db: pool, logger, watch });
  const server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }) as Server;
  await new Promise<void>((ok) => server.once("listening", ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    pool,
    dbUrl,
    watch,
    logLines: lines,
    async close() {
      watch.hub.closeAll();
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
      await watch.close();
    },
  };
}
