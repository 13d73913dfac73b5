import { createHook } from "node:async_hooks";
import net from "node:net";
import pg from "pg";
import { describe, expect, inject, it } from "vitest";
import { createListener, type Listener } from "../../src/db/listen.ts";
import { connectClient, withTx } from "../../src/db/pool.ts";
import {
  announceChatListenerQuery,
  notifyChatEvents,
  withdrawChatListenerQuery,
} from "../../src/generated/chat_events.ts";
import { testDb } from "../setup/db.ts";

/*
 * The LISTEN connection of src/db/listen.ts against a real server: one statement at a time on
 * its connection, reconnecting after a kill or a silent peer, and nothing left after close().
 */

const deadlineMs = 10_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true, or fails with `what` after the deadline. */
async function until(check: () => boolean | Promise<boolean>, what: string) {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The next `event` of `emitter` whose arguments satisfy `match`. */
function nextEvent<T extends unknown[]>(
  emitter: NodeJS.EventEmitter,
  event: string,
  match: (...args: T) => boolean = () => true,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`no ${event} event within ${deadlineMs} ms`));
    }, deadlineMs);
    const on = (...args: T) => {
      if (!match(...args)) return;
      clearTimeout(timer);
      emitter.off(event, on);
      resolve(args);
    };
    emitter.on(event, on);
  });
}

/** Backends of this database's connections named `applicationName`. */
async function backends(db: pg.ClientBase | pg.Pool, applicationName: string): Promise<number[]> {
  const { rows } = await db.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
     WHERE application_name = $1 AND datname = current_database()`,
    [applicationName],
  );
  return rows.map((r) => r.pid);
}

async function killBackends(db: pg.ClientBase | pg.Pool, applicationName: string) {
  const pids = await backends(db, applicationName);
  expect(pids).toHaveLength(1);
  await db.query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", [pids]);
}

/** The server's announcement (src/watch/index.ts) for `channels`. */
function announcing(...channels: string[]) {
  return {
    channels: new Set(channels),
    announce: announceChatListenerQuery,
    withdraw: withdrawChatListenerQuery,
  };
}

/** Slots of the listeners' lock (chat_listener_announce) that backend `pid` holds. */
async function slotsHeldBy(db: pg.ClientBase | pg.Pool, pid: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks
     WHERE pid = $1 AND locktype = 'advisory' AND mode = 'ShareLock' AND granted`,
    [pid],
  );
  return rows[0]!.n;
}

/** The listener's payloads on `channel`, in arrival order. */
function collect(listener: Listener, channel: string): string[] {
  const got: string[] = [];
  listener.notifications.on(channel, (payload: string) => got.push(payload));
  return got;
}

/**
 * Counts statements handed to pg and not yet answered, per client named `applicationName`, and
 * keeps the most one client had at once. node-postgres queues a second statement on a busy
 * client (deprecated; pg 9 refuses it), so only this count shows an overlap.
 */
function trackInFlight(applicationName: string) {
  const original = pg.Client.prototype.query;
  const inFlight = new Map<pg.Client, number>();
  let most = 0;
  // biome-ignore lint/suspicious/noExplicitAny: wrapping pg's overloaded query signature.
  (pg.Client.prototype as any).query = function (this: pg.Client, ...args: unknown[]) {
    // biome-ignore lint/suspicious/noExplicitAny: forwarding the same arguments.
    const result = (original as any).apply(this, args);
    const name = (this as unknown as { connectionParameters: { application_name?: string } })
      .connectionParameters.application_name;
    if (name !== applicationName || !(result instanceof Promise)) return result;
    const n = (inFlight.get(this) ?? 0) + 1;
    inFlight.set(this, n);
    most = Math.max(most, n);
    const settled = () => inFlight.set(this, inFlight.get(this)! - 1);
    result.then(settled, settled);
    return result;
  };
  return {
    most: () => most,
    restore: () => {
      pg.Client.prototype.query = original;
    },
  };
}

/**
 * Timers and sockets created from now on that are still alive when `alive()` is asked: what the
 * code under test left behind. Counting the process's active handles before and after instead
 * also counts timers of other code that happen to be pending at either moment.
 */
