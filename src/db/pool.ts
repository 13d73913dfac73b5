import pg from "pg";

/**
 * Anything that runs a query: a pool, or a client checked out for a transaction. The generated
 * query functions accept exactly this shape.
 */
export type Queryable = Pick<pg.ClientBase, "query">;
/**
 * A pool, or a wrapper of one: each query takes a connection of its own, so a caller may run
 * several at once (Promise.all). One client may not: node-postgres runs one statement at a time,
 * queues the others with a deprecation warning, and pg 9 refuses them. `escapeIdentifier`, which
 * every Client and PoolClient has and a Pool has not, keeps them out at compile time.
 */
export type PoolQueryable = Queryable & { escapeIdentifier?: never };
export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

const OID = {
  int8: 20,
  timestamptz: 1184,
  timestamp: 1114,
  int8Array: 1016,
  timestamptzArray: 1185,
} as const;

/**
 * int8 arrives as a number. Every bigint here is an identity id, a token count or an amount of
 * micros, all far below 2^53; a value beyond that is refused loudly rather than rounded.
 */
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) {
    throw new RangeError(`bigint ${text} does not fit a JavaScript number`);
  }
  return n;
}

/**
 * timestamptz arrives as RFC 3339 text in UTC with exactly six fractional digits
 * ("2026-01-02T03:04:05.123456Z"). A JS Date would drop the microseconds, and clients send
 * timestamps back (stale-write guards compare them exactly).
 * The pool sets TimeZone=UTC, so Postgres prints "+00"; other offsets are still converted. It
 * sets DateStyle=ISO too: a database or role with another DateStyle would otherwise hand back
 * text this parser passes through, which another session may read back differently (12/07 as
 * July), and runner leases are matched on that text.
 */
export function parseTimestamptz(text: string): string {
  if (text === "infinity" || text === "-infinity") return text;
  const m =
    /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-]\d\d(?::?\d\d)?(?::?\d\d)?)?( BC)?$/.exec(
      text,
    );
  if (!m) return text;
  const [, y, mo, d, h, mi, s, frac = "", offset = "+00", bc] = m;
  const micros = frac.padEnd(6, "0");
  if (offset === "+00" && !bc) {
    return `${y}-${mo}-${d}T${h}:${mi}:${s}.${micros}Z`;
  }
  const sign = offset.startsWith("-") ? -1 : 1;
  const parts = offset.slice(1).replaceAll(":", "");
  const offsetSeconds =
    sign *
    (Number(parts.slice(0, 2)) * 3600 +
      Number(parts.slice(2, 4) || 0) * 60 +
      Number(parts.slice(4, 6) || 0));
  const ms =
    Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) -
    offsetSeconds * 1000;
  const iso = new Date(ms).toISOString(); // yyyy-mm-ddThh:mm:ss.000Z
  return `${iso.slice(0, 19)}.${micros}Z`;
}

function parseArray<T>(text: string, parseItem: (s: string) => T): (T | null)[] {
  // 1009 is text[]: its parser splits any one-dimensional array literal into strings.
  const arrayParser = (pg.types.getTypeParser as (oid: number) => (s: string) => (string | null)[])(
    1009,
  );
  return arrayParser(text).map((v) => (v === null ? null : parseItem(v)));
}

const typeParsers: pg.CustomTypesConfig = {
  // biome-ignore lint/suspicious/noExplicitAny: pg's overloads are keyed by format; we only use text.
  getTypeParser: ((oid: number, format?: "text" | "binary"): any => {
    switch (oid) {
      case OID.int8:
        return parseInt8;
      case OID.timestamptz:
      case OID.timestamp:
        return parseTimestamptz;
      case OID.int8Array:
        return (s: string) => parseArray(s, parseInt8);
      case OID.timestamptzArray:
        return (s: string) => parseArray(s, parseTimestamptz);
      default:
        return pg.types.getTypeParser(oid, format);
    }
  }) as pg.CustomTypesConfig["getTypeParser"],
};

/** See clientConfig: the longest a pgchatd session may sit idle inside a transaction. */
export const idleInTransactionTimeoutMs = 10_000;

export interface PoolOptions {
  connectionString: string;
  /** Upper bound on connections; each is a backend process on the server. */
  max?: number;
  applicationName?: string;
  /**
   * The session setting pgchatd.events (sql/functions/chat_events.sql): whether this pool's
   * transactions NOTIFY from the change-event triggers. Unset means "trigger".
   */
  eventsMode?: "trigger" | "batched" | "off";
  /**
   * plan_cache_mode = force_generic_plan: a prepared statement (withPreparedStatements) is
   * planned once, not again for each call's arguments. For pools that run only queries whose one
   * generic plan suits every argument.
   */
  genericPlans?: boolean;
  /**
   * The session setting pgchatd.runner_id: this process's runner, which it wakes itself after its
   * writes, so a chat they make pending chooses it first, without a NOTIFY (chat_runner_choose in
   * sql/functions/chat_runners.sql). Unset in a process without a runner.
   */
  runnerId?: string | undefined;
}

