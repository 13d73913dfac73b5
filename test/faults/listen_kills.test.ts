import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";
import { expectWatchMatchesLog, openWatch, until } from "../setup/faults.ts";
import { type TestServer, testServer } from "../setup/server.ts";

/*
 * The LISTEN connection of two servers killed again and again while clients write through both:
 * test/watch/loss.test.ts kills one server's twice in a mixed burst; here every ~100 ms, so kills
 * land while a connection is still coming back, and each server's watchers must still get the
 * log exactly: no event lost while nothing listened, none sent twice by the catch-up read that
 * follows every reconnect.
 */

const writers = 6;
const writesPerWriter = 60;
/** At least this many LISTEN connections killed during the burst. */
const minKills = 12;
/** The cadence of the kills: shorter than a reconnect's first backoff doubled, so some overlap. */
const killEveryMs = 100;

let db: Awaited<ReturnType<typeof testDb>>;
let servers: TestServer[];

beforeAll(async () => {
  db = await testDb();
  servers = [await testServer(), await testServer()];
});

afterAll(async () => {
  await Promise.all((servers ?? []).map((s) => s.close()));
});

/** The LISTEN backends of this database's servers (one each, except while one reconnects). */
async function killListeners(): Promise<number> {
  const { rows } = await db.pool.query<{ killed: number }>(
    `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS killed
     FROM pg_stat_activity
     WHERE application_name = 'pgchatd-listen' AND datname = current_database()`,
  );
  return rows[0]!.killed;
}

describe("LISTEN connections killed repeatedly", () => {
  it("delivers every event exactly once, in order, to the watchers of two servers while their LISTEN connections are killed every 100 ms", async () => {
    const org = await gen.organization(db.pool);
    const owners = await Promise.all(
      [0, 1].map(async () => {
        const u = await gen.user(db.pool, { organizationIds: [org.id] });
        return { id: u.id, token: await gen.apiKey(db.pool, u.id) };
      }),
    );
    // Each owner watched on each server.
    const watches = await Promise.all(
      owners.flatMap((o) => servers.map((s) => openWatch(() => s.url, { token: o.token }))),
    );

    let done = 0;
    let kills = 0;
    const api = async (w: number, method: string, path: string, body: unknown) => {
      const owner = owners[w % owners.length]!;
      // Writers alternate servers, so each server's writes reach the other's watchers.
      const server = servers[(w + done) % servers.length]!;
      const res = await fetch(`${server.url}/api/experimental/chats${path}`, {
        method,
        headers: { authorization: `Bearer ${owner.token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (res.status >= 300)
        throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      const text = await res.text();
      return (text ? JSON.parse(text) : {}) as { id: string };
    };
    async function writer(w: number) {
      const chat = await api(w, "POST", "", { content: [{ type: "text", text: `w${w}` }] });
      // Until the kills are done too: every kill lands in the middle of writes.
      for (let k = 0; k < writesPerWriter || kills < minKills; k++) {
        const op = k % 4;
        if (op === 0) await api(w, "PATCH", `/${chat.id}`, { title: `w${w} k${k}` });
        else if (op === 1) await api(w, "PATCH", `/${chat.id}`, { labels: { k: String(k) } });
        else if (op === 2) await api(w, "PATCH", `/${chat.id}`, { archived: true });
        else await api(w, "PATCH", `/${chat.id}`, { archived: false });
        done++;
      }
    }

    let writing = true;
    const killer = (async () => {
      while (writing) {
        kills += await killListeners();
        await new Promise((r) => setTimeout(r, killEveryMs));
      }
    })();
    const started = Date.now();
    await Promise.all(Array.from({ length: writers }, (_, w) => writer(w))).finally(() => {
      writing = false;
    });
    const burstMs = Date.now() - started;
    await killer;
    expect(kills).toBeGreaterThanOrEqual(minKills);
    // Both servers listen again.
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT 1 FROM pg_stat_activity
         WHERE application_name = 'pgchatd-listen' AND datname = current_database()`,
      );
      return rows.length === servers.length;
    }, "both LISTEN connections to come back");

    let events = 0;
    for (const [i, w] of watches.entries()) {
      const logged = await expectWatchMatchesLog(db.pool, owners[Math.floor(i / 2)]!.id, w);
      expect(logged.length).toBeGreaterThanOrEqual((writers / owners.length) * writesPerWriter);
      events += logged.length;
    }
    for (const w of watches) await w.close();
    console.log(
      `LISTEN kills: ${kills} kills during a ${burstMs} ms burst of ${done} writes; ${events} events delivered to ${watches.length} watchers`,
    );
  });
});
