import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { startEventPruning } from "../../src/jobs/chat_events.ts";
import { startServer } from "../../src/processes/serve.ts";
import { createEphemeralPublisher, streamKinds, watchKinds } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger } from "../setup/app.ts";
import { listen } from "../setup/listen.ts";
import { type TestServer, testServer } from "../setup/server.ts";
import { openSse, type SseClient, type SseEvent } from "../setup/sse.ts";

/*
 * The two SSE streams of docs/api.md "Streams" over real sockets: GET /chats/watch (an owner's chat
 * events) and GET /chats/{chat}/stream (one chat's snapshot and live events), with resume by
 * cursor, resync, the bounded subscriber queue, ephemeral message_part (also across two
 * processes) and shutdown. There is no runner in these servers: chats stay where the tests put
 * them, and "the model" is simulated with SQL writes (which NOTIFY from the triggers).
 */

let srv: TestServer;
let orgId: string;

beforeAll(async () => {
  srv = await testServer();
  orgId = (await gen.organization(srv.pool)).id;
});

afterAll(async () => {
  await srv?.close();
});

/** Every SSE client a test opens is closed after it, whatever happened. */
const clients: SseClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

const base = "/api/experimental/chats";
const text = (s: string) => [{ type: "text", text: s }];
const cursorPattern = /^\d+\.\d+$/;
const unknownId = "00000000-0000-4000-8000-000000000000";

interface Member {
  id: string;
  token: string;
}

const member = (opts: { owner?: boolean } = {}): Promise<Member> =>
  gen.member(srv.pool, { organizationIds: [orgId], owner: opts.owner });

