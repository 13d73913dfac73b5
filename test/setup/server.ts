import type { Pool } from "../../src/db/pool.ts";
import { assembleServer } from "../../src/processes/serve.ts";
import type { EventsNotifyMode, Watch } from "../../src/watch/index.ts";
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
    /** A fixed port (a test restarting "the same server"); a free one by default. */
    port?: number;
  } = {},
): Promise<TestServer> {
  const dbUrl = opts.dbUrl ?? (await testDb()).url;
  // The pool's sessions publish in the same mode as the server (batched: no NOTIFY per commit).
  const pool = newPool(dbUrl, 20, opts.mode);
  const { logger, lines } = captureLogger();
  // Wired as `pgchatd serve` wires it (src/processes/serve.ts), without a runner or pruning.
  const server = await assembleServer({
    pool,
    databaseUrl: dbUrl,
    logger,
    host: "127.0.0.1",
    port: opts.port ?? 0,
    events: {
      mode: opts.mode ?? "trigger",
      maxQueuedBytes: opts.maxQueuedBytes,
      safetyPollMs: opts.safetyPollMs,
      heldBackWarnMs: opts.heldBackWarnMs,
    },
    shutdownTimeoutMs: 1_000,
  });
  return {
    url: server.url,
    pool,
    dbUrl,
    watch: server.watch,
    logLines: lines,
    close: server.close,
  };
}
