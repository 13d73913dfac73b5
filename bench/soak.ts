/*
 * A soak: mixed load on a realistic deployment for minutes, then what must hold after it. Prints
 * numbers; never passes or fails.
 *
 *   npm run bench -- soak [minutes]        default 10
 *   BENCH_SOAK_USERS=30 BENCH_SOAK_RATE=20 BENCH_SOAK_IN_FLIGHT=8 ...   the load's bounds
 *
 * Database: as `npm run bench -- watch` (bench/watch_servers.ts): a scratch database on
 * DATABASE_URL's server when set, else an embedded cluster; removed afterwards, also on Ctrl-C
 * or an error (the processes are stopped first; a second Ctrl-C exits at once and only kills them).
 *
 * Processes: 2 `pgchatd serve` without their runners (PGCHATD_RUNNER=false) and 2 `pgchatd
 * runner`, all with PGCHATD_EVENTS_NOTIFY=batched (several processes on one database,
 * docs/operations.md "Change events"), on the built-in local/echo model.
 *
 * Load: BENCH_SOAK_USERS simulated users (default 30) with the typed client (packages/client),
 * each owning up to 4 chats, doing one request at a time after a think time (exponential, mean
 * 1 s): create chats (labelled, with a client tool `lookup`), send messages (plain text, `/sleep`
 * turns that stay running for 3 s, `/tool lookup` turns that need tool results), send with
 * busy_behavior interrupt, interrupt, promote (send now) and delete queued messages, edit their
 * last message, answer tool calls (seen as `action_required` on their watch stream), archive and
 * unarchive, pin, unpin and reorder, list (label filter, keyset pages), search (`q`), read a
 * chat and its messages. Every request takes the next server in turn, as a load balancer would.
 * All of them together send at most BENCH_SOAK_RATE requests a second (default 20) with at most
 * BENCH_SOAK_IN_FLIGHT at once (default 8): the soak measures a steady state, not an overload.
 * Bounded: at most 40 messages sent per chat and 4 chats per user, so 10 minutes leave at most
 * 120 chats and some 10,000 messages at the defaults.
 *
 * Streams: each user keeps one watch stream and one chat stream open; every 5–60 s (random) the
 * watch is closed and opened again (through the balancer: either server) with its Last-Event-ID, and the chat
 * stream either resumes the same way or moves to another chat (a fresh snapshot).
 *
 * At the end, after a drain (no new requests; chats waiting for tool results are interrupted;
 * until no chat is pending or running), it prints:
 * - per route (method and pattern): count, p50 and p99 latency (ms, until the whole body was
 *   read; streams: until the headers), and statuses other than 2xx: races the load provokes on
 *   purpose (isRace: 409 and stale calls of tool results, 404 of a queued message already
 *   admitted, 429 of a full queue) apart from the rest, with the first bodies of the rest; any
 *   5xx is flagged.
 * - events delivered against the log: for each watch subscriber, the events it received across
 *   its reconnects against the chat_events rows of its owner between its first and its last
 *   cursor (lost, duplicated; expected 0 and 0); for each chat stream, the `message` events it
 *   received against the chat's `message` rows after its snapshot's cursor up to its last one,
 *   and any message received twice (snapshot included).
 * - turns: every acknowledged user message (each carries a text unique in its chat) and how many
 *   answers it got: a final assistant message (one without tool calls) before the chat's next
 *   user message. 0 is expected only when the load cut it (an interrupt, an edit, an archive or
 *   a promotion on its chat after it was acknowledged, or the queued message deleted).
 * - the RSS of each process every minute (Postgres: the sum of its processes' proportional set
 *   size, embedded cluster only), and a verdict: "growing" when the mean of the last minute's
 *   samples exceeds that of the minute before mid-run (the first half is the warm-up) by more
 *   than 10% and 10 MiB, else "flat"; beside it the servers' V8 heap in use (their /metrics), which a leak in
 *   JavaScript grows while RSS may hide it.
 * - pg_total_relation_size and row count of every table of the database at the end.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import type pg from "pg";
import {
  type ChatStreamEvent,
  createClient,
  type EventStream,
  type PgchatdClient,
  type WatchEvent,
} from "../packages/client/src/index.ts";
import { migrate } from "../src/db/migrate.ts";
import { connectClient } from "../src/db/pool.ts";
import { insertAPIKey } from "../src/generated/api_keys.ts";
import { generateToken } from "../src/lib/tokens.ts";
import { watchKinds } from "../src/watch/kinds.ts";
import { spawnPgchatd } from "../support/spawn.ts";
import { describeMachine, int, ms, table } from "./measure.ts";
import { percentile } from "./stats.ts";
import {
  type BenchDatabase,
  children,
  now,
  type ServerProcess,
  scrapeMetrics,
  sleep,
  spawnServer,
  withBenchDatabase,
} from "./watch_servers.ts";

const users = Number(process.env.BENCH_SOAK_USERS ?? 30);
const ratePerSecond = Number(process.env.BENCH_SOAK_RATE ?? 20);
const maxInFlight = Number(process.env.BENCH_SOAK_IN_FLIGHT ?? 8);
const chatsPerUser = 4;
/** Keeps a chat's history, and the tables, from growing with the run's length past what 10 min need. */
const maxSendsPerChat = 40;
const thinkMeanMs = 1_000;
/** A stream lives this long (uniform) before it is cut and resumed. */
const streamLifeMs = [5_000, 60_000] as const;
/** Runners that are still busy after this long have fallen behind for good: the report says so. */
const maxDrainMs = 120_000;
/** A RSS sample this often; the report shows one a minute. */
const rssSampleMs = 10_000;
/**
 * "Growing": the last minute's mean RSS above the baseline's by more than both. The baseline is
 * the minute before mid-run, not minute 1: the servers' warm-up (pools filling, V8 sizing its
 * heap) lasts 2 to 4 minutes, and their minute-1 sample fell in a dip after the first full GC
 * (151 → 133 → 151 MiB), which called a flat server growing.
 */
