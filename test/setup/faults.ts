import type { ChildProcess } from "node:child_process";
import { afterAll, expect } from "vitest";
import { createClient, type WatchEvent } from "../../packages/client/src/index.ts";
import type { Pool } from "../../src/db/index.ts";
import { watchKinds } from "../../src/watch/index.ts";
import { type PgchatdProcess, spawnPgchatd } from "../../support/spawn.ts";

/*
 * Fault tests (test/faults): real `pgchatd serve` processes, clients that keep writing while the
 * database or a process fails, and the checks that nothing a 2xx acknowledged was lost and
 * nothing was done twice, against the messages and the change-event log (chat_events).
 */

/** A fixed admin token (PGCHATD_BOOTSTRAP_TOKEN), so every server of a test uses the same one. */
export const adminToken = `faultsadm1-${"f".repeat(32)}`;

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

/** `pgchatd serve` on `databaseUrl`, with its runner on the local echo model. */
export function startServe(
  databaseUrl: string,
  dataDir: string,
  env: Record<string, string> = {},
): Promise<PgchatdProcess> {
  return spawnPgchatd("serve", {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      DATABASE_URL: databaseUrl,
      PGCHATD_DATA_DIR: dataDir,
      PGCHATD_BOOTSTRAP_TOKEN: adminToken,
      PORT: "0",
      LOG_LEVEL: "warn",
      // A chat made pending while its runner's wake-up was lost (the LISTEN connection down) is
      // found by the poll: 100 ms instead of a second keeps the test short.
      PGCHATD_RUNNER_POLL_MS: "100",
      // Turns lost while the database was away are given back at the next heartbeat.
      PGCHATD_RUNNER_HEARTBEAT_MS: "500",
      ...env,
    },
    onSpawn: (child) => children.push(child),
  });
}

/** One request a client made, and what came of it. */
export interface Outcome {
  what: "create" | "send";
  /** The text of the message it carried: unique, so the message can be found in the database. */
  text: string;
  chatId?: string;
  /** 0: no HTTP response (the connection failed). */
  status: number;
  body: unknown;
  retryAfter: string | null;
  contentType: string | null;
  ms: number;
  /** Date.now() when it was answered. */
  at: number;
  /**
   * For a request that got no response (TrafficOptions.recheck): whether the client then found
   * its message stored, as it looked before retrying.
   */
  recheck?: "present" | "absent";
}

export interface TrafficOptions {
  /** The text of message number `seq` (unique within the file); by default a plain one. */
  text?: (seq: number, plain: string) => string;
  /**
   * A request that got no response (its server died) is looked up on the next server: a create
   * by its label, a send in the chat's queue and then its history. Retried only when absent,
   * so a message is never sent twice.
   */
  recheck?: boolean;
}

/** Numbers the messages of every Traffic of a file, so their texts stay unique. */
let seq = 0;

const text = (s: string) => [{ type: "text", text: s }];

/**
 * Clients that create chats and send one more message to each, as fast as they are answered; a
 * 503 is retried after its Retry-After, as a well-behaved client does. `baseUrls` are taken in
 * turn, so clients of several servers share the work.
 */
export class Traffic {
  readonly outcomes: Outcome[] = [];
  private stopped = false;
  private readonly running: Promise<void>[] = [];
  /** Makes its texts unique among the Traffic of one database. */
  private readonly label = Math.random().toString(36).slice(2, 8);

  constructor(
    private readonly baseUrls: () => string[],
    private readonly options: TrafficOptions = {},
    private readonly token = adminToken,
    /** A request unanswered this long is a hang: it fails the test instead of waiting on. */
    private readonly requestTimeoutMs = 20_000,
  ) {}

  private nextText(plain: string): string {
    return this.options.text?.(seq++, plain) ?? plain;
  }

  private base(i: number, n: number): string {
    const urls = this.baseUrls();
    return urls[(i + n) % urls.length]!;
  }