/** A JSON call to the shared server as `u` (or without credentials). */
async function api(u: Member | null, method: string, path: string, body?: unknown) {
  const headers: Record<string, string> = {};
  if (u) headers.authorization = `Bearer ${u.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${srv.url}${base}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const raw = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: tests assert on response JSON of any shape.
  const json: any = raw ? JSON.parse(raw) : undefined;
  return { status: res.status, json };
}

async function createChat(u: Member, body: Record<string, unknown> = {}) {
  const res = await api(u, "POST", "", { content: text("hello there"), ...body });
  expect(res.status).toBe(201);
  return res.json;
}

async function patchChat(u: Member, chatId: string, body: Record<string, unknown>) {
  const res = await api(u, "PATCH", `/${chatId}`, body);
  expect(res.status).toBe(204);
}

async function getChat(u: Member, chatId: string) {
  const res = await api(u, "GET", `/${chatId}`);
  expect(res.status).toBe(200);
  return res.json;
}

async function track(client: Promise<SseClient>) {
  const c = await client;
  clients.push(c);
  return c;
}

function auth(u: Member, headers: Record<string, string> = {}) {
  return { authorization: `Bearer ${u.token}`, ...headers };
}

function openWatch(u: Member, opts: { headers?: Record<string, string>; query?: string } = {}) {
  return track(openSse(`${srv.url}${base}/watch${opts.query ?? ""}`, auth(u, opts.headers)));
}

/**
 * Waits until the server's tailer has read every event logged so far. A stream opened before
 * that may also get, after its snapshot, live events for changes the snapshot already showed
 * (harmless for a client, but it blurs where the snapshot ends).
 */
async function caughtUp(server: TestServer = srv) {
  const { rows } = await srv.pool.query<{ xid: string; id: number }>(
    // Qualified: a bare `xid` would sort the text output column ("999" after "1000").
    "SELECT xid::text, id FROM chat_events ORDER BY chat_events.xid DESC, id DESC LIMIT 1",
  );
  const head = rows[0];
  // With no stream open the tailer reads nothing; the next stream starts at the head anyway.
  if (!head || server.watch.hub.isEmpty()) return;
  await eventually(async () => {
    const p = server.watch.tailer.position;
    return compareIds(`${p.xid}.${p.id}`, `${head.xid}.${head.id}`) >= 0;
  }, "the tailer has read the log");
}

/** Consumes a chat stream's snapshot (everything up to its queue_update) and returns it. */
async function snapshotOf(s: SseClient) {
  const events: SseEvent[] = [];
  for (;;) {
    const e = await s.next();
    events.push(e);
    if (e.event === "queue_update") return events;
  }
}

function openStream(
  u: Member,
  chatId: string,
  opts: { headers?: Record<string, string>; query?: string; server?: TestServer } = {},
) {
  const url = `${(opts.server ?? srv).url}${base}/${chatId}/stream${opts.query ?? ""}`;
  return track(openSse(url, auth(u, opts.headers)));
}

// biome-ignore lint/suspicious/noExplicitAny: event payloads are asserted field by field.
const data = (e: SseEvent): any => JSON.parse(e.data);
const ofChat = (chatId: string) => (e: SseEvent) =>
  e.event !== "resync" && data(e).chat?.id === chatId;
const kind = (k: string) => (e: SseEvent) => e.event === k;

function cursorOf(id: string) {
  const [xid, n] = id.split(".");
  return { xid: BigInt(xid!), id: Number(n) };
}

function compareIds(a: string, b: string) {
  const x = cursorOf(a);
  const y = cursorOf(b);
  if (x.xid !== y.xid) return x.xid < y.xid ? -1 : 1;
  return x.id - y.id;
}

function expectIncreasing(ids: string[]) {
  for (const id of ids) expect(id).toMatch(cursorPattern);
  for (let i = 1; i < ids.length; i++) {
    expect(compareIds(ids[i - 1]!, ids[i]!), `${ids[i - 1]} then ${ids[i]}`).toBeLessThan(0);
  }
}

/** The logged events after `after` of one owner (watch kinds) or one chat (stream kinds). */
async function logged(scope: { ownerId: string } | { chatId: string }, after: string) {
  const c = cursorOf(after);
  const [column, value, kinds] =
    "ownerId" in scope
      ? ["owner_id", scope.ownerId, [...watchKinds]]
      : ["chat_id", scope.chatId, [...streamKinds]];
  const { rows } = await srv.pool.query<{
    cursor: string;
    kind: string;
    chat_version: string;
    message_id: number | null;
  }>(
    `SELECT xid::text || '.' || id AS cursor, kind::text, chat_version,
       (payload ->> 'message_id')::bigint::int AS message_id
     FROM chat_events
     WHERE ${column} = $1 AND (xid, id) > ($2::text::xid8, $3::bigint)
       AND kind = ANY($4::chat_event_kind[])
     ORDER BY xid, id`,
    [value, c.xid.toString(), c.id, kinds],
  );
  return rows;
}

/** The chat version the event with this cursor was written at. */
async function eventVersion(id: string) {
  const c = cursorOf(id);
  const { rows } = await srv.pool.query<{ chat_version: string; kind: string }>(
    "SELECT chat_version, kind::text FROM chat_events WHERE xid = $1::text::xid8 AND id = $2",
    [c.xid.toString(), c.id],
  );
  expect(rows).toHaveLength(1);
  return { version: Number(rows[0]!.chat_version), kind: rows[0]!.kind };
}

async function setStatus(chatId: string, status: string) {
  await srv.pool.query("UPDATE chats SET status = $2 WHERE id = $1", [chatId, status]);
}

const chatError = {
  message: "The provider is overloaded.",
  kind: "overloaded",
  provider: "openai",
  retryable: true,
  status_code: 529,
  detail: null,
};

async function failChat(chatId: string) {
  await srv.pool.query("UPDATE chats SET status = 'error', last_error = $2::jsonb WHERE id = $1", [
    chatId,
    JSON.stringify(chatError),
  ]);
}

const toolCall = {
  type: "tool-call",
  tool_call_id: "call_1",
  tool_name: "read_file",
  args: { path: "README.md" },
};

/** The model called a client tool: an assistant message with the call, then requires_action. */
async function requireAction(chatId: string) {
  const m = await gen.chatMessage(srv.pool, chatId, {
    role: "assistant",
    content: [{ type: "text", text: "let me look" }, toolCall],
  });
  await setStatus(chatId, "requires_action");
  return m;
}

/** Resolves true when `p` settles within `ms`, false otherwise (never rejects). */
function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((ok) => {
    const timer = setTimeout(() => ok(false), ms);
    p.then(
      () => {
        clearTimeout(timer);
        ok(true);
      },
      () => {
        clearTimeout(timer);
        ok(true);
      },
    );
  });
}

/** Polls `check` until it returns true, failing after `ms`. */
async function eventually(check: () => Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The transaction that logged the event with this cursor ("<xid>.<id>"). */
const xidOf = (id: string) => id.split(".")[0]!;

/**
 * The horizons a test may wait for. `cluster`, the snapshot's xmin, is what the tailer reads below
 * until it learns that only other databases hold it back; any open transaction on the cluster
 * (another test file's, under load for seconds) holds it. `database`, chat_events_horizon(), is
 * what pruning samples: only this database's transactions hold it.
 */
const horizons = {
  cluster: "pg_snapshot_xmin(pg_current_snapshot())",
  database: "chat_events_horizon()",
} as const;

/** Waits until every transaction up to `xid` has ended, as `horizon` sees it. */
async function belowHorizon(xid: string, horizon: keyof typeof horizons) {
  await eventually(async () => {
    const { rows } = await srv.pool.query<{ xmin: string }>(
      `SELECT ${horizons[horizon]}::text AS xmin`,
    );
    return BigInt(rows[0]!.xmin) > BigInt(xid);
  }, `transaction ${xid} is below the ${horizon} horizon`);
}

/**
 * Checks what a watch received besides the test's own events (`mine`), and returns those. Events
 * logged before it opened may come too: opened without a cursor, it gets those the server had not
 * read yet (docs/api.md "Streams"); resuming, those after its cursor. Either way they can only be
 * the latest of `before` (the owner's log when the watch opened), each once, in cursor order, ahead
 * of every event of the test.
 */
function ownEvents(events: SseEvent[], mine: (e: SseEvent) => boolean, before: string[]) {
  const first = events.findIndex(mine);
  const earlier = first === -1 ? events : events.slice(0, first);
  expect(earlier.map((e) => e.id)).toEqual(before.slice(before.length - earlier.length));
  const own = events.slice(earlier.length);
  expect(own.filter((e) => !mine(e))).toEqual([]);
  return own;
}

describe("GET /chats/watch", () => {
  it("sends created, title_change, updated, status_change and deleted events with the changed chat", async () => {
    const u = await member();
    const w = await openWatch(u);
    expect(w.status).toBe(200);

    const chat = await createChat(u);
    const created = await w.next(ofChat(chat.id));
    await patchChat(u, chat.id, { title: "Renamed" });
    const titled = await w.next(ofChat(chat.id));
    await patchChat(u, chat.id, { labels: { team: "infra" } });
    const labelled = await w.next(ofChat(chat.id));
    await patchChat(u, chat.id, { pin_order: 1 });
    const pinned = await w.next(ofChat(chat.id));
    await setStatus(chat.id, "running");
    const running = await w.next(ofChat(chat.id));
    await patchChat(u, chat.id, { archived: true });
    const archived = await w.next(ofChat(chat.id));

    const events = [created, titled, labelled, pinned, running, archived];
    expect(events.map((e) => e.event)).toEqual([
      "created",
      "title_change",
      "updated",
      "updated",
      "status_change",
      "deleted",
    ]);
    expectIncreasing(events.map((e) => e.id));
    for (const e of events) {
      const d = data(e);
      expect(Object.keys(d).sort()).toEqual(["chat", "kind"]);
      expect(d.kind).toBe(e.event);
      expect(d.chat.owner_id).toBe(u.id);
      // The chat at the change's version or later, never an older snapshot.
      const logged = await eventVersion(e.id);
      expect(logged.kind).toBe(e.event);
      expect(d.chat.version).toBeGreaterThanOrEqual(logged.version);
    }
    expect(data(created).chat).toMatchObject({ title: chat.title, status: "pending", version: 1 });
    expect(data(titled).chat.title).toBe("Renamed");
    expect(data(labelled).chat.labels).toEqual({ team: "infra" });
    expect(data(pinned).chat.pin_order).toBe(1);
    expect(data(running).chat.status).toBe("running");
    expect(data(archived).chat).toMatchObject({ archived: true, pin_order: 0 });
    // Every change moved the version, and each event shows a newer chat than the one before.
    const versions = events.map((e) => data(e).chat.version);
    expect([...versions].sort((a, b) => a - b)).toEqual(versions);
    expect(new Set(versions).size).toBe(versions.length);
  });

  it("sends created again when a chat is unarchived", async () => {
    const u = await member();
    const chat = await createChat(u);
    await patchChat(u, chat.id, { archived: true });
    await caughtUp();
    const w = await openWatch(u);
    await patchChat(u, chat.id, { archived: false });
    const e = await w.next(ofChat(chat.id));
    expect(e.event).toBe("created");
    expect(data(e).chat.archived).toBe(false);
  });

  it("sends action_required with the pending tool calls when a chat needs client tool results", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    await caughtUp();
    const w = await openWatch(u);
    await requireAction(chat.id);
    const status = await w.next(ofChat(chat.id));
    const action = await w.next(ofChat(chat.id));
    expect(status.event).toBe("status_change");
    expect(data(status).chat.status).toBe("requires_action");
    expect(action.event).toBe("action_required");
    expect(action.id).toMatch(cursorPattern);
    expect(data(action)).toMatchObject({
      kind: "action_required",
      chat: { id: chat.id, status: "requires_action" },
      tool_calls: [{ tool_call_id: "call_1", tool_name: "read_file", args: { path: "README.md" } }],
    });
  });

  it("sends summary_change, diff_status_change and context_dirty with the chat showing the change", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    // Else the chat's own `created` may still be on its way and arrive first.
    await caughtUp();
    const w = await openWatch(u);
    await srv.pool.query("UPDATE chats SET last_turn_summary = 'did things' WHERE id = $1", [
      chat.id,
    ]);
    const summary = await w.next(ofChat(chat.id));
    expect(summary.event).toBe("summary_change");
    expect(data(summary).chat.last_turn_summary).toBe("did things");

    await gen.diffStatus(srv.pool, chat.id, {
      url: "https://github.com/acme/app/pull/7",
      pr_number: 7,
      pull_request_state: "open",
      pull_request_title: "Fix it",
    });
    const diff = await w.next(ofChat(chat.id));
    expect(diff.event).toBe("diff_status_change");
    expect(data(diff).chat.diff_status).toMatchObject({
      pr_number: 7,
      pull_request_title: "Fix it",
    });

    await srv.pool.query("UPDATE chats SET context_dirty_since = now() WHERE id = $1", [chat.id]);
    const dirty = await w.next(ofChat(chat.id));
    expect(dirty.event).toBe("context_dirty");
    expect(data(dirty).chat.context.dirty).toBe(true);
  });

  it("sends deleted for every chat of a family when its root is archived", async () => {
    const u = await member();
    const root = await createChat(u);
    const child = await createChat(u, { parent_chat_id: root.id });
    await caughtUp();
    const w = await openWatch(u);
    await patchChat(u, root.id, { archived: true });
    const events = await w.waitFor(2);
    expect(events.map((e) => e.event)).toEqual(["deleted", "deleted"]);
    expect(events.map((e) => data(e).chat.id).sort()).toEqual([root.id, child.id].sort());
    for (const e of events) expect(data(e).chat.archived).toBe(true);
  });

  it("sends hard_deleted with the chat's identity when a chat is deleted for good", async () => {
    const u = await member();
    const chat = await createChat(u, { content: text("short-lived") });
    await caughtUp();
    const w = await openWatch(u);
    await srv.pool.query("DELETE FROM chats WHERE id = $1", [chat.id]);
    const e = await w.next(ofChat(chat.id));
    expect(e.event).toBe("hard_deleted");
    expect(data(e).chat).toMatchObject({
      id: chat.id,
      owner_id: u.id,
      organization_id: orgId,
      parent_chat_id: null,
      title: "short-lived",
    });
    expect(data(e).chat.version).toBeGreaterThan(chat.version);
  });

  it("sends a notification event to its user only, showing the notification as GET /notifications does", async () => {
    const u = await member();
    const other = await member();
    const w = await openWatch(u);
    const wo = await openWatch(other);
    await srv.pool.query("SELECT chat_auto_archive_notify($1, ARRAY['Old chat'])", [u.id]);
    const e = await w.next((x) => x.event === "notification");
    const listed = (await fetch(`${srv.url}/api/v2/notifications`, { headers: auth(u) }).then((r) =>
      r.json(),
    )) as { notifications: unknown[] };
    expect(data(e)).toEqual({ kind: "notification", notification: listed.notifications[0] });
    expect(data(e).notification.body).toContain("- Old chat");
    // The other user's watch gets its own next event, and never this one.
    const mine = await createChat(other);
    await wo.next(ofChat(mine.id));
    expect(wo.events.filter((x) => x.event === "notification")).toEqual([]);
  });

  it("shows the chat exactly as GET /chats/{chat} does, children included", async () => {
    const u = await member();
    const root = await createChat(u);
    const child = await createChat(u, { parent_chat_id: root.id });
    await caughtUp();
    const w = await openWatch(u);
    await patchChat(u, root.id, { title: "Root, renamed" });
    const e = await w.next(ofChat(root.id));
    expect(e.event).toBe("title_change");
    // files and last_injected_context are GET /{chat} only (docs/api.md).
    const {
      files: _files,
      last_injected_context: _context,
      ...fetched
    } = await getChat(u, root.id);
    expect(fetched.children.map((c: { id: string }) => c.id)).toEqual([child.id]);
    expect(data(e).chat).toEqual(fetched);
  });
});

describe("watch isolation", () => {
  it("never delivers another owner's events, with two owners writing at the same time", async () => {
    const owners = [await member(), await member()];
    const watches = await Promise.all(owners.map((u) => openWatch(u)));
    const chatIds = owners.map(() => new Set<string>());

    await Promise.all(
      owners.map(async (u, i) => {
        for (let n = 0; n < 5; n++) {
          const chat = await createChat(u, { content: text(`chat ${n} of owner ${i}`) });
          chatIds[i]!.add(chat.id);
          await patchChat(u, chat.id, { title: `renamed ${n}` });
          await setStatus(chat.id, "running");
        }
      }),
    );
    // Both writers are done: a last change of each owner is ordered after every event above, so
    // once it arrives, anything foreign would have arrived before it.
    const markers = await Promise.all(owners.map((u) => createChat(u)));
    await Promise.all(watches.map((w, i) => w.next(ofChat(markers[i].id))));

    owners.forEach((u, i) => {
      const events = watches[i]!.events;
      expect(events.length).toBe(5 * 3 + 1);
      for (const e of events) {
        expect(data(e).chat.owner_id).toBe(u.id);
        expect(chatIds[i]!.has(data(e).chat.id) || data(e).chat.id === markers[i].id).toBe(true);
      }
    });
  });

  it("shows a site owner only their own chats on the watch, not the members'", async () => {
    const admin = await member({ owner: true });
    const someone = await member();
    const w = await openWatch(admin);
    // The member watches too, so the member's events are rendered in this process.
    const theirWatch = await openWatch(someone);
    const theirs = await createChat(someone);
    await patchChat(someone, theirs.id, { title: "not for the admin" });
    await setStatus(theirs.id, "running");
    await theirWatch.waitFor(3);
    const mine = await createChat(admin);
    const e = await w.next(ofChat(mine.id));
    expect(e.event).toBe("created");
    expect(w.events.map((x) => data(x).chat.id)).toEqual([mine.id]);
  });
});

describe("GET /chats/{chat}/stream", () => {
  it("sends status, then the messages after after_id, then the queue, and only then live events", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId, text: "first" });
    const [first] = (await api(u, "GET", `/${chat.id}/messages`)).json.messages;
    const second = await gen.chatMessage(srv.pool, chat.id, { text: "second" });
    const third = await gen.chatMessage(srv.pool, chat.id, { text: "third" });
    // The chat is pending: this message waits in the queue.
    const sent = await api(u, "POST", `/${chat.id}/messages`, { content: text("queued one") });
    expect(sent.json.queued).toBe(true);
    await caughtUp();

    const s = await openStream(u, chat.id, { query: `?after_id=${first.id}` });
    expect(s.status).toBe(200);
    const snapshot = await snapshotOf(s);
    expect(snapshot.map((e) => e.event)).toEqual(["status", "message", "message", "queue_update"]);
    expect(data(snapshot[0]!)).toEqual({ chat_id: chat.id, status: "pending" });
    expect(snapshot.slice(1, 3).map((e) => data(e).id)).toEqual([second.id, third.id]);
    expect(data(snapshot[1]!)).toMatchObject({
      chat_id: chat.id,
      role: "assistant",
      content: [{ type: "text", text: "second" }],
    });
    expect(data(snapshot[3]!).queued_messages).toMatchObject([
      { id: sent.json.queued_message.id, content: text("queued one") },
    ]);
    // The snapshot ends at a cursor the client can resume from.
    expect(snapshot[3]!.id).toMatch(cursorPattern);

    const live = await gen.chatMessage(srv.pool, chat.id, { text: "live" });
    const e = await s.next(kind("message"));
    expect(e.event).toBe("message");
    expect(s.events.indexOf(e)).toBe(4);
    expect(data(e).id).toBe(live.id);
  });

  it("starts a chat in error with its ChatError right after the status, as a client connected all along saw it", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId, text: "first" });
    await failChat(chat.id);
    await caughtUp();
    const s = await openStream(u, chat.id);
    const snapshot = await snapshotOf(s);
    expect(snapshot.map((e) => e.event)).toEqual(["status", "error", "message", "queue_update"]);
    expect(data(snapshot[0]!)).toEqual({ chat_id: chat.id, status: "error" });
    expect(data(snapshot[1]!)).toEqual(chatError);
  });

  it("starts a chat in requires_action with the calls waiting for the client after its messages", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId, text: "first" });
    const asked = await requireAction(chat.id);
    await caughtUp();
    const s = await openStream(u, chat.id);
    const snapshot = await snapshotOf(s);
    expect(snapshot.map((e) => e.event)).toEqual([
      "status",
      "message",
      "message",
      "action_required",
      "queue_update",
    ]);
    expect(data(snapshot[2]!).id).toBe(asked.id);
    expect(data(snapshot[3]!)).toEqual({
      chat_id: chat.id,
      tool_calls: [{ tool_call_id: "call_1", tool_name: "read_file", args: { path: "README.md" } }],
    });
    // Answered: the next snapshot has no calls to show.
    const answered = await api(u, "POST", `/${chat.id}/tool-results`, {
      results: [{ tool_call_id: "call_1", output: "# readme" }],
    });
    expect(answered.status).toBe(200);
    const after = await snapshotOf(await openStream(u, chat.id));
    expect(after.map((e) => e.event)).not.toContain("action_required");
  });

  it("sends live message, queue_update, history_reset, status, error and action_required events", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId, text: "first" });
    const [first] = (await api(u, "GET", `/${chat.id}/messages`)).json.messages;
    await caughtUp();
    const s = await openStream(u, chat.id);
    await snapshotOf(s);
    const start = s.events.length;

    const reply = await gen.chatMessage(srv.pool, chat.id, { text: "a reply" });
    const message = await s.next(kind("message"));
    expect(data(message)).toMatchObject({ id: reply.id, chat_id: chat.id, role: "assistant" });
    expect(data(message).content).toEqual(text("a reply"));

    const sent = await api(u, "POST", `/${chat.id}/messages`, { content: text("later") });
    expect(sent.json.queued).toBe(true);
    const queued = await s.next(kind("queue_update"));
    expect(data(queued).queued_messages).toMatchObject([
      { id: sent.json.queued_message.id, chat_id: chat.id, content: text("later") },
    ]);

    const edited = await api(u, "PATCH", `/${chat.id}/messages/${first.id}`, {
      content: text("first, edited"),
    });
    expect(edited.status).toBe(200);
    const reset = await s.next(kind("history_reset"));
    expect(data(reset)).toEqual({ chat_id: chat.id, deleted_message_ids: [first.id, reply.id] });
    const replacement = await s.next(kind("message"));
    expect(data(replacement).id).toBe(edited.json.message.id);
    const cleared = await s.next(kind("queue_update"));
    expect(data(cleared).queued_messages).toEqual([]);

    await setStatus(chat.id, "running");
    const status = await s.next(kind("status"));
    expect(data(status)).toEqual({ chat_id: chat.id, status: "running" });

    await failChat(chat.id);
    const failed = await s.next(kind("status"));
    expect(data(failed)).toEqual({ chat_id: chat.id, status: "error" });
    const error = await s.next(kind("error"));
    expect(data(error)).toEqual(chatError);
    // status and error are one event: one cursor, error right after status.
    expect(error.id).toBe(failed.id);
    expect(s.events.indexOf(error)).toBe(s.events.indexOf(failed) + 1);

    const asked = await requireAction(chat.id);
    const askedMessage = await s.next(kind("message"));
    expect(data(askedMessage).id).toBe(asked.id);
    expect(data(await s.next(kind("status"))).status).toBe("requires_action");
    const action = await s.next(kind("action_required"));
    expect(data(action)).toEqual({
      chat_id: chat.id,
      tool_calls: [{ tool_call_id: "call_1", tool_name: "read_file", args: { path: "README.md" } }],
    });

    const live = s.events.slice(start);
    // The edit's three events come in the order its transaction wrote them; the reset first.
    const edit = live.slice(2, 5).map((e) => e.event);
    expect(edit[0]).toBe("history_reset");
    expect([...edit].sort()).toEqual(["history_reset", "message", "queue_update"]);
    expect([...live.slice(0, 2), ...live.slice(5)].map((e) => e.event)).toEqual([
      "message",
      "queue_update",
      "status",
      "status",
      "error",
      "message",
      "status",
      "action_required",
    ]);
    // One cursor per logged event, increasing (error shares its status event's cursor).
    expectIncreasing(live.filter((e) => e.event !== "error").map((e) => e.id));
  });

  it("moves the read cursor when a chat stream connects", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    await gen.chatMessage(srv.pool, chat.id, { text: "unread reply" });
    expect((await getChat(u, chat.id)).has_unread).toBe(true);
    const s = await openStream(u, chat.id);
    await s.next(kind("queue_update"));
    expect((await getChat(u, chat.id)).has_unread).toBe(false);
  });

  it("moves the read cursor when a chat stream disconnects, past messages that arrived while it was open", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    const s = await openStream(u, chat.id);
    await snapshotOf(s);
    const reply = await gen.chatMessage(srv.pool, chat.id, { text: "arrived while watching" });
    expect(data(await s.next(kind("message"))).id).toBe(reply.id);
    // Still open: the cursor has not moved past the new reply yet.
    expect((await getChat(u, chat.id)).has_unread).toBe(true);
    s.close();
    await eventually(async () => !(await getChat(u, chat.id)).has_unread, "has_unread is false");
  });
});

describe("resuming by cursor", () => {
  /** Changes of one chat that make four watch events: title, labels, status, pin. */
  async function fourChanges(u: Member, chatId: string, tag: string) {
    await patchChat(u, chatId, { title: `title ${tag}` });
    await patchChat(u, chatId, { labels: { tag } });
    await setStatus(chatId, tag === "a" ? "running" : "waiting");
    await patchChat(u, chatId, { pin_order: 1 });
  }

  for (const via of ["Last-Event-ID", "?after="] as const) {
    it(`sends a watch that resumes with ${via} exactly the events it missed, then live ones`, async () => {
      const u = await member();
      const w1 = await openWatch(u);
      const chat = await createChat(u);
      await w1.next(ofChat(chat.id));
      const last = w1.lastEventId();
      expect(last).toMatch(cursorPattern);
      w1.close();
      await w1.ended;

      await fourChanges(u, chat.id, "a");
      const missed = await logged({ ownerId: u.id }, last);
      expect(missed.map((r) => r.kind)).toEqual([
        "title_change",
        "updated",
        "status_change",
        "updated",
      ]);

      // The server has read them: they come from the log (backfill), not as live events.
      await caughtUp();
      const w2 =
        via === "Last-Event-ID"
          ? await openWatch(u, { headers: { "last-event-id": last } })
          : await openWatch(u, { query: `?after=${encodeURIComponent(last)}` });
      const backfilled = await w2.waitFor(missed.length);
      expect(backfilled.map((e) => e.id)).toEqual(missed.map((r) => r.cursor));
      expect(backfilled.map((e) => e.event)).toEqual(missed.map((r) => r.kind));

      await patchChat(u, chat.id, { title: "after the resume" });
      const live = await w2.next(
        (e) => e.event === "title_change" && data(e).chat.title === "after the resume",
      );
      const ids = w2.events.map((e) => e.id);
      expect(ids).toEqual([...missed.map((r) => r.cursor), live.id]);
      expectIncreasing(ids);
    });
  }

  it("gives a new watch a cursor before its first event, so a reconnect misses nothing", async () => {
    const u = await member();
    const w1 = await openWatch(u);
    await eventually(async () => w1.lastEventId() !== "", "the watch sent its starting cursor");
    const start = w1.lastEventId();
    expect(start).toMatch(cursorPattern);
    expect(w1.events).toEqual([]);
    w1.close();
    const chat = await createChat(u);
    await caughtUp();
    const w2 = await openWatch(u, { headers: { "last-event-id": start } });
    const e = await w2.next();
    expect(e.event).toBe("created");
    expect(data(e).chat.id).toBe(chat.id);
  });

  it("starts watches opened at the same moment on a server with no open stream at one cursor", async () => {
    // Its own server: no stream of another test is open on it.
    const idle = await testServer();
    try {
      const u = await member();
      const notified = await listen(idle.dbUrl, "chat_events");
      try {
        // Committed, and announced, while no stream is open: the server skips that read. Many
        // events, so that the read which the first watch starts takes a while.
        const chat = await gen.chat(idle.pool, { ownerId: u.id, organizationId: orgId });
        await idle.pool.query(
          `DO $$ BEGIN FOR i IN 1..5000 LOOP
             UPDATE chats SET title = 't' || i WHERE id = '${chat.id}';
           END LOOP; END $$`,
        );
        await notified.next();
        await notified.next();
      } finally {
        await notified.close();
      }
      const last = (await logged({ ownerId: u.id }, "0.0")).at(-1)!.cursor;
      // Else the first watch's catch-up may read only part of them (another session's open
      // transaction holds them above the horizon), and a later read move the start of the others.
      await belowHorizon(xidOf(last), "cluster");
      const url = `${idle.url}${base}/watch`;
      const watches = await Promise.all(
        Array.from({ length: 8 }, () => track(openSse(url, auth(u)))),
      );
      await eventually(async () => watches.every((w) => w.ids.length > 0), "starting cursors");
      const starts = new Set(watches.map((w) => w.ids[0]!));
      expect(starts.size).toBe(1);
      // None started at the position the server had before the catch-up, ahead of the writes.
      for (const start of starts) expect(compareIds(start, last)).toBeGreaterThanOrEqual(0);
    } finally {
      await idle.close();
    }
  });

  it("prefers Last-Event-ID over ?after= (a reconnecting EventSource keeps its first URL)", async () => {
    const u = await member();
    const w1 = await openWatch(u);
    const chat = await createChat(u);
    const first = await w1.next(ofChat(chat.id));
    await patchChat(u, chat.id, { title: "second" });
    const second = await w1.next(ofChat(chat.id));
    w1.close();
    await patchChat(u, chat.id, { title: "third" });
    await caughtUp();
    const w2 = await openWatch(u, {
      query: `?after=${first.id}`,
      headers: { "last-event-id": second.id },
    });
    const e = await w2.next();
    expect(e.event).toBe("title_change");
    expect(data(e).chat.title).toBe("third");
    expect(compareIds(second.id, e.id)).toBeLessThan(0);
  });

  it("never moves a resuming watch's Last-Event-ID past events it has not sent yet", async () => {
    // A client cut off at any point reconnects with the last id it saw; if that id were ahead of
    // events still to come on this connection, those events would be lost for good.
    const u = await member();
    const w1 = await openWatch(u);
    const chat = await createChat(u);
    await w1.next(ofChat(chat.id));
    const last = w1.lastEventId();
    w1.close();
    await fourChanges(u, chat.id, "b");
    const missed = await logged({ ownerId: u.id }, last);
    await caughtUp();
    const w2 = await openWatch(u, { headers: { "last-event-id": last } });
    await w2.waitFor(missed.length);
    expect(w2.ids.length).toBeGreaterThan(0);
    for (let i = 1; i < w2.ids.length; i++) {
      expect(
        compareIds(w2.ids[i - 1]!, w2.ids[i]!),
        `id ${w2.ids[i - 1]} was sent before ${w2.ids[i]}`,
      ).toBeLessThanOrEqual(0);
    }
  });

  it("sends a chat stream that resumes with Last-Event-ID its logged events instead of a snapshot", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    // Else the chat's first message event may lie after the snapshot's cursor.
    await caughtUp();
    const s1 = await openStream(u, chat.id);
    await s1.next(kind("queue_update"));
    const last = s1.lastEventId();
    expect(last).toMatch(cursorPattern);
    s1.close();
    await s1.ended;

    const a = await gen.chatMessage(srv.pool, chat.id, { text: "missed a" });
    await setStatus(chat.id, "running");
    const b = await gen.chatMessage(srv.pool, chat.id, { text: "missed b" });
    const missed = await logged({ chatId: chat.id }, last);
    expect(missed.map((r) => r.kind)).toEqual(["message", "status_change", "message"]);
    await caughtUp();

    const s2 = await openStream(u, chat.id, { headers: { "last-event-id": last } });
    const got = await s2.waitFor(3);
    expect(got.map((e) => e.event)).toEqual(["message", "status", "message"]);
    expect(got.map((e) => e.id)).toEqual(missed.map((r) => r.cursor));
    expect([data(got[0]!).id, data(got[2]!).id]).toEqual([a.id, b.id]);
    expect(data(got[1]!)).toEqual({ chat_id: chat.id, status: "running" });

    const c = await gen.chatMessage(srv.pool, chat.id, { text: "live c" });
    const live = await s2.next((e) => e.event === "message" && data(e).id === c.id);
    // No snapshot: nothing but the missed events and the live one.
    expect(s2.events).toEqual([...got, live]);
  });
});

describe("resync", () => {
  /**
   * Opens a watch with an unusable `cursor`: it must get `resync` first, whose id is a cursor
   * that works (a reconnect with it resumes without resync), and live events after it.
   */
  async function expectResync(cursor: string) {
    const u = await member();
    const chat = await createChat(u);
    await caughtUp();
    const w = await openWatch(u, { headers: { "last-event-id": cursor } });
    const resync = await w.next();
    expect(resync.event).toBe("resync");
    expect(resync.id).toMatch(cursorPattern);
    expect(data(resync)).toEqual({ cursor: resync.id });

    await patchChat(u, chat.id, { title: "after resync" });
    const live = await w.next(ofChat(chat.id));
    expect(live.event).toBe("title_change");
    expect(compareIds(resync.id, live.id)).toBeLessThan(0);
    w.close();

    const again = await openWatch(u, { headers: { "last-event-id": resync.id } });
    const first = await again.next();
    expect(first.event).toBe("title_change");
    expect(first.id).toBe(live.id);
  }

  it("answers a malformed cursor with resync and a usable cursor, then live events", async () => {
    await expectResync("not-a-cursor");
  });

  it("answers a cursor from the future with resync", async () => {
    await expectResync(`${2n ** 62n}.1`);
  });

  it("answers a cursor older than pruning with resync", async () => {
    const u = await member();
    const w1 = await openWatch(u);
    const chat = await createChat(u);
    const created = await w1.next(ofChat(chat.id));
    w1.close();
    await patchChat(u, chat.id, { title: "before pruning" });
    // Pruning removes only events below this database's horizon: once the title change is, it
    // goes too.
    const [titled] = await logged({ ownerId: u.id }, created.id);
    await belowHorizon(xidOf(titled!.cursor), "database");
    // Everything logged so far was committed two hours ago, and the retention is one hour.
    await gen.agedEventLog(srv.pool, 2 * 3600);
    const { logger } = captureLogger();
    const pruning = startEventPruning({ pool: srv.pool, retentionSeconds: 3600, logger });
    try {
      expect(await pruning.runOnce()).toBeGreaterThan(0);
    } finally {
      await pruning.stop();
    }
    expect(await logged({ ownerId: u.id }, created.id)).toEqual([]);
    await expectResync(created.id);
    // The same client, resuming from its own pruned cursor.
    const w2 = await openWatch(u, { headers: { "last-event-id": created.id } });
    expect((await w2.next()).event).toBe("resync");
  });

  it("answers a chat stream's unusable cursor with resync, then a fresh snapshot", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    const s = await openStream(u, chat.id, { headers: { "last-event-id": "garbage" } });
    const events = await s.waitFor(4);
    expect(events.map((e) => e.event)).toEqual(["resync", "status", "message", "queue_update"]);
    expect(events[0]!.id).toMatch(cursorPattern);
  });
});

describe("slow subscribers", () => {
  it("disconnects a subscriber that stops reading, and delivers every event to a reading one", async () => {
    const server = await testServer({ dbUrl: srv.dbUrl, maxQueuedBytes: 64 * 1024 });
    try {
      const u = await member();
      const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
      // The chat's `created` is logged before the watches open, yet may still reach them (the
      // server reads the log only below the xmin horizon). The test counts the events of its own
      // writes, told apart by their transaction ids.
      const before = (await logged({ ownerId: u.id }, "0.0")).map((r) => r.cursor);
      const url = `${server.url}${base}/watch`;
      const stalled = await track(openSse(url, auth(u)));
      const reader = await track(openSse(url, auth(u)));
      stalled.pause();
      const subscribers = () => server.watch.hub.counts().watch;
      expect(subscribers()).toBe(2);

      // 50 labels of the largest allowed size: each event's chat is ~16 KiB of JSON. The writer
      // waits for the reading client after each change, so that client's queue never holds more
      // than one frame; the stalled one falls behind until the socket buffers are full and its
      // queue overflows (here after a few MB; the cap only stops a broken server from looping).
      const fatLabels = (n: number) =>
        Object.fromEntries(
          Array.from({ length: 50 }, (_, k) => [
            `label-${k}-${"k".repeat(54)}`,
            `${n}-${"v".repeat(240)}`,
          ]),
        );
      const xids = new Set<string>();
      const mine = (e: SseEvent) => xids.has(xidOf(e.id));
      const writeFat = async (n: number) => {
        const labels = JSON.stringify(fatLabels(n));
        const { rows } = await srv.pool.query<{ xid: string }>(
          "UPDATE chats SET labels = $2 WHERE id = $1 RETURNING pg_current_xact_id()::text AS xid",
          [chat.id, labels],
        );
        xids.add(rows[0]!.xid);
        return labels.length;
      };
      const capBytes = 64 * 1024 * 1024;
      let written = 0;
      let bytes = 0;
      while (subscribers() === 2 && bytes < capBytes) {
        bytes += await writeFat(written++);
        await reader.waitFor(written, mine, 30_000);
      }
      expect(subscribers(), `stalled subscriber kept after ${bytes} bytes`).toBe(1);

      // A few more after the overflow: the reading client keeps getting every event, in order.
      for (let n = 0; n < 3; n++) bytes += await writeFat(written++);
      const got = await reader.waitFor(written, mine, 30_000);
      // One `updated` per write, each delivered once.
      const expected = (await logged({ ownerId: u.id }, "0.0")).filter((r) =>
        xids.has(xidOf(r.cursor)),
      );
      expect(expected.map((r) => r.kind)).toEqual(Array(written).fill("updated"));
      expect(got.map((e) => e.id)).toEqual(expected.map((r) => r.cursor));
      expectIncreasing(got.map((e) => e.id));
      expect(ownEvents(reader.events, mine, before)).toEqual(got);

      // Dropped by the server itself, while the client still reads nothing: its connection is
      // closed, not left waiting for a reader that may never come back.
      await eventually(
        async () => server.logLines.some((l) => l.includes("slow stream subscriber dropped")),
        "the server logs the drop while the client is still stalled",
      );

      // The stalled client, reading again, finds its stream ended short of the log...
      stalled.resume();
      expect(await settlesWithin(stalled.ended, 10_000)).toBe(true);
      const own = ownEvents(stalled.events, mine, before);
      const seen = own.length;
      expect(seen).toBeLessThan(written);
      expect(own.map((e) => e.id)).toEqual(expected.slice(0, seen).map((r) => r.cursor));
      // ...and resumes by cursor with exactly what it missed.
      const resumed = await track(
        openSse(url, auth(u, { "last-event-id": stalled.lastEventId() })),
      );
      const rest = await resumed.waitFor(written - seen, mine, 30_000);
      expect(rest.map((e) => e.id)).toEqual(expected.slice(seen).map((r) => r.cursor));
      expect(ownEvents(resumed.events, mine, before)).toEqual(rest);
      // Operators see the drop in /metrics.
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/^pgchatd_stream_overflows_total 1$/m);
      expect(metrics).toMatch(/^pgchatd_stream_subscribers\{kind="watch"\} 2$/m);
    } finally {
      await server.close();
    }
  });
});

/**
 * A message_part carries the last durable cursor the stream is at, so a client that reconnects
 * with it misses nothing: it is at or after the snapshot's end, and every logged event of the
 * chat up to it is one the client already has (a message the snapshot sent; the live events
 * for those are dropped as duplicates, but move the cursor).
 */
async function expectPartCursor(part: SseEvent, snapshot: SseEvent[], chatId: string) {
  const end = snapshot[snapshot.length - 1]!;
  expect(part.id).toMatch(cursorPattern);
  expect(compareIds(part.id, end.id)).toBeGreaterThanOrEqual(0);
  const sent = new Set(snapshot.filter(kind("message")).map((e) => data(e).id));
  const skipped = (await logged({ chatId }, end.id)).filter(
    (r) => compareIds(r.cursor, part.id) <= 0,
  );
  for (const r of skipped) {
    expect(r.kind).toBe("message");
    expect(sent.has(r.message_id)).toBe(true);
  }
}

/** Puts the chat in a turn under a runner's lease (what stream parts are published under). */
async function runningUnder(chatId: string) {
  const workerId = crypto.randomUUID();
  const { rows } = await srv.pool.query<{ started_at: string }>(
    `UPDATE chats SET status = 'running', worker_id = $2, started_at = now(), heartbeat_at = now()
     WHERE id = $1 RETURNING started_at::text`,
    [chatId, workerId],
  );
  await caughtUp();
  return { workerId, startedAt: rows[0]!.started_at };
}

/** A streamed text delta as the runner publishes it (src/runner/parts.ts). */
const textPart = (chatId: string, text: string) => ({
  chat_id: chatId,
  part: { type: "text", text },
});

describe("message_part", () => {
  it("sends a published part to that chat's streams with the last durable cursor, and to no other chat", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    const other = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    const lease = await runningUnder(chat.id);
    const otherLease = await runningUnder(other.id);
    const s = await openStream(u, chat.id);
    const o = await openStream(u, other.id);
    const snapshot = await snapshotOf(s);
    await snapshotOf(o);

    await srv.watch.publishEphemeral(chat.id, u.id, "message_part", textPart(chat.id, "x"), lease);
    const part = await s.next(kind("message_part"));
    expect(data(part)).toMatchObject({ part: { text: "x" } });
    await expectPartCursor(part, snapshot, chat.id);

    const reply = await gen.chatMessage(srv.pool, chat.id, { text: "done" });
    const message = await s.next(kind("message"));
    expect(data(message).id).toBe(reply.id);
    await srv.watch.publishEphemeral(chat.id, u.id, "message_part", textPart(chat.id, "y"), lease);
    const after = await s.next(kind("message_part"));
    expect(data(after)).toMatchObject({ part: { text: "y" } });
    expect(after.id).toBe(message.id);

    // The hub delivers a part only to the owner it names (the chat's, from its row), even on
    // this chat (fail closed).
    const stranger = await member();
    srv.watch.hub.dispatchEphemeral(
      chat.id,
      stranger.id,
      'event: message_part\ndata: {"text":"not yours"}\n\n',
      Number.MAX_SAFE_INTEGER,
    );
    // Parts are delivered in publishing order: once "marker" arrives on each stream, anything
    // published before it would have arrived too.
    await srv.watch.publishEphemeral(
      chat.id,
      u.id,
      "message_part",
      textPart(chat.id, "marker"),
      lease,
    );
    await srv.watch.publishEphemeral(
      other.id,
      u.id,
      "message_part",
      textPart(other.id, "marker"),
      otherLease,
    );
    await s.next((e) => e.event === "message_part" && data(e).part.text === "marker");
    await o.next((e) => e.event === "message_part" && data(e).part.text === "marker");
    const parts = s.events.filter(kind("message_part")).map((e) => data(e));
    expect(parts.map((p) => p.part.text)).toEqual(["x", "y", "marker"]);
    // Each carries the stream's seq, increasing in publication order.
    expect(parts.map((p) => p.seq)).toEqual([...parts.map((p) => p.seq)].sort((a, b) => a - b));
    expect(new Set(parts.map((p) => p.seq)).size).toBe(3);
    expect(o.events.filter(kind("message_part")).map((e) => data(e).part.text)).toEqual(["marker"]);
  });

  it("sends a part published by one server to a chat stream on another server of the same database", async () => {
    const other = await testServer({ dbUrl: srv.dbUrl });
    try {
      const u = await member();
      const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
      const lease = await runningUnder(chat.id);
      const remote = await openStream(u, chat.id, { server: other });
      const local = await openStream(u, chat.id);
      const snapshot = await snapshotOf(remote);
      await snapshotOf(local);

      await srv.watch.publishEphemeral(
        chat.id,
        u.id,
        "message_part",
        textPart(chat.id, "across"),
        lease,
      );
      const part = await remote.next(kind("message_part"));
      expect(data(part)).toMatchObject({ part: { text: "across" } });
      await expectPartCursor(part, snapshot, chat.id);
      // After a durable event, a part carries exactly that event's cursor, on the other server.
      const reply = await gen.chatMessage(srv.pool, chat.id, { text: "persisted" });
      const message = await remote.next((e) => e.event === "message" && data(e).id === reply.id);
      await srv.watch.publishEphemeral(
        chat.id,
        u.id,
        "message_part",
        textPart(chat.id, "after"),
        lease,
      );
      const after = await remote.next(
        (e) => e.event === "message_part" && data(e).part.text === "after",
      );
      expect(after.id).toBe(message.id);
      // The publishing server's own subscriber gets it once (not again from its own NOTIFY).
      await other.watch.publishEphemeral(
        chat.id,
        u.id,
        "message_part",
        textPart(chat.id, "back"),
        lease,
      );
      await local.next((e) => e.event === "message_part" && data(e).part.text === "back");
      expect(local.events.filter(kind("message_part")).map((e) => data(e).part.text)).toEqual([
        "across",
        "after",
        "back",
      ]);
    } finally {
      await other.close();
    }
  });
});

describe("ephemeral events from a process without a server", () => {
  it("delivers a runner process's message_part and retry events to the chat's streams", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    const lease = await runningUnder(chat.id);
    const s = await openStream(u, chat.id);
    await snapshotOf(s);
    // What `pgchatd runner` publishes with: NOTIFY through its pool, no LISTEN connection.
    const publish = createEphemeralPublisher(srv.pool);
    const error = {
      message: "The provider is overloaded.",
      kind: "overloaded",
      provider: "openai",
      retryable: true,
      status_code: 529,
      detail: null,
    };
    await publish(
      chat.id,
      u.id,
      "retry",
      { chat_id: chat.id, attempt: 2, max_attempts: 5, delay_ms: 1000, error },
      lease,
    );
    await publish(
      chat.id,
      u.id,
      "message_part",
      { chat_id: chat.id, part: { type: "text", text: "hi" } },
      lease,
    );
    const retry = await s.next(kind("retry"));
    expect(data(retry)).toMatchObject({ chat_id: chat.id, attempt: 2 });
    const part = await s.next(kind("message_part"));
    expect(data(part).part).toEqual({ type: "text", text: "hi" });
  });
});

describe("stream errors", () => {
  it("answers 404 for another owner's chat stream and for an unknown chat", async () => {
    const u = await member();
    const stranger = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    const theirs = await openStream(stranger, chat.id);
    expect(theirs.status).toBe(404);
    const unknown = await openStream(u, unknownId);
    expect(unknown.status).toBe(404);
    // Same body either way: a chat's existence is not revealed.
    const [a, b] = await Promise.all([
      api(stranger, "GET", `/${chat.id}/stream`),
      api(u, "GET", `/${unknownId}/stream`),
    ]);
    expect(a).toEqual(b);
  });

  it("answers 400 for a malformed chat id", async () => {
    const u = await member();
    const s = await openStream(u, "not-a-uuid");
    expect(s.status).toBe(400);
  });

  it("answers 401 without a token, on both streams", async () => {
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    const watch = await track(openSse(`${srv.url}${base}/watch`));
    const stream = await track(openSse(`${srv.url}${base}/${chat.id}/stream`));
    expect([watch.status, stream.status]).toEqual([401, 401]);
  });
});

describe("shutdown", () => {
  it("ends every open stream when the server shuts down, without waiting for the drain timeout", async () => {
    // The production server (pgchatd serve) on this file's database: its close() drains
    // requests, and only a stream that never ends would make it wait for the timeout.
    const { logger, lines } = captureLogger();
    const config = loadConfig({
      DATABASE_URL: srv.dbUrl,
      PORT: "0",
      PGCHATD_DATA_DIR: "/tmp/pgchatd-unused",
      PGCHATD_SHUTDOWN_TIMEOUT_MS: "60000",
    });
    const server = await startServer(config, logger);
    const u = await member();
    const chat = await gen.chat(srv.pool, { ownerId: u.id, organizationId: orgId });
    const w = await track(openSse(`${server.url}${base}/watch`, auth(u)));
    const s = await track(openSse(`${server.url}${base}/${chat.id}/stream`, auth(u)));
    expect([w.status, s.status]).toEqual([200, 200]);
    await snapshotOf(s);
    expect(server.watch.hub.counts()).toEqual({ watch: 1, stream: 1, agent: 0 });

    const closing = server.close();
    // Well under the 60 s drain timeout: the streams were ended, not cut off at the deadline.
    expect(await settlesWithin(Promise.all([w.ended, s.ended]), 10_000)).toBe(true);
    expect(await settlesWithin(closing, 10_000)).toBe(true);
    expect(lines.some((l) => l.includes("shutdown timeout"))).toBe(false);
    expect(server.watch.hub.counts()).toEqual({ watch: 0, stream: 0, agent: 0 });
  });
});