function trackHandles() {
  const live = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (type === "Timeout" || type === "TCPWRAP") live.set(id, type);
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  return {
    alive() {
      const kinds = [...live.values()];
      return {
        timers: kinds.filter((k) => k === "Timeout").length,
        sockets: kinds.filter((k) => k === "TCPWRAP").length,
      };
    },
    stop: () => hook.disable(),
  };
}

/**
 * A TCP proxy to the test database whose open connections can be frozen: they stop carrying
 * bytes either way and stay open, like a peer that vanished without closing.
 */
async function freezableProxy(url: string) {
  const target = new URL(url);
  const upstream = { host: target.hostname, port: Number(target.port || 5432) };
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((down) => {
    const up = net.connect(upstream);
    const pair: [net.Socket, net.Socket] = [down, up];
    pairs.add(pair);
    down.pipe(up);
    up.pipe(down);
    const drop = () => {
      down.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    for (const s of pair) {
      s.on("error", drop);
      s.on("close", drop);
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  target.hostname = "127.0.0.1";
  target.port = String((server.address() as net.AddressInfo).port);
  return {
    url: target.toString(),
    freeze() {
      for (const [down, up] of pairs) {
        down.unpipe(up);
        up.unpipe(down);
        down.pause();
        up.pause();
      }
    },
    async close() {
      for (const [down, up] of pairs) {
        down.destroy();
        up.destroy();
      }
      await new Promise((r) => server.close(r));
    },
  };
}

describe("the LISTEN connection", () => {
  // First in the file: no pool connection of an earlier test idles out meanwhile and moves the
  // handle counts.
  it("leaves no timer, socket or backend behind after close(): connected, reconnecting after a kill, or waiting out a backoff", async () => {
    const db = await testDb();
    const app = "pgchatd-test-listener-close";
    const admin = await connectClient(db.url, "pgchatd-test-admin");
    // ALTER DATABASE ... ALLOW_CONNECTIONS is refused from inside the database it changes.
    const server = await connectClient(inject("pg").adminUrl, "pgchatd-test-admin");
    const tracked = trackHandles();
    try {
      const backendsGone = () =>
        until(async () => (await backends(admin, app)).length === 0, "the backends to exit");

      const connected = createListener(db.url, app);
      await connected.connect();
      await connected.listenTo("close_probe");
      await connected.close();
      await backendsGone();

      // Closed while its reconnect is connecting.
      const reconnecting = createListener(db.url, app);
      reconnecting.events.on("error", () => {});
      await reconnecting.connect();
      await reconnecting.listenTo("close_probe");
      const attempt = nextEvent(reconnecting.events, "reconnect");
      await killBackends(admin, app);
      await attempt;
      await reconnecting.close();
      await backendsGone();

      // Closed between two failed attempts: the database refuses connections meanwhile.
      const backingOff = createListener(db.url, app);
      await backingOff.connect();
      await server.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
      try {
        // 55000: the database is not accepting connections.
        const refused = nextEvent<[Error & { code?: string }]>(
          backingOff.events,
          "error",
          (err) => err.code === "55000",
        );
        refused.catch(() => {});
        await killBackends(admin, app);
        await refused;
        await backingOff.close();
      } finally {
        await server.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
      }

      await backendsGone();
      expect(tracked.alive()).toEqual({ timers: 0, sockets: 0 });
    } finally {
      tracked.stop();
      await admin.end();
      await server.end();
    }
  });

  it("never has two statements in flight on its connection: 200 concurrent NOTIFYs, a kill and the LISTEN of four channels on reconnect, 200 more", async () => {
    const db = await testDb();
    const app = "pgchatd-test-listener-overlap";
    const channels = ["overlap_a", "overlap_b", "overlap_c", "overlap_d"];
    const deprecations: string[] = [];
    const onWarning = (w: Error) => {
      if (/already executing a query/.test(w.message)) deprecations.push(w.message);
    };
    process.on("warning", onWarning);
    const tracked = trackInFlight(app);
    const listener = createListener(db.url, app);
    listener.events.on("error", () => {});
    try {
      await listener.connect();
      await listener.listenTo(...channels);
      const received = channels.map((c) => collect(listener, c));
      const burst = (from: number) =>
        Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            listener.run(`SELECT pg_notify('${channels[i % channels.length]}', '${from + i}')`),
          ),
        );
      await burst(0);
      expect(tracked.most()).toBe(1);
      await until(() => received.flat().length === 200, "the first 200 notifications");

      const reconnected = nextEvent(listener.events, "connected");
      await killBackends(db.pool, app);
      await reconnected;
      await burst(200);
      await until(() => received.flat().length === 400, "200 more on all four channels");
      for (const got of received) expect(got).toHaveLength(100);

      expect(tracked.most()).toBe(1);
      expect(deprecations).toEqual([]);
    } finally {
      tracked.restore();
      process.off("warning", onWarning);
      await listener.close();
    }
  });

  it("reports the killed backend's error, emits connected again and receives what commits after, but nothing from a rolled-back transaction", async () => {
    const db = await testDb();
    const app = "pgchatd-test-listener-kill";
    const listener = createListener(db.url, app);
    const errors: (Error & { code?: string })[] = [];
    listener.events.on("error", (err) => errors.push(err));
    let connects = 0;
    listener.events.on("connected", () => connects++);
    const got = collect(listener, "kill_probe");
    try {
      await listener.connect();
      await listener.listenTo("kill_probe");
      await db.pool.query("SELECT pg_notify('kill_probe', 'before')");
      await until(() => got.length === 1, "the notification before the kill");

      const reconnected = nextEvent(listener.events, "connected");
      await killBackends(db.pool, app);
      await reconnected;
      expect(connects).toBe(2);
      // 57P01 admin_shutdown: what pg_terminate_backend sends the backend's client.
      expect(errors.map((e) => e.code)).toContain("57P01");

      await withTx(db.pool, async (c) => {
        await c.query("SELECT pg_notify('kill_probe', 'rolled back')");
        throw new Error("abort");
      }).catch(() => {});
      await db.pool.query("SELECT pg_notify('kill_probe', 'after')");
      await until(() => got.includes("after"), "the notification after the kill");
      expect(got).toEqual(["before", "after"]);
    } finally {
      await listener.close();
    }
  });

  it("reconnects when its connection goes silent: the liveness check finds a peer gone without closing", async () => {
    const db = await testDb();
    const proxy = await freezableProxy(db.url);
    const listener = createListener(proxy.url, "pgchatd-test-listener-silent", {
      livenessCheckMs: 100,
      deadAfterMs: 500,
    });
    const errors: Error[] = [];
    listener.events.on("error", (err) => errors.push(err));
    const got = collect(listener, "silent_probe");
    try {
      await listener.connect();
      await listener.listenTo("silent_probe");
      const reconnected = nextEvent(listener.events, "connected");
      proxy.freeze();
      await reconnected;
      expect(errors.map((e) => e.message)).toContain("LISTEN connection silent for 500 ms");

      await db.pool.query("SELECT pg_notify('silent_probe', 'after')");
      await until(() => got.includes("after"), "the notification after the reconnect");
    } finally {
      await listener.close();
      await proxy.close();
    }
  });

  it("announces itself before LISTENing change events or parts, again after a reconnect, and withdraws once it listens to neither", async () => {
    const db = await testDb();
    const app = "pgchatd-test-listener-announce";
    const listener = createListener(db.url, app, {
      announced: announcing("chat_events", "chat_message_parts"),
    });
    const heard = collect(listener, "chat_events");
    // Whether a publisher on another connection would NOTIFY.
    const publishersNotify = async () =>
      (await db.pool.query<{ x: boolean }>("SELECT chat_listeners_exist() AS x")).rows[0]!.x;
    // The listener's announcement: every slot of the lock held shared.
    const slotsHeld = async () =>
      (
        await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
           WHERE a.application_name = $1 AND a.datname = current_database()
             AND l.locktype = 'advisory' AND l.mode = 'ShareLock' AND l.granted`,
          [app],
        )
      ).rows[0]!.n;
    try {
      await listener.connect();
      await listener.listenTo("chat_runner");
      expect(await publishersNotify()).toBe(false);
      expect(await slotsHeld()).toBe(0);

      await listener.listenTo("chat_events", "chat_message_parts");
      expect(await slotsHeld()).toBe(16);
      expect(await publishersNotify()).toBe(true);
      await notifyChatEvents(db.pool);
      await until(() => heard.includes("batch"), "the batched wake-up");

      const reconnected = nextEvent(listener.events, "connected");
      await killBackends(db.pool, app);
      await reconnected;
      expect(await slotsHeld()).toBe(16);

      await listener.unlistenFrom("chat_events");
      expect(await publishersNotify()).toBe(true);
      // Queued in either order, the calls leave the connection as the last one wants it.
      await Promise.all([
        listener.unlistenFrom("chat_message_parts"),
        listener.listenTo("chat_events"),
        listener.unlistenFrom("chat_events"),
      ]);
      expect(await slotsHeld()).toBe(0);
      expect(await publishersNotify()).toBe(false);
      // Still listening on the channel that needs no announcement.
      const runner = collect(listener, "chat_runner");
      await db.pool.query("SELECT pg_notify('chat_runner', 'still')");
      await until(() => runner.includes("still"), "the notification on chat_runner");
    } finally {
      await listener.close();
    }
  });

  it("an announcement that finds a publisher's slot taken holds nothing and keeps the connection and its other channels, and is made once the publisher is gone, on whichever connection is live by then", async () => {
    const db = await testDb();
    const app = "pgchatd-test-listener-announce-deferred";
    const listener = createListener(db.url, app, {
      announced: announcing("chat_events"),
    });
    const heard = collect(listener, "chat_events");
    const probes = collect(listener, "wake_probe");
    const slotsHeld = (pid: number) => slotsHeldBy(db.pool, pid);
    const publisher = await db.pool.connect();
    try {
      await listener.connect();
      await listener.listenTo("wake_probe");
      const [pid] = await backends(db.pool, app);
      // A publisher that found nobody listening and has not committed yet: its slot stays taken.
      await publisher.query("BEGIN");
      expect((await publisher.query("SELECT chat_listeners_exist() AS x")).rows[0].x).toBe(false);
      // Resolves without waiting for the publisher: listening, not announced.
      await listener.listenTo("chat_events");
      expect(await slotsHeld(pid!)).toBe(0);
      await db.pool.query("SELECT pg_notify('wake_probe', 'still here')");
      await until(() => probes.includes("still here"), "a notification on another channel");

      // Lost meanwhile: the new connection tries for itself, and finds the slot taken too.
      const reconnected = nextEvent(listener.events, "connected");
      await killBackends(db.pool, app);
      await reconnected;
      const [pid2] = await backends(db.pool, app);
      expect(await slotsHeld(pid2!)).toBe(0);

      // Made once the publisher is gone, and `connected` tells the callers to re-read what
      // publishers may have sent to nobody meanwhile.
      const announcedNow = nextEvent(listener.events, "connected");
      await publisher.query("COMMIT");
      await announcedNow;
      expect(await slotsHeld(pid2!)).toBe(16);
      expect(await backends(db.pool, app)).toEqual([pid2]);
      await notifyChatEvents(db.pool);
      await until(() => heard.includes("batch"), "the batched wake-up");
    } finally {
      await publisher.query("ROLLBACK").catch(() => {});
      publisher.release();
      await listener.close();
    }
  });

  it("an announcement that fails otherwise costs the connection: the reconnect announces once", async () => {
    const db = await testDb();
    const app = "pgchatd-test-listener-announce-fails";
    let failures = 1;
    const listener = createListener(db.url, app, {
      announced: {
        channels: new Set(["chat_events"]),
        // The first announcement fails as a broken function would (42883 undefined_function).
        get announce() {
          return failures-- > 0
            ? "SELECT chat_listener_announce_missing()"
            : announceChatListenerQuery;
        },
        withdraw: withdrawChatListenerQuery,
      },
    });
    const errors: (Error & { code?: string })[] = [];
    listener.events.on("error", (err) => errors.push(err));
    const heard = collect(listener, "chat_events");
    try {
      await listener.connect();
      const [pid] = await backends(db.pool, app);
      const reconnected = nextEvent(listener.events, "connected");
      await listener.listenTo("chat_events");
      await reconnected;
      expect(errors.map((e) => e.code)).toContain("42883");
      const [now] = await backends(db.pool, app);
      expect(now).not.toBe(pid);
      await notifyChatEvents(db.pool);
      await until(() => heard.includes("batch"), "the batched wake-up after the reconnect");
    } finally {
      await listener.close();
    }
  });
});