  private async get<T>(base: string, path: string): Promise<T> {
    const res = await fetch(`${base}/api/experimental/chats${path}`, {
      headers: { authorization: `Bearer ${this.token}` },
      signal: AbortSignal.timeout(this.requestTimeoutMs),
    });
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  start(clients: number): void {
    for (let i = 0; i < clients; i++) this.running.push(this.client(i));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.running);
  }

  acknowledged(since = 0): Outcome[] {
    return this.outcomes.filter((o) => o.at >= since && o.status >= 200 && o.status < 300);
  }

  failed(since = 0): Outcome[] {
    return this.outcomes.filter((o) => o.at >= since && !(o.status >= 200 && o.status < 300));
  }

  private async request(
    i: number,
    n: number,
    what: Outcome["what"],
    path: string,
    message: string,
    labels?: Record<string, string>,
  ): Promise<Outcome> {
    const base = this.base(i, n);
    const started = Date.now();
    let outcome: Outcome;
    try {
      const res = await fetch(`${base}/api/experimental/chats${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
        body: JSON.stringify({ content: text(message), ...(labels ? { labels } : {}) }),
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
      const raw = await res.text();
      let body: unknown = raw;
      try {
        body = JSON.parse(raw);
      } catch {}
      outcome = {
        what,
        text: message,
        status: res.status,
        body,
        retryAfter: res.headers.get("retry-after"),
        contentType: res.headers.get("content-type"),
        ms: Date.now() - started,
        at: Date.now(),
      };
    } catch (err) {
      outcome = {
        what,
        text: message,
        status: 0,
        body: String((err as Error).cause ?? err),
        retryAfter: null,
        contentType: null,
        ms: Date.now() - started,
        at: Date.now(),
      };
    }
    this.outcomes.push(outcome);
    return outcome;
  }

  private async client(i: number): Promise<void> {
    for (let n = 0; !this.stopped; n++) {
      const key = `${this.label}-${i}-${n}`;
      const createText = this.nextText(`create ${key}`);
      const create = () => this.request(i, n, "create", "", createText, { req: key });
      const created = await create();
      await this.backOff(created);
      let chatId: string | undefined;
      if (created.status === 201) chatId = (created.body as { id: string }).id;
      else if (created.status === 0 && this.options.recheck) {
        const found = await this.get<{ id: string }[]>(
          this.base(i, n),
          `?label=${encodeURIComponent(`req:${key}`)}`,
        );
        created.recheck = found.length > 0 ? "present" : "absent";
        if (found.length > 1) throw new Error(`create ${key} made ${found.length} chats`);
        chatId = found[0]?.id;
        if (!chatId) {
          const retried = await create();
          if (retried.status === 201) chatId = (retried.body as { id: string }).id;
          retried.chatId = chatId;
        }
      }
      if (!chatId) continue;
      created.chatId = chatId;
      const sendText = this.nextText(`send ${key}`);
      const send = () => this.request(i, n, "send", `/${chatId}/messages`, sendText);
      const sent = await send();
      sent.chatId = chatId;
      await this.backOff(sent);
      if (sent.status === 0 && this.options.recheck) {
        sent.recheck = (await this.stored(this.base(i, n), chatId, sendText))
          ? "present"
          : "absent";
        if (sent.recheck === "absent") (await send()).chatId = chatId;
      }
    }
  }

  /**
   * Whether `message` is in the chat's queue or history. The queue first: a message admitted from
   * it between the two reads is in the history by the second.
   */
  private async stored(base: string, chatId: string, message: string): Promise<boolean> {
    type Message = { id: number; content: { text?: string }[] };
    type Page = { messages: Message[]; queued_messages: Message[]; has_more: boolean };
    const has = (ms: Message[]) => ms.some((m) => m.content.some((p) => p.text === message));
    const queue = await this.get<Page>(base, `/${chatId}/messages`);
    if (has(queue.queued_messages)) return true;
    for (let after = 0; ; ) {
      const page = await this.get<Page>(base, `/${chatId}/messages?after_id=${after}&limit=200`);
      if (has(page.messages)) return true;
      if (!page.has_more) return false;
      after = page.messages.at(-1)!.id;
    }
  }

  /** A refused request waits as its Retry-After asks (a connection failure: as a 1 s one). */
  private async backOff(o: Outcome): Promise<void> {
    if (o.status !== 503 && o.status !== 0) return;
    const seconds = Number(o.retryAfter ?? "1");
    await new Promise((r) => setTimeout(r, Math.min(seconds, 1) * 1000));
  }
}

/**
 * Every request either succeeded or was refused with 503, the documented JSON error body and a
 * Retry-After (docs/errors.md), within the request timeout: never a 500, a reset or a hang.
 */
export function expectCleanFailures(outcomes: Outcome[]): void {
  const unclean = outcomes.filter(
    (o) =>
      !(o.status >= 200 && o.status < 300) &&
      !(
        o.status === 503 &&
        o.contentType?.startsWith("application/json") &&
        typeof (o.body as { message?: unknown }).message === "string" &&
        /^\d+$/.test(o.retryAfter ?? "")
      ),
  );
  expect(unclean.map((o) => ({ what: o.what, status: o.status, body: o.body }))).toEqual([]);
}

/** Polls `check` until it returns true, or fails naming `what` after `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface ChatRow {
  id: string;
  status: string;
  worker_id: string | null;
  messages: { role: string; text: string }[];
}

async function chatsWithMessages(pool: Pool): Promise<ChatRow[]> {
  const { rows } = await pool.query<ChatRow>(
    `SELECT c.id, c.status::text, c.worker_id,
       coalesce((SELECT jsonb_agg(jsonb_build_object('role', m.role,
           'text', (SELECT string_agg(p ->> 'text', '') FROM jsonb_array_elements(m.content) p
                    WHERE p ->> 'type' = 'text')) ORDER BY m.id)
         FROM chat_messages m
         WHERE m.chat_id = c.id AND NOT m.deleted AND m.role IN ('user', 'assistant')), '[]')
         AS messages
     FROM chats c ORDER BY c.created_at`,
  );
  return rows;
}

/**
 * Waits until no chat is pending or running, then checks every chat: each user message was
 * answered exactly once ("echo: <text>", right after it), no user message is queued, and every
 * acknowledged request's message is stored in the chat it named. Returns the chats.
 */
export async function expectEveryMessageAnsweredOnce(
  pool: Pool,
  acknowledged: Outcome[],
  timeoutMs = 30_000,
): Promise<ChatRow[]> {
  let chats: ChatRow[] = [];
  const busy = () =>
    chats.filter(
      (c) =>
        c.status !== "waiting" ||
        c.worker_id !== null ||
        c.messages.filter((m) => m.role === "user").length !==
          c.messages.filter((m) => m.role === "assistant").length,
    );
  await until(
    async () => {
      chats = await chatsWithMessages(pool);
      const { rows } = await pool.query("SELECT 1 FROM chat_queued_messages LIMIT 1");
      return busy().length === 0 && rows.length === 0;
    },
    "every chat to be answered",
    timeoutMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(busy().slice(0, 5))}`);
  });
  for (const c of chats) {
    const want = c.messages
      .filter((m) => m.role === "user")
      .flatMap((m) => [m, { role: "assistant", text: `echo: ${m.text}` }]);
    expect(c.messages, `chat ${c.id}`).toEqual(want);
  }
  const stored = new Map(chats.map((c) => [c.id, new Set(c.messages.map((m) => m.text))]));
  const missing = acknowledged.filter((o) => !stored.get(o.chatId!)?.has(o.text));
  expect(missing.map((o) => `${o.what} ${o.text} → ${o.status}`)).toEqual([]);
  // A message is stored once: a request that failed after its commit is not repeated by anyone.
  const texts = chats.flatMap((c) =>
    c.messages.filter((m) => m.role === "user").map((m) => m.text),
  );
  expect(texts.length).toBe(new Set(texts).size);
  return chats;
}

/**
 * A watch stream through the typed client (packages/client), which reconnects with Last-Event-ID
 * as real clients do. `floor` is the cursor it started from: `lastEventId` when given, else its
 * first keep-alive's.
 */
export async function openWatch(
  baseUrl: () => string,
  opts: { token?: string; lastEventId?: string } = {},
) {
  const token = opts.token ?? adminToken;
  const events: WatchEvent[] = [];
  /** Requests the client made for the stream: 1 plus its reconnects. */
  let connections = 0;
  // The client takes one base URL; a reconnect reads the current one (a restarted server moves).
  const client = createClient({
    baseUrl: "http://pgchatd.invalid",
    token,
    fetch: (input, init) => {
      const req = new Request(input, init);
      const url = new URL(req.url);
      connections++;
      return fetch(`${baseUrl()}${url.pathname}${url.search}`, {
        headers: req.headers,
        signal: init?.signal ?? req.signal,
      });
    },
  });
  const stream = client.watch({
    retryMs: 100,
    ...(opts.lastEventId ? { lastEventId: opts.lastEventId } : {}),
  });
  const reading = (async () => {
    for await (const e of stream) events.push(e);
  })();
  // A watch resumed while the server refuses streams (503) retries until it is accepted.
  await stream.opened;
  if (!opts.lastEventId) {
    await until(() => stream.lastEventId !== undefined, "the watch stream's first cursor");
  }
  const floor = opts.lastEventId ?? stream.lastEventId!;
  return {
    events,
    floor,
    /**
     * What a client resumes after: its last event's id. Not the stream's lastEventId, which may
     * name events read off the socket that the loop above had not taken yet when it closed.
     */
    resumeAfter: () => events.at(-1)?.id ?? floor,
    received: () => events.map((e) => `${e.id} ${e.event}`),
    connections: () => connections,
    async close() {
      stream.close();
      await reading;
    },
  };
}

/** The watch stream as the log says it must be: "<cursor> <kind>" after `floor`, in order. */
export async function watchLog(pool: Pool, ownerId: string, floor: string): Promise<string[]> {
  const { rows } = await pool.query<{ cursor: string; kind: string }>(
    `SELECT xid::text || '.' || id AS cursor, kind::text
     FROM chat_events
     WHERE owner_id = $1 AND kind::text = ANY($2::text[]) AND (xid, id) > ($3::xid8, $4::bigint)
     ORDER BY xid, id`,
    [ownerId, [...watchKinds], ...floor.split(".")],
  );
  return rows.map((r) => `${r.cursor} ${r.kind}`);
}

/** Waits until `received` has as many events as the log, then checks they are the same. */
export async function expectWatchMatchesLog(
  pool: Pool,
  ownerId: string,
  watch: { floor: string; received: () => string[] },
  timeoutMs = 20_000,
): Promise<string[]> {
  let want = await watchLog(pool, ownerId, watch.floor);
  await until(
    async () => {
      want = await watchLog(pool, ownerId, watch.floor);
      return watch.received().length >= want.length;
    },
    "the watch stream to receive every logged event",
    timeoutMs,
  ).catch(() => {});
  expect(watch.received()).toEqual(want);
  return want;
}

/**
 * Nothing half-written: every chat has its `created` event and its first user message, and
 * every message users see has its `message` event (chat_events), whatever died mid-request.
 */
export async function expectNoHalfWrites(pool: Pool): Promise<void> {
  const { rows } = await pool.query<{ problem: string }>(
    `SELECT 'chat ' || c.id || ' has no created event' AS problem FROM chats c
     WHERE NOT EXISTS (SELECT 1 FROM chat_events e WHERE e.chat_id = c.id AND e.kind = 'created')
     UNION ALL
     SELECT 'chat ' || c.id || ' has no user message' FROM chats c
     WHERE NOT EXISTS (SELECT 1 FROM chat_messages m WHERE m.chat_id = c.id AND m.role = 'user')
     UNION ALL
     SELECT 'message ' || m.id || ' has no message event' FROM chat_messages m
     WHERE NOT m.deleted AND m.role IN ('user', 'assistant')
       AND NOT EXISTS (SELECT 1 FROM chat_events e WHERE e.chat_id = m.chat_id
                       AND e.kind = 'message' AND (e.payload ->> 'message_id')::bigint = m.id)`,
  );
  expect(rows.map((r) => r.problem)).toEqual([]);
}