const growth = { ratio: 1.1, mib: 10 };
/** SIGINTs closer than this are one Ctrl-C (see benchSoak). */
const doubleSigintMs = 3_000;
/** /sleep turns stay running this long, so queueing, promotes and interrupts meet busy chats. */
const slowTurnMs = 3_000;

// ---------------------------------------------------------------------------------------------
// Requests: spread over the servers, bounded, measured per route

interface RouteStats {
  latencies: number[];
  statuses: Map<number, number>;
  /** Of those, the answers isRace counts as races the load provoked. */
  races: Map<number, number>;
  /** The first bodies of unexpected statuses, to say what they were. */
  samples: string[];
}

/**
 * Answers the load provokes on purpose (docs/api.md "Messages"): a queued message admitted before
 * its promotion or deletion, a full queue, tool results racing an interrupt, an edit, or a newer
 * step whose action_required had not reached the user's watch yet.
 */
function isRace(route: string, status: number, body: string): boolean {
  switch (route) {
    case "POST /api/experimental/chats/{chat}/tool-results":
      return status === 409 || (status === 400 && body.includes("not pending:"));
    case "POST /api/experimental/chats/{chat}/queue/{queued}/promote":
    case "DELETE /api/experimental/chats/{chat}/queue/{queued}":
      return status === 404;
    case "POST /api/experimental/chats/{chat}/messages":
      return status === 429;
    default:
      return false;
  }
}

const segmentNames: Record<string, string> = {
  chats: "{chat}",
  messages: "{message}",
  queue: "{queued}",
};

/** The route pattern of a path: ids become the parameter their parent segment names. */
export function routeOf(method: string, pathname: string): string {
  const parts = pathname.split("/");
  const out = parts.map((s, i) =>
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(s) || /^\d+$/.test(s)
      ? (segmentNames[parts[i - 1] ?? ""] ?? "{id}")
      : s,
  );
  return `${method} ${out.join("/")}`;
}

class Limiter {
  private tokens: number;
  private last = now();
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  constructor(
    private readonly perSecond: number,
    private readonly concurrency: number,
  ) {
    this.tokens = perSecond / 4;
  }
  async acquire() {
    for (;;) {
      const t = now();
      this.tokens = Math.min(
        this.perSecond / 4,
        this.tokens + ((t - this.last) / 1000) * this.perSecond,
      );
      this.last = t;
      if (this.tokens >= 1 && this.inFlight < this.concurrency) {
        this.tokens -= 1;
        this.inFlight++;
        return;
      }
      if (this.inFlight >= this.concurrency) {
        await new Promise<void>((r) => this.waiters.push(r));
      } else {
        await sleep(((1 - this.tokens) / this.perSecond) * 1000);
      }
    }
  }
  release() {
    this.inFlight--;
    this.waiters.shift()?.();
  }
}

class Http {
  readonly routes = new Map<string, RouteStats>();
  private next = 0;
  readonly limiter = new Limiter(ratePerSecond, maxInFlight);
  constructor(private readonly servers: string[]) {}

  private record(route: string, status: number, ms: number, body?: ArrayBuffer) {
    let r = this.routes.get(route);
    if (!r) {
      r = { latencies: [], statuses: new Map(), races: new Map(), samples: [] };
      this.routes.set(route, r);
    }
    r.statuses.set(status, (r.statuses.get(status) ?? 0) + 1);
    if (status >= 200 && status < 300) {
      r.latencies.push(ms);
      return;
    }
    const text = body ? Buffer.from(body).toString("utf8") : "";
    if (isRace(route, status, text)) r.races.set(status, (r.races.get(status) ?? 0) + 1);
    else if (r.samples.length < 3) r.samples.push(`${status} ${text.slice(0, 200)}`);
  }

  /** A fetch for the client: the next server in turn; plain requests wait for the limiter. */
  readonly fetch: typeof fetch = async (input, init) => {
    const req = input instanceof Request ? input : new Request(input, init);
    const url = new URL(req.url);
    const server = this.servers[this.next++ % this.servers.length]!;
    const stream = req.headers.get("accept") === "text/event-stream";
    const route = routeOf(req.method, url.pathname);
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.text();
    if (!stream) await this.limiter.acquire();
    const t0 = now();
    try {
      const res = await fetch(server + url.pathname + url.search, {
        method: req.method,
        headers: req.headers,
        body,
        signal: init?.signal ?? req.signal,
      });
      if (stream) {
        this.record(route, res.status, now() - t0);
        return res;
      }
      const buf = await res.arrayBuffer();
      this.record(route, res.status, now() - t0, buf);
      return new Response(buf.byteLength > 0 ? buf : null, {
        status: res.status,
        headers: res.headers,
      });
    } catch (err) {
      if (!(err instanceof Error && err.name === "AbortError")) this.record(route, 0, now() - t0);
      throw err;
    } finally {
      if (!stream) this.limiter.release();
    }
  };
}

// ---------------------------------------------------------------------------------------------
// What the load did, to check against the database afterwards

interface ChatState {
  id: string;
  archived: boolean;
  pinned: boolean;
  /** The next per-chat counter: it makes every text sent to the chat unique. */
  k: number;
  sends: number;
  lastUserMessageId: number | undefined;
  queued: { id: number; ack: Ack }[];
}

interface Ack {
  chatId: string;
  text: string;
  at: number;
  queued: boolean;
  /** Its queued message was deleted (204). */
  deleted: boolean;
}

interface StreamRecord {
  ownerId: string;
  chatId?: string;
  /** The first cursor it saw (watch: the `watching` position; chat stream: the snapshot's). */
  start: string | undefined;
  last: string | undefined;
  /** Watch: event ids; chat stream: message ids. */
  received: Map<string, number>;
  reconnects: number;
  resyncs: number;
}

const cuts = new Map<string, number[]>();
const cut = (chatId: string) => {
  const list = cuts.get(chatId) ?? [];
  list.push(now());
  cuts.set(chatId, list);
};
const acks: Ack[] = [];
const streamRecords: { watch: StreamRecord[]; chat: StreamRecord[] } = { watch: [], chat: [] };

const lookupTool = {
  name: "lookup",
  description: "Looks a number up (answered by the soak's simulated user).",
  input_schema: { type: "object", properties: { k: { type: "number" } } },
};