/** Connection settings shared by pools and one-off clients, so both parse values alike. */
export function clientConfig(
  connectionString: string,
  applicationName = "pgchatd",
  eventsMode: PoolOptions["eventsMode"] = "trigger",
  genericPlans = false,
  runnerId?: string,
): pg.ClientConfig {
  if (runnerId !== undefined && !/^[0-9a-f-]{36}$/i.test(runnerId)) {
    throw new Error(`runnerId must be a uuid, not ${JSON.stringify(runnerId)}`);
  }
  return {
    connectionString,
    types: typeParsers,
    application_name: applicationName,
    // Timestamps are printed in UTC so parseTimestamptz takes its fast path.
    // random_page_cost 1.1: the working set is in memory or on SSD. With the default (4) the planner
    // prefers a sequential scan plus sort over 50 ordered index lookups for a small owner's list
    // page (measured in bench/list.ts: 1.49 ms with a Seq Scan and Sort, 0.52 ms without).
    // jit off: pgchatd's statements are short; where the planner's estimate is large (the partial
    // days of a cost window, whose bounds it cannot see), compiling took 10-140 ms of a 14 ms
    // query (docs/operations.md "Planner settings").
    // idle_in_transaction_session_timeout: pgchatd never leaves a transaction open while it waits
    // for something else, so one idle that long is a leak. Ended, it cannot hold the change-event
    // horizon (and every watch stream) back for longer (docs/operations.md "Long transactions").
    options: `-c TimeZone=UTC -c DateStyle=ISO -c random_page_cost=1.1 -c jit=off -c pgchatd.events=${eventsMode} -c idle_in_transaction_session_timeout=${idleInTransactionTimeoutMs}${genericPlans ? " -c plan_cache_mode=force_generic_plan" : ""}${runnerId ? ` -c pgchatd.runner_id=${runnerId}` : ""}`,
  };
}

export function createPool(opts: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    ...clientConfig(
      opts.connectionString,
      opts.applicationName,
      opts.eventsMode,
      opts.genericPlans,
      opts.runnerId,
    ),
    max: opts.max ?? 10,
    // A connection that cannot be made in 10 s means the server is down or saturated; fail the
    // request instead of queueing it forever.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener the
  // process would crash. The pool replaces the client on the next checkout.
  pool.on("error", () => {});
  // pg-pool listens for that only while a client is idle. A checked-out client whose connection
  // is lost between two statements (a transaction awaiting other work, housekeeping's lock
  // holder) emits 'error' with no listener, which crashed the process when the database
  // restarted. Its next statement fails instead, and the pool drops it when it is released.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}

/** Postgres refuses a prepared statement whose result columns changed since it was prepared. */
const resultTypeChanged = "cached plan must not change result type";

/**
 * `pool` with each statement prepared once per connection and run by name from then on: parsed
 * once, and with PoolOptions.genericPlans planned once. For the statements that change events
 * run for every commit (src/watch): their planning cost several times their execution (the chat
 * row view 0.6-0.8 ms planned against 0.13-0.2 ms run, measured with `BENCH_PG_STATEMENTS=1 npm
 * run bench -- watch`). A statement is named after its query (the generated code's first line,
 * `-- name: X`). One whose result columns a migration changed (a column added to a view it
 * selects `*` from) is prepared again under a new name.
 */
export function withPreparedStatements(pool: Pool): PoolQueryable {
  let generation = 0;
  const named = (config: pg.QueryConfig) => {
    const name = /^-- name: (\w+)/.exec(config.text)?.[1];
    return name ? { ...config, name: `${name}_${generation}` } : config;
  };
  const query = async (config: pg.QueryConfig) => {
    try {
      return await pool.query(named(config));
    } catch (err) {
      if ((err as { message?: string }).message !== resultTypeChanged) throw err;
      generation++;
      return await pool.query(named(config));
    }
  };
  return { query: query as PoolQueryable["query"] };
}

export async function connectClient(connectionString: string, applicationName?: string) {
  const client = new pg.Client(clientConfig(connectionString, applicationName));
  await client.connect();
  return client;
}

/**
 * Runs `fn` in a transaction on one client and commits, or rolls back when it throws.
 */
export async function withTx<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query("BEGIN");
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    // A client whose ROLLBACK fails is in an unknown state; destroy it instead of reusing it.
    await client.query("ROLLBACK").catch((rollbackErr: Error) => {
      broken = rollbackErr;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}
