import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ChatStreamEvent,
  createClient,
  PgchatdError,
  type WatchEvent,
} from "../../packages/client/src/index.ts";
import { createEphemeralPublisher } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { eventually, settled, testRunner } from "../setup/runner.ts";
import { type TestServer, testServer } from "../setup/server.ts";

/*
 * The typed client (packages/client) against a real server over real sockets, with pgchatd's
 * runner answering on the local echo model: the chats, messages and streams routes as a client
 * developer uses them.
 */

let server: TestServer;
let orgId: string;

beforeAll(async () => {
  server = await testServer();
  orgId = (await gen.organization(server.pool)).id;
});

/** A runner that answers this test's chats (the local echo model), stopped when it ends. */
function answering() {
  return testRunner({
    dbUrl: server.dbUrl,
    partFlushMs: 5,
    publish: createEphemeralPublisher(server.pool),
  });
}
afterAll(() => server?.close());

async function member(opts: { owner?: boolean } = {}) {
  const u = await gen.member(server.pool, { organizationIds: [orgId], ...opts });
  return { ...u, client: createClient({ baseUrl: server.url, token: u.token }) };
}

const text = (t: string) => [{ type: "text" as const, text: t }];

/** The PgchatdError a call rejects with (it must reject with one). */
function failure(call: Promise<unknown>): Promise<PgchatdError> {
  return call.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (err: unknown) => {
      if (!(err instanceof PgchatdError)) throw err;
      return err;
    },
  );
}

/** Collects a stream's events until `done` says so (or the stream ends). */
async function collect<E>(stream: AsyncIterable<E>, done: (events: E[]) => boolean) {
  const events: E[] = [];
  for await (const ev of stream) {
    events.push(ev);
    if (done(events)) break;
  }
  return events;
}

describe("typed calls", () => {
  it("creates a chat, reads it back, renames, pins, archives and unarchives it", async () => {
    const { client } = await member();
    const chat = await client.POST("/api/experimental/chats", {
      body: { content: text("hello") },
    });
    expect(chat.status).toBe("pending");
    const read = await client.GET("/api/experimental/chats/{chat}", {
      params: { path: { chat: chat.id } },
    });
    expect(read.id).toBe(chat.id);
    // 204: the client resolves to undefined.
    const patched = await client.PATCH("/api/experimental/chats/{chat}", {
      params: { path: { chat: chat.id } },
      body: { title: "renamed", pin_order: 1 },
    });
    expect(patched).toBeUndefined();
    const renamed = await client.GET("/api/experimental/chats/{chat}", {
      params: { path: { chat: chat.id } },
    });
    expect(renamed).toMatchObject({ title: "renamed", pin_order: 1 });
    await client.PATCH("/api/experimental/chats/{chat}", {
      params: { path: { chat: chat.id } },
      body: { archived: true },
    });
    const archived = await client.GET("/api/experimental/chats", {
      params: { query: { q: "archived:true" } },
    });
    expect(archived.map((c) => c.id)).toEqual([chat.id]);
    await client.PATCH("/api/experimental/chats/{chat}", {
      params: { path: { chat: chat.id } },
      body: { archived: false },
    });
    const listed = await client.GET("/api/experimental/chats");
    expect(listed.map((c) => c.id)).toContain(chat.id);
  });

  it("rejects with a PgchatdError carrying the status, the message and the refused fields", async () => {
    const { client } = await member();
    const other = await member();
    const theirs = await other.client.POST("/api/experimental/chats", {
      body: { content: text("mine") },
    });
    const notFound = await failure(
      client.GET("/api/experimental/chats/{chat}", { params: { path: { chat: theirs.id } } }),
    );
    expect(notFound.status).toBe(404);
    expect(notFound.body.message).toBe("Chat not found.");

    const invalid = await failure(
      client.POST("/api/experimental/chats", { body: { content: [] } }),
    );
    expect(invalid.status).toBe(400);
    expect(invalid.validations.map((v) => v.field)).toContain("content");
    expect(invalid.spendLimit).toBeUndefined();
  });

  it("exposes a spend limit's 409 with its figures, and stores nothing", async () => {
    await answering();
    const owner = await member({ owner: true });
    const u = await member();
    await owner.client.PUT("/api/experimental/chats/usage-limits", {
      body: { spend_limit_micros: 100, period: "month" },
    });
    try {
      const spent = await u.client.POST("/api/experimental/chats", {
        body: { content: text("spend") },
      });
      await settled(server.pool, spent.id, "waiting");
      // A priced answer, stored as a turn stores its cost.
      await gen.costMessage(server.pool, spent.id, { costMicros: 120 });
      const err = await failure(
        u.client.POST("/api/experimental/chats", { body: { content: text("over the limit") } }),
      );
      expect(err.status).toBe(409);
      expect(err.spendLimit).toMatchObject({ spent_micros: 120, limit_micros: 100 });
      expect(Date.parse(err.spendLimit!.resets_at)).toBeGreaterThan(Date.now());
      expect((await u.client.GET("/api/experimental/chats")).map((c) => c.id)).toEqual([spent.id]);
    } finally {
      await owner.client.PUT("/api/experimental/chats/usage-limits", {
        body: { spend_limit_micros: null, period: "month" },
      });
    }
  });
});

