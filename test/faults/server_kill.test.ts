import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PgchatdProcess } from "../../support/spawn.ts";
import { testDb } from "../setup/db.ts";
import {
  expectEveryMessageAnsweredOnce,
  expectNoHalfWrites,
  expectWatchMatchesLog,
  openWatch,
  startServe,
  Traffic,
  until,
} from "../setup/faults.ts";

/*
 * A `pgchatd serve` process SIGKILLed while clients create chats and send messages to it, its
 * runner is in the middle of turns and watch streams are open. Each request took effect wholly
 * or not at all; the other server on the database keeps serving, its runner takes the dead one's
 * chats over once their lease is stale, and clients that look before they retry (a chat by its
 * label, a message in the queue and history) neither lose nor double anything.
 */

/**
 * Lease staleness for both servers: short, so the survivor takes the dead one's turns over within
 * the test. Four heartbeats (test/setup/faults.ts sets 500 ms), so a loaded machine does not
 * hand a live server's turns over; if it does, the lost turn writes nothing, which this test
 * checks too.
 */
const staleMs = "2000";
/** Each turn streams for this long plus its message's number: turns are running at the kill. */
const turnMs = 400;
const clients = 4;

let db: Awaited<ReturnType<typeof testDb>>;
let dir: string;
let doomed: PgchatdProcess;
let survivor: PgchatdProcess;

beforeAll(async () => {
  db = await testDb();
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-faults-"));
  const env = { PGCHATD_RUNNER_STALE_MS: staleMs };
  // One after the other: the first creates the secret key file the second reads.
  doomed = await startServe(db.url, dir, env);
  survivor = await startServe(db.url, dir, env);
});

afterAll(async () => {
  await survivor?.stop();
  await doomed?.stop();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

/** The running chats whose lease the runner of process `pid` holds. */
async function runningOn(pid: number): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(
    `SELECT c.id FROM chats c JOIN chat_runners r ON r.id = c.worker_id
     WHERE r.pid = $1 AND c.status = 'running'`,
    [pid],
  );
  return rows.map((r) => r.id);
}

describe("a server SIGKILLed mid-request", () => {
  it("leaves every request whole or undone, and the other server serves on and finishes the dead one's turns: every message answered once, every event watched once", async () => {
    const { rows } = await db.pool.query<{ id: string }>(
      "SELECT id FROM users WHERE username = 'admin'",
    );
    const adminId = rows[0]!.id;
    let targets = [doomed.ready];
    // A watch of the doomed server follows its clients to the survivor, resuming by cursor.
    const followed = await openWatch(() => targets[0]!);
    const steady = await openWatch(() => survivor.ready);
    const traffic = new Traffic(() => targets, {
      recheck: true,
      text: (n) => `/sleep ${turnMs + n}`,
    });
    traffic.start(clients);
    let killedAt = 0;
    let heldByDead: string[] = [];
    try {
      await until(
        async () =>
          traffic.acknowledged().length >= 2 * clients &&
          (await runningOn(doomed.child.pid!)).length >= 2,
        "turns running on the doomed server",
      );
      doomed.child.kill("SIGKILL");
      killedAt = Date.now();
      targets = [survivor.ready];
      await doomed.exited;
      heldByDead = await runningOn(doomed.child.pid!);
      await until(
        () => traffic.acknowledged(killedAt).length >= 10,
        "the survivor to serve the clients",
        30_000,
      );
      await traffic.stop();

      // Requests the kill cut off got no response at all; each client looked before retrying.
      const cut = traffic.failed();
      expect(cut.map((o) => ({ status: o.status, rechecked: o.recheck !== undefined }))).toEqual(
        cut.map(() => ({ status: 0, rechecked: true })),
      );
      const effective = [...traffic.acknowledged(), ...cut.filter((o) => o.recheck === "present")];
      await expectEveryMessageAnsweredOnce(db.pool, effective);
      await expectNoHalfWrites(db.pool);
      const watched = await expectWatchMatchesLog(db.pool, adminId, followed);
      await expectWatchMatchesLog(db.pool, adminId, steady);
      console.log(
        `server SIGKILL: ${traffic.acknowledged(0).length} acknowledged (${traffic.acknowledged(killedAt).length} by the survivor), ` +
          `${cut.length} cut off (${cut.filter((o) => o.recheck === "present").length} had taken effect), ` +
          `${heldByDead.length} turns taken over, ${watched.length} events watched (the followed watch over ${followed.connections()} connections)`,
      );
    } catch (err) {
      console.error(`the survivor's last output:\n${survivor.output().slice(-6000)}`);
      throw err;
    } finally {
      await traffic.stop();
      await followed.close();
      await steady.close();
    }
    expect(heldByDead.length).toBeGreaterThan(0);
  });
});