const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(Math.random() * xs.length)];
const expMs = (mean: number) => -Math.log(1 - Math.random()) * mean;
const uniform = ([a, b]: readonly [number, number]) => a + Math.random() * (b - a);
const chatsPath = "/api/experimental/chats" as const;

class User {
  readonly chats: ChatState[] = [];
  /** Tool calls waiting for this user's results, by chat (from action_required). */
  readonly actions = new Map<string, { tool_call_id: string; args: unknown }[]>();
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private watch?: { stream: EventStream<WatchEvent>; done: Promise<void> };
  private chat?: { stream: EventStream<ChatStreamEvent>; done: Promise<void>; rec: StreamRecord };
  private watchRec: StreamRecord;

  constructor(
    readonly id: string,
    readonly client: PgchatdClient,
    readonly label: string,
    private readonly chatBudget: { left: number },
  ) {
    this.watchRec = {
      ownerId: id,
      start: undefined,
      last: undefined,
      received: new Map(),
      reconnects: 0,
      resyncs: 0,
    };
    streamRecords.watch.push(this.watchRec);
  }

  async start() {
    await this.openWatch();
    this.loops.push(this.requests(), this.watchLoop(), this.chatLoop());
  }

  async stop() {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /** Ends the streams (after the drain), keeping what they received. */
  async closeStreams() {
    await this.closeWatch();
    await this.closeChatStream();
  }

  // --- watch ---

  private async openWatch() {
    const stream = this.client.watch(
      this.watchRec.last === undefined ? {} : { lastEventId: this.watchRec.last },
    );
    const rec = this.watchRec;
    const done = (async () => {
      try {
        for await (const ev of stream) {
          if (ev.id !== undefined) rec.received.set(ev.id, (rec.received.get(ev.id) ?? 0) + 1);
          if (ev.event === "resync") rec.resyncs++;
          const data = ev.data as {
            kind?: string;
            chat?: { id: string } | null;
            tool_calls?: { tool_call_id: string; args: unknown }[];
          };
          if (data.kind === "action_required" && data.chat && data.tool_calls) {
            this.actions.set(data.chat.id, data.tool_calls);
          }
        }
      } catch {
        // A refusal: counted by the route's statuses.
      }
    })();
    this.watch = { stream, done };
    await stream.opened.catch(() => {});
    // A fresh watch's first block is the `watching` position (src/watch/streams.ts).
    const t = now();
    while (rec.start === undefined && now() - t < 10_000) {
      rec.start = stream.lastEventId;
      if (rec.start === undefined) await sleep(10);
    }
  }

  private async closeWatch() {
    const w = this.watch;
    if (!w) return;
    this.watch = undefined;
    w.stream.close();
    await w.done;
    this.watchRec.last = w.stream.lastEventId ?? this.watchRec.last;
  }

  private async watchLoop() {
    while (!this.stopped) {
      await this.pause(uniform(streamLifeMs));
      if (this.stopped) break;
      await this.closeWatch();
      this.watchRec.reconnects++;
      await this.openWatch();
    }
  }

  // --- chat stream ---

  private openChatStream(chatId: string, rec?: StreamRecord) {
    const r: StreamRecord = rec ?? {
      ownerId: this.id,
      chatId,
      start: undefined,
      last: undefined,
      received: new Map(),
      reconnects: 0,
      resyncs: 0,
    };
    if (!rec) streamRecords.chat.push(r);
    const stream = this.client.chatStream(
      chatId,
      r.last === undefined ? {} : { lastEventId: r.last },
    );
    const done = (async () => {
      try {
        for await (const ev of stream) {
          if (ev.id !== undefined && r.start === undefined) r.start = ev.id;
          if (ev.event === "resync") r.resyncs++;
          if (ev.event === "message") {
            const id = String((ev.data as { id: number }).id);
            r.received.set(id, (r.received.get(id) ?? 0) + 1);
          }
        }
      } catch {
        // A refusal: counted by the route's statuses.
      }
    })();
    this.chat = { stream, done, rec: r };
  }

  private async closeChatStream() {
    const c = this.chat;
    if (!c) return;
    this.chat = undefined;
    c.stream.close();
    await c.done;
    c.rec.last = c.stream.lastEventId ?? c.rec.last;
  }

  private async chatLoop() {
    while (!this.stopped) {
      await this.pause(uniform(streamLifeMs));
      if (this.stopped) break;
      const c = this.chat;
      // A stream cut before its snapshot's cursor would get the whole snapshot again: a
      // duplicate the client asked for, so the load never cuts one there.
      if (c && c.stream.lastEventId !== undefined && Math.random() < 0.6) {
        await this.closeChatStream();
        c.rec.reconnects++;
        this.openChatStream(c.rec.chatId!, c.rec);
      } else if (!c || c.stream.lastEventId !== undefined) {
        await this.closeChatStream();
        const next = pick(this.chats);
        if (next) this.openChatStream(next.id);
      }
    }
  }

  // --- requests ---

  private async pause(msec: number) {
    const until = now() + msec;
    while (!this.stopped && now() < until) await sleep(Math.min(250, until - now()));
  }

  private async requests() {
    while (!this.stopped) {
      await this.pause(expMs(thinkMeanMs));
      if (this.stopped) break;
      try {
        await this.step();
      } catch {
        // Every failure is in the route statistics.
      }
    }
  }

  private async step() {
    const open = this.chats.filter((c) => !c.archived);
    const sendable = open.filter((c) => c.sends < maxSendsPerChat);
    const queued = open.filter((c) => c.queued.length > 0);
    const editable = open.filter((c) => c.lastUserMessageId !== undefined);
    const ops: [number, () => Promise<void>][] = [
      [this.chats.length < chatsPerUser && this.chatBudget.left > 0 ? 6 : 0, () => this.create()],
      [sendable.length ? 30 : 0, () => this.send(pick(sendable)!, "queue")],
      [sendable.length ? 3 : 0, () => this.send(pick(sendable)!, "interrupt")],
      [open.length ? 3 : 0, () => this.interrupt(pick(open)!)],
      [queued.length ? 4 : 0, () => this.promote(pick(queued)!)],
      [queued.length ? 4 : 0, () => this.deleteQueued(pick(queued)!)],
      [editable.length ? 2 : 0, () => this.edit(pick(editable)!)],
      [this.actions.size ? 15 : 0, () => this.answerTools()],
      [this.chats.length ? 2 : 0, () => this.toggleArchive(pick(this.chats)!)],
      [open.length ? 4 : 0, () => this.pin(pick(open)!)],
      [10, () => this.list()],
      [5, () => this.search()],
      [this.chats.length ? 6 : 0, () => this.read(pick(this.chats)!)],
    ];
    const total = ops.reduce((a, [w]) => a + w, 0);
    let r = Math.random() * total;
    for (const [w, op] of ops) {
      r -= w;
      if (r < 0) return op();
    }
  }

  private text(chat: ChatState): string {
    const k = chat.k++;
    const r = Math.random();
    if (r < 0.2) return `/sleep ${slowTurnMs + k}`;
    if (r < 0.35) return `/tool lookup {"k":${k}}`;
    return `m${k} from ${this.label}`;
  }

  private async create() {
    this.chatBudget.left--;
    const text = `m0 first of ${this.label}`;
    const chat = await this.client.POST(chatsPath, {
      body: {
        content: [{ type: "text", text }],
        labels: { team: Math.random() < 0.5 ? "red" : "blue" },
        unsafe_dynamic_tools: [lookupTool],
      },
    });
    this.chats.push({
      id: chat.id,
      archived: false,
      pinned: false,
      k: 1,
      sends: 1,
      lastUserMessageId: undefined,
      queued: [],
    });
    acks.push({ chatId: chat.id, text, at: now(), queued: false, deleted: false });
  }

  private async send(chat: ChatState, busy: "queue" | "interrupt") {
    const text = this.text(chat);
    chat.sends++;
    const t = now();
    const res = await this.client.POST(`${chatsPath}/{chat}/messages`, {
      params: { path: { chat: chat.id } },
      body: { content: [{ type: "text", text }], busy_behavior: busy },
    });
    const ack: Ack = { chatId: chat.id, text, at: t, queued: res.queued, deleted: false };
    acks.push(ack);
    if (busy === "interrupt") cut(chat.id);
    if (res.queued && res.queued_message) chat.queued.push({ id: res.queued_message.id, ack });
    if (!res.queued && res.message) chat.lastUserMessageId = res.message.id;
  }

  private async interrupt(chat: ChatState) {
    cut(chat.id);
    await this.client.POST(`${chatsPath}/{chat}/interrupt`, {
      params: { path: { chat: chat.id } },
    });
  }

  private async promote(chat: ChatState) {
    // The newest is the likeliest to be still queued.
    const q = chat.queued.pop()!;
    // On requires_action a promotion answers the pending calls with errors first.
    cut(chat.id);
    await this.client.POST(`${chatsPath}/{chat}/queue/{queued}/promote`, {
      params: { path: { chat: chat.id, queued: q.id } },
    });
  }

  private async deleteQueued(chat: ChatState) {
    const q = chat.queued.pop()!;
    await this.client.DELETE(`${chatsPath}/{chat}/queue/{queued}`, {
      params: { path: { chat: chat.id, queued: q.id } },
    });
    q.ack.deleted = true;
  }

  private async edit(chat: ChatState) {
    const text = `e${chat.k++} edited by ${this.label}`;
    cut(chat.id);
    const t = now();
    const res = await this.client.PATCH(`${chatsPath}/{chat}/messages/{message}`, {
      params: { path: { chat: chat.id, message: chat.lastUserMessageId! } },
      body: { content: [{ type: "text", text }] },
    });
    chat.queued = [];
    chat.lastUserMessageId = res.message.id;
    acks.push({ chatId: chat.id, text, at: t, queued: false, deleted: false });
  }

  private async answerTools() {
    const [chatId, calls] = this.actions.entries().next().value!;
    this.actions.delete(chatId);
    // The user archived it since: archived chats are read-only (docs/api.md "Messages").
    if (this.chats.find((c) => c.id === chatId)?.archived) return;
    await this.client.POST(`${chatsPath}/{chat}/tool-results`, {
      params: { path: { chat: chatId } },
      body: {
        results: calls.map((c) => ({
          tool_call_id: c.tool_call_id,
          output: { found: (c.args as { k?: number }).k ?? null },
        })),
      },
    });
  }

  private async toggleArchive(chat: ChatState) {
    cut(chat.id);
    await this.client.PATCH(`${chatsPath}/{chat}`, {
      params: { path: { chat: chat.id } },
      body: { archived: !chat.archived },
    });
    chat.archived = !chat.archived;
    if (chat.archived) chat.pinned = false;
  }

  private async pin(chat: ChatState) {
    const order = chat.pinned && Math.random() < 0.4 ? 0 : 1 + Math.floor(Math.random() * 3);
    await this.client.PATCH(`${chatsPath}/{chat}`, {
      params: { path: { chat: chat.id } },
      body: { pin_order: order },
    });
    chat.pinned = order > 0;
  }

  private async list() {
    const label = Math.random() < 0.5 ? [Math.random() < 0.5 ? "team:red" : "team:blue"] : [];
    const first = await this.client.GET(chatsPath, {
      params: { query: { limit: 2, ...(label.length ? { label } : {}) } },
    });
    const after = first[first.length - 1];
    if (after) {
      await this.client.GET(chatsPath, {
        params: { query: { limit: 2, after_id: after.id, ...(label.length ? { label } : {}) } },
      });
    }
  }

  private async search() {
    const q = pick([
      "archived:true",
      "has_unread:true",
      `title:"of ${this.label}"`,
      "title:m0 archived:false",
      'title:"/sleep"',
    ])!;
    await this.client.GET(chatsPath, { params: { query: { q, limit: 20 } } });
  }

  private async read(chat: ChatState) {
    if (Math.random() < 0.5) {
      await this.client.GET(`${chatsPath}/{chat}`, { params: { path: { chat: chat.id } } });
    } else {
      await this.client.GET(`${chatsPath}/{chat}/messages`, {
        params: { path: { chat: chat.id }, query: { limit: 20 } },
      });
    }
  }

  /** The drain: answer nothing more; interrupt this user's chats that wait for tool results. */
  async interruptWaiting(ids: Set<string>) {
    for (const c of this.chats) {
      if (!ids.has(c.id)) continue;
      cut(c.id);
      await this.client
        .POST(`${chatsPath}/{chat}/interrupt`, { params: { path: { chat: c.id } } })
        .catch(() => {});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Processes and their memory

interface Proc {
  label: string;
  pid: number;
  stop(): Promise<void>;
  logged: string[];
}

async function spawnRunner(dbUrl: string, env: Record<string, string>, label: string) {
  const logged: string[] = [];
  const dataDir = fs.mkdtempSync(`${process.env.TMPDIR ?? "/tmp"}/pgchatd-bench-soak-runner-`);
  const proc = await spawnPgchatd("runner", {
    env: {
      ...process.env,
      DATABASE_URL: dbUrl,
      LOG_LEVEL: "warn",
      PGCHATD_DATA_DIR: dataDir,
      ...env,
    },
    onLine: (line) => {
      if (!line.startsWith("{")) return;
      logged.push(line);
      if (logged.length > 200) logged.splice(0, logged.length - 200);
    },
    onSpawn: (child) => children.add(child),
    timeoutMs: 60_000,
  });
  return {
    label,
    pid: proc.child.pid!,
    logged,
    async stop() {
      await proc.stop();
      children.delete(proc.child);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  } satisfies Proc;
}

/** Resident set size (MiB) from /proc; NaN once the process is gone. */
function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * The embedded cluster's memory: the proportional set size of the postmaster and its children,
 * so shared buffers count once (their RSS would count them in every backend that touched them).
 */
function postgresPssMiB(postmasterPid: number): number {
  let kb = 0;
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const pid = Number(entry);
      if (pid !== postmasterPid) {
        const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
        if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) !== postmasterPid) continue;
      }
      const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${entry}/smaps_rollup`, "utf8"));
      if (m) kb += Number(m[1]);
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return kb / 1024;
}

// ---------------------------------------------------------------------------------------------
// The run

async function seedUsers(admin: pg.Client) {
  const org = await admin.query<{ id: string }>(
    "INSERT INTO organizations (name) VALUES ('soak') RETURNING id",
  );
  const out: { id: string; token: string; label: string }[] = [];
  for (let i = 0; i < users; i++) {
    const label = `u${i}`;
    const u = await admin.query<{ id: string }>(
      "INSERT INTO users (username, name) VALUES ($1, $2) RETURNING id",
      [`soak-${label}`, `Soak ${label}`],
    );
    await admin.query(
      "INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)",
      [org.rows[0]!.id, u.rows[0]!.id],
    );
    const tok = generateToken();
    await insertAPIKey(admin, {
      id: tok.id,
      user_id: u.rows[0]!.id,
      hashed_secret: tok.hashedSecret,
      lifetime_seconds: 86_400,
    });
    out.push({ id: u.rows[0]!.id, token: tok.token, label });
  }
  return out;
}

export async function benchSoak(minutesArg?: string) {
  const minutes = minutesArg ? Number(minutesArg) : 10;
  if (!(minutes > 0)) throw new Error(`soak: minutes must be a positive number, got ${minutesArg}`);
  // Ctrl-C: stop the load and clean up (the finally blocks below); a second one exits at once,
  // and the exit handler of bench/watch_servers.ts kills the processes.
  const abort = new AbortController();
  let firstSigint = 0;
  const onSigint = () => {
    // One Ctrl-C can arrive twice: from the terminal and relayed by tsx's parent process.
    if (abort.signal.aborted && now() - firstSigint > doubleSigintMs) process.exit(130);
    if (abort.signal.aborted) return;
    firstSigint = now();
    process.stderr.write(
      "soak: interrupted; stopping and cleaning up (Ctrl-C again to exit now)\n",
    );
    abort.abort();
  };
  process.on("SIGINT", onSigint);
  try {
    await withBenchDatabase((db) => soak(db, minutes, abort.signal));
  } catch (err) {
    // Interrupted: the processes it reached stopped on their own (a terminal's Ctrl-C reaches
    // the whole process group), so what failed afterwards is no finding.
    if (!abort.signal.aborted) throw err;
  } finally {
    process.off("SIGINT", onSigint);
  }
  if (abort.signal.aborted) {
    console.log("\nsoak: interrupted; processes stopped and the scratch database removed");
    process.exitCode = 130;
  }
}

async function soak(db: BenchDatabase, minutes: number, signal: AbortSignal) {
  console.log(
    `database: ${db.where}\nmachine: ${describeMachine()}\n` +
      `load: ${users} users, ≤ ${chatsPerUser} chats each, ≤ ${ratePerSecond} requests/s, ` +
      `≤ ${maxInFlight} in flight, ${minutes} min; 2 servers (no runner) + 2 runners, batched NOTIFY`,
  );
  await migrate(db.url);
  const admin = await connectClient(db.url, "bench-soak-admin");
  // A Ctrl-C in a terminal reaches the embedded Postgres too, which then ends this session: an
  // unhandled 'error' event would end the bench before it cleaned up.
  admin.on("error", () => {});
  const procs: Proc[] = [];
  const roster: User[] = [];
  try {
    const seeded = await seedUsers(admin);
    const secretKey = randomBytes(32).toString("hex");
    const env = { PGCHATD_EVENTS_NOTIFY: "batched", PGCHATD_SECRET_KEY: secretKey };
    const servers: ServerProcess[] = [];
    for (let i = 0; i < 2; i++) {
      const s = await spawnServer(db.url, "batched", { ...env, PGCHATD_RUNNER: "false" });
      servers.push(s);
      procs.push({ label: `server ${i + 1}`, pid: s.pid, stop: () => s.stop(), logged: s.logged });
    }
    for (let i = 0; i < 2; i++) procs.push(await spawnRunner(db.url, env, `runner ${i + 1}`));
    if (signal.aborted) return;

    const http = new Http(servers.map((s) => s.url));
    const budget = { left: users * chatsPerUser };
    for (const u of seeded) {
      const client = createClient({
        baseUrl: "http://soak.invalid",
        token: u.token,
        fetch: http.fetch,
      });
      roster.push(new User(u.id, client, u.label, budget));
    }

    // Memory, sampled through the run.
    const t0 = now();
    const samples: Sample[] = [];
    const sample = async () => {
      const s: Sample = {
        t: now() - t0,
        rss: procs.map((p) => rssMiB(p.pid)),
        pg: db.postmasterPid ? postgresPssMiB(db.postmasterPid) : Number.NaN,
        heap: [],
      };
      samples.push(s);
      s.heap = await Promise.all(
        servers.map((x) =>
          scrapeMetrics(x.url).then(
            (m) => (m.get("nodejs_heap_size_used_bytes") ?? Number.NaN) / 2 ** 20,
            () => Number.NaN,
          ),
        ),
      );
    };
    await sample();
    const sampler = setInterval(() => void sample(), rssSampleMs);

    await Promise.all(roster.map((u) => u.start()));
    const runMs = minutes * 60_000;
    const progress = setInterval(() => {
      const sent = [...http.routes.values()].reduce(
        (a, r) => a + [...r.statuses.values()].reduce((x, y) => x + y, 0),
        0,
      );
      process.stderr.write(
        `soak: ${((now() - t0) / 60_000).toFixed(1)} of ${minutes} min, ${int(sent)} requests\n`,
      );
    }, 30_000);
    while (now() - t0 < runMs && !signal.aborted) await sleep(250);
    clearInterval(progress);
    const loadMs = now() - t0;

    // The drain.
    process.stderr.write("soak: draining\n");
    await Promise.all(roster.map((u) => u.stop()));
    const drainStart = now();
    let drained = false;
    while (!signal.aborted && now() - drainStart < maxDrainMs) {
      const r = await admin.query<{ id: string; status: string }>(
        `SELECT id, status::text FROM chats c
         WHERE status IN ('pending', 'running', 'requires_action')
            OR (NOT archived AND worker_id IS NULL
                AND EXISTS (SELECT 1 FROM chat_queued_messages q WHERE q.chat_id = c.id))`,
      );
      if (r.rows.length === 0) {
        drained = true;
        break;
      }
      const waiting = new Set(
        r.rows.filter((x) => x.status === "requires_action").map((x) => x.id),
      );
      if (waiting.size) await Promise.all(roster.map((u) => u.interruptWaiting(waiting)));
      await sleep(250);
    }
    const drainMs = now() - drainStart;
    // Streams catch up with the last commits, then close.
    await sleep(2_000);
    await Promise.all(roster.map((u) => u.closeStreams()));
    clearInterval(sampler);
    await sample();

    const archivedQueues = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM chat_queued_messages q JOIN chats c ON c.id = q.chat_id
       WHERE c.archived`,
    );
    console.log(
      `\nran ${(loadMs / 60_000).toFixed(1)} min of load, then a drain of ${(drainMs / 1000).toFixed(1)} s` +
        (drained ? "" : " — WARNING: turns were still pending or running when the drain gave up") +
        (signal.aborted ? " — INTERRUPTED (Ctrl-C): figures cover the part that ran" : "") +
        `; load average at the end ${os
          .loadavg()
          .map((x) => x.toFixed(1))
          .join(" ")} (other work on the machine inflates latencies)` +
        `; ${int(archivedQueues.rows[0]!.n)} queued messages left in archived chats`,
    );

    reportRoutes(http);
    await reportStreams(admin);
    await reportTurns(admin);
    reportMemory(procs, servers.length, samples, db.postmasterPid !== undefined);
    await reportTables(admin);
    for (const p of procs) {
      if (p.logged.length) {
        console.log(
          `\nWARNING: ${p.label} logged ${p.logged.length} warning or error lines; last:\n  ${p.logged.slice(-5).join("\n  ")}`,
        );
      }
    }
  } finally {
    await Promise.all(roster.map((u) => u.stop().then(() => u.closeStreams()))).catch(() => {});
    await Promise.all(procs.map((p) => p.stop()));
    await admin.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Reports

function reportRoutes(http: Http) {
  console.log("\n### Requests by route (latency of 2xx; streams: until the headers)\n");
  const rows = [["route", "count", "p50 ms", "p99 ms", "expected races", "other non-2xx"]];
  let fivexx = 0;
  let unexpected = 0;
  for (const [route, r] of [...http.routes].sort(([a], [b]) => a.localeCompare(b))) {
    const count = [...r.statuses.values()].reduce((a, b) => a + b, 0);
    const races: string[] = [];
    const others: string[] = [];
    for (const [status, all] of [...r.statuses].sort(([a], [b]) => a - b)) {
      if (status >= 200 && status < 300) continue;
      const raced = r.races.get(status) ?? 0;
      if (raced > 0) races.push(`${status}×${raced}`);
      const n = all - raced;
      if (n > 0) {
        others.push(`${status === 0 ? "network" : status}×${n}`);
        unexpected += n;
        if (status >= 500) fivexx += n;
      }
    }
    rows.push([
      route,
      int(count),
      ms(percentile(r.latencies, 50)),
      ms(percentile(r.latencies, 99)),
      races.join(" ") || "-",
      others.join(" ") || "-",
    ]);
  }
  console.log(table(rows, [4, 5]));
  for (const [route, r] of http.routes) {
    for (const x of r.samples) console.log(`  ${route}: ${x}`);
  }
  console.log(
    `\nunexpected non-2xx: ${int(unexpected)}; 5xx: ${int(fivexx)}` +
      (fivexx > 0 ? "  <<<<<<<<<< 5xx ANSWERS: server errors under load" : ""),
  );
}

const parseId = (c: string) => {
  const [xid, id] = c.split(".");
  return { xid: xid!, id: Number(id) };
};

async function reportStreams(admin: pg.Client) {
  console.log("\n### Events delivered against the log\n");
  const kinds = [...watchKinds];
  const sum = {
    subs: 0,
    expected: 0,
    received: 0,
    lost: 0,
    dup: 0,
    extra: 0,
    resyncs: 0,
    reconnects: 0,
  };
  const lostSamples: string[] = [];
  for (const rec of streamRecords.watch) {
    if (rec.start === undefined || rec.last === undefined) continue;
    sum.subs++;
    const a = parseId(rec.start);
    const b = parseId(rec.last);
    const rows = await admin.query<{ c: string }>(
      `SELECT xid::text || '.' || id AS c FROM chat_events
       WHERE owner_id = $1 AND kind::text = ANY($2)
         AND (xid, id) > ($3::xid8, $4::bigint) AND (xid, id) <= ($5::xid8, $6::bigint)`,
      [rec.ownerId, kinds, a.xid, a.id, b.xid, b.id],
    );
    const expected = new Set(rows.rows.map((r) => r.c));
    sum.expected += expected.size;
    sum.resyncs += rec.resyncs;
    sum.reconnects += rec.reconnects;
    for (const [id, n] of rec.received) {
      sum.received += n;
      if (n > 1) sum.dup += n - 1;
      if (!expected.has(id) && id !== rec.start) sum.extra++;
    }
    for (const id of expected) {
      if (!rec.received.has(id)) {
        sum.lost++;
        if (lostSamples.length < 5) lostSamples.push(`${rec.ownerId} ${id}`);
      }
    }
  }
  const chat = { subs: 0, expected: 0, received: 0, lost: 0, dup: 0, resyncs: 0, reconnects: 0 };
  for (const rec of streamRecords.chat) {
    if (rec.start === undefined || rec.last === undefined) continue;
    chat.subs++;
    const a = parseId(rec.start);
    const b = parseId(rec.last);
    const rows = await admin.query<{ m: string }>(
      `SELECT payload ->> 'message_id' AS m FROM chat_events
       WHERE chat_id = $1 AND kind = 'message'
         AND (xid, id) > ($2::xid8, $3::bigint) AND (xid, id) <= ($4::xid8, $5::bigint)`,
      [rec.chatId, a.xid, a.id, b.xid, b.id],
    );
    chat.expected += rows.rows.length;
    chat.resyncs += rec.resyncs;
    chat.reconnects += rec.reconnects;
    for (const [, n] of rec.received) {
      chat.received += n;
      if (n > 1) chat.dup += n - 1;
    }
    for (const r of rows.rows) {
      if (!rec.received.has(r.m)) {
        chat.lost++;
        if (lostSamples.length < 10) lostSamples.push(`chat ${rec.chatId} message ${r.m}`);
      }
    }
  }
  console.log(
    table(
      [
        [
          "stream",
          "subscribers",
          "reconnects",
          "logged in range",
          "received",
          "lost",
          "duplicated",
          "resyncs",
        ],
        [
          "watch (events)",
          int(sum.subs),
          int(sum.reconnects),
          int(sum.expected),
          int(sum.received),
          int(sum.lost),
          int(sum.dup),
          int(sum.resyncs),
        ],
        [
          "chat stream (messages)",
          int(chat.subs),
          int(chat.reconnects),
          int(chat.expected),
          int(chat.received),
          int(chat.lost),
          int(chat.dup),
          int(chat.resyncs),
        ],
      ],
      [],
    ),
  );
  console.log(
    `watch events received outside the subscriber's range (allowed: a fresh watch may get events committed just before it): ${int(sum.extra)}` +
      "\nchat streams: 'logged in range' counts the messages after each snapshot; 'received' includes the snapshots",
  );
  if (lostSamples.length) console.log(`LOST (first few): ${lostSamples.join("; ")}`);
}

async function reportTurns(admin: pg.Client) {
  console.log("\n### Turns: answers per acknowledged user message\n");
  const chatIds = [...new Set(acks.map((a) => a.chatId))];
  const rows = await admin.query<{
    chat_id: string;
    id: string;
    role: string;
    deleted: boolean;
    text: string | null;
    has_call: boolean;
  }>(
    `SELECT chat_id, id::text, role::text, deleted,
       (SELECT string_agg(p ->> 'text', '') FROM jsonb_array_elements(content) p
        WHERE p ->> 'type' = 'text') AS text,
       EXISTS (SELECT 1 FROM jsonb_array_elements(content) p WHERE p ->> 'type' = 'tool-call')
         AS has_call
     FROM chat_messages WHERE chat_id = ANY($1::uuid[]) AND visibility <> 'model'
     ORDER BY chat_messages.chat_id, chat_messages.id`,
    [chatIds],
  );
  // Per chat: each user message's text → answers before the next user message.
  const answers = new Map<string, Map<string, number[]>>();
  let current: { chat: string; text: string } | undefined;
  for (const m of rows.rows) {
    let byText = answers.get(m.chat_id);
    if (!byText) {
      byText = new Map();
      answers.set(m.chat_id, byText);
    }
    if (m.role === "user") {
      const text = m.text ?? "";
      byText.set(text, [...(byText.get(text) ?? []), 0]);
      current = { chat: m.chat_id, text };
    } else if (m.role === "assistant" && !m.has_call && current?.chat === m.chat_id) {
      const list = byText.get(current.text)!;
      list[list.length - 1]!++;
    }
  }
  const out = {
    one: 0,
    zeroCut: 0,
    zeroUnexpected: 0,
    many: 0,
    notAdmittedCut: 0,
    notAdmitted: 0,
    twice: 0,
  };
  const odd: string[] = [];
  for (const a of acks) {
    const wasCut = (cuts.get(a.chatId) ?? []).some((t) => t >= a.at) || a.deleted;
    const list = answers.get(a.chatId)?.get(a.text);
    if (!list) {
      if (wasCut) out.notAdmittedCut++;
      else {
        out.notAdmitted++;
        if (odd.length < 8) odd.push(`never admitted: ${a.chatId} "${a.text}"`);
      }
      continue;
    }
    if (list.length > 1) {
      out.twice++;
      if (odd.length < 8) odd.push(`stored ${list.length}×: ${a.chatId} "${a.text}"`);
    }
    const n = list[list.length - 1]!;
    if (n === 1) out.one++;
    else if (n > 1) {
      out.many++;
      if (odd.length < 8) odd.push(`${n} answers: ${a.chatId} "${a.text}"`);
    } else if (wasCut) out.zeroCut++;
    else {
      out.zeroUnexpected++;
      if (odd.length < 8) odd.push(`no answer: ${a.chatId} "${a.text}"`);
    }
  }
  console.log(
    table([
      [
        "acknowledged",
        "1 answer",
        "0 (cut by the load)",
        "0 (not cut)",
        ">1 answers",
        "not admitted (deleted, cleared by an edit, archived)",
        "never admitted (not cut)",
        "stored twice",
      ],
      [
        int(acks.length),
        int(out.one),
        int(out.zeroCut),
        int(out.zeroUnexpected),
        int(out.many),
        int(out.notAdmittedCut),
        int(out.notAdmitted),
        int(out.twice),
      ],
    ]),
  );
  if (odd.length) console.log(`first few: ${odd.join("; ")}`);
  // The histories of the first odd chats, to tell a defect from a race of the load.
  const shown = new Set<string>();
  for (const o of odd) {
    const id = /[0-9a-f-]{36}/.exec(o)?.[0];
    if (!id || shown.has(id) || shown.size >= 3) continue;
    shown.add(id);
    const msgs = rows.rows.filter((m) => m.chat_id === id);
    const chat = await admin.query<{ status: string; archived: boolean; last_error: unknown }>(
      "SELECT status::text, archived, last_error FROM chats WHERE id = $1",
      [id],
    );
    console.log(
      `chat ${id} (${JSON.stringify(chat.rows[0])}):\n    ${msgs
        .map(
          (m) =>
            `${m.id} ${m.role}${m.deleted ? " (deleted)" : ""}${m.has_call ? " [call]" : ""}: ${(m.text ?? "").slice(0, 40)}`,
        )
        .join("\n    ")}`,
    );
  }
}

interface Sample {
  t: number;
  /** Per process (servers, then runners), MiB. */
  rss: number[];
  pg: number;
  /** The servers' V8 heap in use (their /metrics), MiB: what a leak in JavaScript grows. */
  heap: number[];
}

function reportMemory(procs: Proc[], servers: number, samples: Sample[], embedded: boolean) {
  console.log(
    "\n### Memory (RSS MiB; Postgres: PSS of all its processes; heap: the servers' V8 heap in use)\n",
  );
  const heapLabels = procs.slice(0, servers).map((p) => `${p.label} heap`);
  const header = [
    "minute",
    ...procs.map((p) => p.label),
    ...(embedded ? ["Postgres"] : []),
    ...heapLabels,
  ];
  const rows = [header];
  const lastT = samples[samples.length - 1]!.t;
  const minuteMarks = Math.floor(lastT / 60_000);
  const at = (t: number) =>
    samples.reduce((best, s) => (Math.abs(s.t - t) < Math.abs(best.t - t) ? s : best));
  const fmt = (x: number) => (Number.isNaN(x) ? "n/a" : x.toFixed(0));
  for (let m = 0; m <= minuteMarks; m++) {
    const s = at(m * 60_000);
    rows.push([
      String(m),
      ...s.rss.map(fmt),
      ...(embedded ? [fmt(s.pg)] : []),
      ...heapLabels.map((_, i) => fmt(s.heap[i] ?? Number.NaN)),
    ]);
  }
  const end = samples[samples.length - 1]!;
  rows.push([
    `end (${(end.t / 60_000).toFixed(1)})`,
    ...end.rss.map(fmt),
    ...(embedded ? [fmt(end.pg)] : []),
    ...heapLabels.map((_, i) => fmt(end.heap[i] ?? Number.NaN)),
  ]);
  console.log(table(rows));
  if (lastT < 4 * 60_000) {
    console.log(
      "verdict: n/a (the first half of the run is the warm-up; a verdict needs at least 4 minutes)",
    );
    return;
  }
  const half = lastT / 2;
  const base = samples.filter((s) => s.t >= half - 60_000 && s.t < half);
  // The last minute of load: the final sample (after the drain) is left out.
  const last = samples.filter((s) => s.t >= lastT - 60_000 && s !== end);
  const meanOf = (of: Sample[], value: (s: Sample) => number) =>
    of.reduce((a, s) => a + value(s), 0) / Math.max(1, of.length);
  const judged = header.slice(1, 1 + procs.length + (embedded ? 1 : 0));
  const verdicts = judged.map((label, i) => {
    const value = (s: Sample) => (i < procs.length ? s.rss[i]! : s.pg);
    const mean = meanOf(last, value);
    const b = meanOf(base, value);
    const growing = mean > b * growth.ratio && mean - b > growth.mib;
    return `${label} ${growing ? "GROWING" : "flat"} (${fmt(b)} → ${fmt(mean)})`;
  });
  console.log(
    `verdict (mean of the last minute against the minute before mid-run; growing = more than ${((growth.ratio - 1) * 100).toFixed(0)}% and ${growth.mib} MiB): ${verdicts.join(", ")}`,
  );
  if (embedded) {
    console.log(
      "(Postgres' PSS also grows while its shared_buffers fill, 128 MB by default: in a run of a few minutes that is no leak)",
    );
  }
}

async function reportTables(admin: pg.Client) {
  console.log("\n### Tables at the end\n");
  const tables = await admin.query<{ name: string; bytes: string }>(
    `SELECT c.relname AS name, pg_total_relation_size(c.oid)::text AS bytes
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
     ORDER BY pg_total_relation_size(c.oid) DESC`,
  );
  const rows = [["table", "total size", "rows"]];
  let total = 0;
  for (const t of tables.rows) {
    const n = await admin.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM ${admin.escapeIdentifier(t.name)}`,
    );
    if (n.rows[0]!.n === "0") continue;
    total += Number(t.bytes);
    rows.push([t.name, `${(Number(t.bytes) / 1024).toFixed(0)} KiB`, int(Number(n.rows[0]!.n))]);
  }
  console.log(table(rows));
  console.log(`(tables without rows left out) total: ${(total / 2 ** 20).toFixed(1)} MiB`);
}