describe("pages", () => {
  it("pages every chat once, in list order, by after_id", async () => {
    const { client } = await member();
    const created: string[] = [];
    // No runner answers them here: keyset pages hold for a list that does not change meanwhile.
    for (let i = 0; i < 7; i++) {
      created.push(
        (await client.POST("/api/experimental/chats", { body: { content: text(`c${i}`) } })).id,
      );
    }
    const pages: string[][] = [];
    for await (const page of client.chatPages({ limit: 3 })) pages.push(page.map((c) => c.id));
    expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
    const all = (
      await client.GET("/api/experimental/chats", { params: { query: { limit: 50 } } })
    ).map((c) => c.id);
    expect(pages.flat()).toEqual(all);
    expect(new Set(pages.flat())).toEqual(new Set(created));
  });

  it("reads messages oldest first after an id, and the history newest first", async () => {
    await answering();
    const { client } = await member();
    const chat = await client.POST("/api/experimental/chats", { body: { content: text("one") } });
    await settled(server.pool, chat.id, "waiting");
    for (const t of ["two", "three"]) {
      await client.POST("/api/experimental/chats/{chat}/messages", {
        params: { path: { chat: chat.id } },
        body: { content: text(t) },
      });
      await settled(server.pool, chat.id, "waiting");
    }
    const forward: number[] = [];
    for await (const page of client.messagesAfter(chat.id, 0, 2)) {
      forward.push(...page.map((m) => m.id));
    }
    expect(forward.length).toBe(6);
    expect(forward).toEqual([...forward].sort((a, b) => a - b));
    const backward: number[] = [];
    for await (const page of client.history(chat.id, 4)) backward.push(...page.map((m) => m.id));
    expect(backward).toEqual([...forward].reverse());
    // A poller that has seen the first three continues from there.
    const rest: number[] = [];
    for await (const page of client.messagesAfter(chat.id, forward[2]!)) {
      rest.push(...page.map((m) => m.id));
    }
    expect(rest).toEqual(forward.slice(3));
  });
});

