import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmbeddedPostgres } from "../../src/db/embedded.ts";
import { createPool, type Pool } from "../../src/db/pool.ts";
import type { PgchatdProcess } from "../../support/spawn.ts";
import {
  expectCleanFailures,
  expectEveryMessageAnsweredOnce,
  expectWatchMatchesLog,
  openWatch,
  startServe,
  Traffic,
  until,
} from "../setup/faults.ts";

/*
 * The database goes away under a running `pgchatd serve` (its runner included) while clients
 * write and a watch stream is open: the cluster stopped and started again on its port, and every
 * backend of the server terminated. Requests fail cleanly meanwhile (503), the server recovers
 * without a restart, and nothing acknowledged is lost or done twice.
 */

/** This test's own cluster: stopping it must not touch the one the other test files share. */
let dir: string;
let pg: EmbeddedPostgres;
let serve: PgchatdProcess;
/** The test's own connection, told apart from the server's by its application_name. */
let pool: Pool;
let adminId: string;
const testApplication = "pgchatd-faults-test";
const database = "pgchatd";
/** Clients writing at once: more than one keeps requests in flight when the outage starts. */
const clients = 3;

const clusterOptions = () => ({
  pgDir: path.join(dir, "pg"),
  passwordFile: path.join(dir, "pg-password"),
});

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-faults-"));
  // Enterable by the postgres OS user when the tests run as root.
  await fs.chmod(dir, 0o755);
  pg = await EmbeddedPostgres.start(clusterOptions());
  await pg.ensureDatabase(database);
  serve = await startServe(pg.url(database), dir);
  pool = createPool({
    connectionString: pg.url(database),
    max: 2,
    applicationName: testApplication,
  });
  const { rows } = await pool.query<{ id: string }>(
    "SELECT id FROM users WHERE username = 'admin'",
  );
  adminId = rows[0]!.id;
});

afterAll(async () => {
  await serve?.stop();
  await pool?.end();
  await pg?.stop();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

async function healthz(): Promise<number> {
  return (await fetch(`${serve.ready}/healthz`)).status;
}

/** The server's exit and its last log lines, for a failure to say what the server went through. */
function serverReport(): string {
  const { exitCode, signalCode } = serve.child;
  const state =
    exitCode === null && signalCode === null ? "running" : `exited ${exitCode ?? signalCode}`;
  return `pgchatd serve (${state}), its last output:\n${serve.output().slice(-6000)}`;
}

/**
 * Runs traffic and two watches around `outage`, then checks that nothing was lost or duplicated.
 * One watch stays open; the other is dropped when `outage` calls `drop` (the database down) and
 * opened again with its Last-Event-ID at once, retrying while the server refuses it.
 */
async function throughOutage(outage: (traffic: Traffic, drop: () => void) => Promise<void>) {
  const watch = await openWatch(() => serve.ready);
  const dropped = await openWatch(() => serve.ready);
  let resumed: ReturnType<typeof openWatch> | undefined;
  const drop = () => {
    resumed = (async () => {
      await dropped.close();
      return openWatch(() => serve.ready, { lastEventId: dropped.resumeAfter() });
    })();
  };
  const traffic = new Traffic(() => [serve.ready]);
  traffic.start(clients);
  try {
    await until(() => traffic.acknowledged().length >= 10, "traffic before the outage");
    await outage(traffic, drop);
    const back = Date.now();
    await until(
      () => traffic.acknowledged(back).length >= 10,
      "requests to succeed again after the outage",
      30_000,
    );
    await traffic.stop();
    expectCleanFailures(traffic.outcomes);
    await expectEveryMessageAnsweredOnce(pool, traffic.acknowledged());
    const logged = await expectWatchMatchesLog(pool, adminId, watch);
    expect(resumed).toBeDefined();
    const second = await resumed!;
    await expectWatchMatchesLog(pool, adminId, {
      floor: dropped.floor,
      received: () => [...dropped.received(), ...second.received()],
    });
    await second.close();
    return {
      traffic,
      logged: logged.length,
      connections: watch.connections(),
      resumedAfterRefusals: second.connections() - 1,
    };
  } catch (err) {
    console.error(serverReport());
    throw err;
  } finally {
    await traffic.stop();
    await watch.close();
    await dropped.close();
    await (await resumed?.catch(() => undefined))?.close();
  }
}

describe("the database restarted under a running server", () => {
  it("answers 503 while the cluster is stopped, then recovers on its own: every acknowledged message answered once, every event watched once", async () => {
    let refused = 0;
    const { traffic, logged, connections, resumedAfterRefusals } = await throughOutage(
      async (traffic, drop) => {
        const port = pg.port;
        const stopped = Date.now();
        await pg.stop();
        // Every client is refused at least once while it is down.
        await until(() => traffic.failed(stopped).length >= clients, "requests during the outage");
        drop();
        expect(await healthz()).toBe(503);
        refused = traffic.failed(stopped).length;
        pg = await EmbeddedPostgres.start({ ...clusterOptions(), port });
      },
    );
    expect(refused).toBeGreaterThanOrEqual(clients);
    expect(await healthz()).toBe(200);
    console.log(
      `cluster restart: ${traffic.acknowledged().length} acknowledged, ${traffic.failed().length} refused, ${logged} events watched over ${connections} connection(s); a watch dropped then resumed by cursor after ${resumedAfterRefusals} refused attempt(s)`,
    );
  });

  it("answers 503 for requests whose connection was terminated, and recovers: every acknowledged message answered once, every event watched once", async () => {
    const kills = 5;
    const { traffic, logged, connections, resumedAfterRefusals } = await throughOutage(
      async (traffic, drop) => {
        for (let k = 0; k < kills; k++) {
          const { rows } = await pool.query<{ killed: number }>(
            `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS killed
           FROM pg_stat_activity
           WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2`,
            [database, testApplication],
          );
          expect(rows[0]!.killed).toBeGreaterThan(0);
          if (k === 0) drop();
          const after = Date.now();
          await until(() => traffic.acknowledged(after).length >= 5, "requests after a kill");
        }
      },
    );
    console.log(
      `backends terminated ${kills} times: ${traffic.acknowledged().length} acknowledged, ${traffic.failed().length} refused, ${logged} events watched over ${connections} connection(s); a watch dropped then resumed by cursor after ${resumedAfterRefusals} refused attempt(s)`,
    );
  });
});