describe("streams", () => {
  it("streams a chat's snapshot, then the answer as it is written, then the stored message", async () => {
    await answering();
    const { client } = await member();
    const chat = await client.POST("/api/experimental/chats", { body: { content: text("hi") } });
    await settled(server.pool, chat.id, "waiting");
    const stream = client.chatStream(chat.id);
    const iterator = stream[Symbol.asyncIterator]();
    const snapshot: ChatStreamEvent[] = [];
    for (;;) {
      const { value } = await iterator.next();
      snapshot.push(value!);
      if (value!.event === "queue_update") break;
    }
    expect(snapshot[0]).toMatchObject({ event: "status", data: { status: "waiting" } });
    expect(snapshot.filter((e) => e.event === "message")).toHaveLength(2);
    expect(stream.lastEventId).toMatch(/^\d+\.\d+$/);

    await client.POST("/api/experimental/chats/{chat}/messages", {
      params: { path: { chat: chat.id } },
      body: { content: text("stream this answer back") },
    });
    const live: ChatStreamEvent[] = [];
    for (;;) {
      const { value } = await iterator.next();
      live.push(value!);
      if (value!.event === "status" && value!.data.status === "waiting") break;
    }
    stream.close();
    const parts = live.flatMap((e) =>
      e.event === "message_part" && e.data.part.type === "text" ? [e.data.part.text ?? ""] : [],
    );
    const answer = live.filter((e) => e.event === "message").at(-1);
    expect(answer?.event).toBe("message");
    const stored =
      answer?.event === "message"
        ? answer.data.content.map((p) => (p as { text?: string }).text ?? "").join("")
        : "";
    expect(stored).toContain("stream this answer back");
    expect(parts.join("")).toBe(stored);
    expect(live.map((e) => e.event)).toContain("status");
  });

  it("resumes with Last-Event-ID: what happened while away arrives once, in order", async () => {
    await answering();
    const { client } = await member();
    const first = await client.POST("/api/experimental/chats", { body: { content: text("a") } });
    const watch = client.watch();
    await watch.opened;
    const rename = (title: string) =>
      client.PATCH("/api/experimental/chats/{chat}", {
        params: { path: { chat: first.id } },
        body: { title },
      });
    await rename("before");
    const seen = await collect(watch, (evs) =>
      evs.some((e) => e.event === "title_change" && e.data.chat?.title === "before"),
    );
    const cursor = watch.lastEventId;
    watch.close();
    expect(cursor).toBeDefined();
    expect(seen.every((e) => e.event === "resync" || e.data)).toBe(true);

    for (const t of ["away 1", "away 2", "away 3"]) await rename(t);
    // Then a pin (an `updated` event): once it arrives, everything before it has.
    await client.PATCH("/api/experimental/chats/{chat}", {
      params: { path: { chat: first.id } },
      body: { pin_order: 1 },
    });
    const resumed = client.watch({ lastEventId: cursor });
    const missed = await collect(resumed, (evs) => evs.some((e) => e.event === "updated"));
    resumed.close();
    // Each rename once, after the cursor (a frame shows the chat's current row, so events are
    // counted, not titles), and nothing from before it.
    // (The chat's own turn runs meanwhile: its status and summary events come too.)
    const ours = missed.filter((e) => e.event === "title_change" || e.event === "updated");
    expect(ours.map((e) => e.event)).toEqual([
      "title_change",
      "title_change",
      "title_change",
      "updated",
    ]);
    expect(missed.every((e) => e.id !== undefined && e.id !== cursor)).toBe(true);
  });

  it("tells a client whose cursor cannot be honoured to resync, then goes on live", async () => {
    const { client } = await member();
    const chat = await client.POST("/api/experimental/chats", { body: { content: text("x") } });
    const watch = client.watch({ lastEventId: "not-a-cursor" });
    const iterator = watch[Symbol.asyncIterator]();
    const first = (await iterator.next()).value as WatchEvent;
    expect(first.event).toBe("resync");
    await client.PATCH("/api/experimental/chats/{chat}", {
      params: { path: { chat: chat.id } },
      body: { title: "after resync" },
    });
    await eventually(async () => {
      const { value } = await iterator.next();
      return value?.event === "title_change" && value.data.chat?.title === "after resync"
        ? true
        : undefined;
    }, "the title change after the resync");
    watch.close();
  });

  it("refuses a stream of another user's chat with a PgchatdError, without retrying", async () => {
    const { client } = await member();
    const other = await member();
    const theirs = await other.client.POST("/api/experimental/chats", {
      body: { content: text("private") },
    });
    const err = await failure(collect(client.chatStream(theirs.id), () => true));
    expect(err.status).toBe(404);
  });
});
