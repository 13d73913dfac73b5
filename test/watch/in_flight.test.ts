import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { createEphemeralPublisher } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { fakeOpenAI } from "../setup/fake_openai.ts";
import { eventually, settled, testRunner } from "../setup/runner.ts";
import { type TestServer, testServer } from "../setup/server.ts";
import { openSse, type SseClient, type SseEvent } from "../setup/sse.ts";

/*
 * A chat stream opened mid-turn starts with the turn's output so far (docs/api.md "Chat stream
 * events"), whichever replica it opens on and whichever process runs the turn: the runner here
 * publishes as `pgchatd runner` does (no server of its own), and the streams are on two servers.
 */

const base = "/api/experimental/chats";
let a: TestServer;
let b: TestServer;
let orgId: string;

beforeAll(async () => {
  a = await testServer();
  b = await testServer({ dbUrl: a.dbUrl });
  orgId = (await gen.organization(a.pool)).id;
});
afterAll(async () => {
  await b?.close();
  await a?.close();
});

const data = (e: SseEvent) => JSON.parse(e.data);
const textOf = (events: SseEvent[]) =>
  events
    .filter((e) => e.event === "message_part" && data(e).part.type === "text")
    .map((e) => data(e).part.text)
    .join("");

function open(server: TestServer, token: string, chatId: string, headers = {}): Promise<SseClient> {
  return openSse(`${server.url}${base}/${chatId}/stream`, {
    authorization: `Bearer ${token}`,
    ...headers,
  }).then((s) => {
    onTestFinished(() => s.close());
    return s;
  });
}

/** A new member's chat (its first message sent) on a model the fake OpenAI server answers. */
async function chatAnsweredBy(respond: Parameters<typeof fakeOpenAI>[0]) {
  const fake = await fakeOpenAI(respond);
  onTestFinished(() => fake.close());
  const provider = await gen.chatProvider(a.pool, { baseUrl: fake.url });
  const model = await gen.modelConfig(a.pool, { providerId: provider.id });
  const u = await gen.member(a.pool, { organizationIds: [orgId] });
  const res = await fetch(`${a.url}${base}`, {
    method: "POST",
    headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" },
    body: JSON.stringify({ content: [{ type: "text", text: "hi" }], model_config_id: model.id }),
  });
  return { u, chat: ((await res.json()) as { id: string }).id };
}

/** A gate a test opens: until then the fake's answer waits (`pause`). */
function gate() {
  let release!: () => void;
  const until = new Promise<void>((r) => {
    release = r;
  });
  // Opened at the test's end at the latest, so no answer waits past it.
  onTestFinished(() => release());
  return { until, release };
}

/** A chat whose model streams `before`, stops until `release()`, then streams `after`. */
async function pausedTurn(before: string[], after: string[]) {
  const { until, release } = gate();
  const { u, chat } = await chatAnsweredBy(() => ({
    kind: "text",
    chunks: [...before, ...after],
    pause: { at: before.length, until },
  }));
  return { u, chat, release };
}

describe("a chat stream opened mid-turn", () => {
  it("starts with the parts streamed so far, on another replica than the watcher's, then the rest with no gap and no duplicate", async () => {
    const { u, chat, release } = await pausedTurn(["Hel", "lo, "], ["wor", "ld"]);
    // The runner is its own process's: parts reach the servers only through the database.
    const runner = await testRunner({
      dbUrl: a.dbUrl,
      partFlushMs: 5,
      publish: createEphemeralPublisher(a.pool),
    });
    // Connected all along, on server A.
    const all = await open(a, u.token, chat);
    await all.next((e) => e.event === "queue_update");
    runner.runner.wake();
    await eventually(
      async () => (textOf(all.events) === "Hello, " ? true : undefined),
      "the first parts",
    );

    // Opened mid-turn on server B: the snapshot holds the output so far.
    const late = await open(b, u.token, chat);
    const snapshot = await late.waitFor(1, (e) => e.event === "queue_update");
    const before = late.events.slice(0, late.events.indexOf(snapshot[0]!));
    expect(before.map((e) => e.event)).toEqual([
      "status",
      "message",
      ...before.slice(2).map(() => "message_part"),
    ]);
    expect(data(before[0]!).status).toBe("running");
    expect(textOf(before)).toBe("Hello, ");

    release();
    await settled(a.pool, chat, "waiting");
    const final = await late.next((e) => e.event === "message" && data(e).role === "assistant");
    // What each client rendered before the stored message replaced the parts is the same text.
    const upTo = (s: SseClient, stop: SseEvent) => s.events.slice(0, s.events.indexOf(stop));
    const allFinal = await all.next((e) => e.event === "message" && data(e).role === "assistant");
    expect(textOf(upTo(late, final))).toBe("Hello, world");
    expect(textOf(upTo(all, allFinal))).toBe("Hello, world");
    expect(data(final).content).toEqual([{ type: "text", text: "Hello, world" }]);
    // One turn, its parts in increasing seq, each once.
    const parts = late.events.filter((e) => e.event === "message_part").map(data);
    expect(new Set(parts.map((p) => p.turn_id)).size).toBe(1);
    const seqs = parts.map((p) => p.seq);
    expect(seqs).toEqual([...new Set(seqs)].sort((x, y) => x - y));
  });

  it("starts after resync the same way: the snapshot follows the resync event", async () => {
    const { u, chat, release } = await pausedTurn(["par", "tial "], ["end"]);
    const runner = await testRunner({
      dbUrl: a.dbUrl,
      partFlushMs: 5,
      publish: createEphemeralPublisher(a.pool),
    });
    runner.runner.wake();
    await eventually(async () => {
      const { rows } = await a.pool.query(
        "SELECT string_agg(body, '' ORDER BY seq) AS bodies FROM chat_stream_parts WHERE chat_id = $1 AND NOT saved",
        [chat],
      );
      return rows[0].bodies?.includes("tial") ? true : undefined;
    }, "both parts to be stored");
    const s = await open(b, u.token, chat, { "last-event-id": "not-a-cursor" });
    const resync = await s.next();
    expect(resync.event).toBe("resync");
    await s.next((e) => e.event === "queue_update");
    expect(textOf(s.events)).toBe("partial ");
    release();
    await settled(a.pool, chat, "waiting");
    await s.next((e) => e.event === "message" && data(e).role === "assistant");
    expect(textOf(s.events)).toBe("partial end");
  });

  it("starts with the retry the runner is waiting out, then the new attempt's parts", async () => {
    let calls = 0;
    // The second attempt waits until the late stream has its snapshot: the retry is in flight.
    const { until, release } = gate();
    const { u, chat } = await chatAnsweredBy(() =>
      ++calls === 1
        ? {
            kind: "status",
            status: 429,
            body: { error: { message: "slow down" } },
            headers: { "retry-after": "1" },
          }
        : { kind: "text", chunks: ["after the wait"], pause: { at: 0, until } },
    );
    const runner = await testRunner({
      dbUrl: a.dbUrl,
      partFlushMs: 5,
      publish: createEphemeralPublisher(a.pool),
      retry: { retries: 2, baseDelayMs: 5, maxDelayMs: 5_000 },
    });
    runner.runner.wake();
    await eventually(async () => {
      const { rows } = await a.pool.query(
        "SELECT 1 FROM chat_stream_parts WHERE chat_id = $1 AND body LIKE 'event: retry%'",
        [chat],
      );
      return rows.length > 0 ? true : undefined;
    }, "the retry to be published");
    const s = await open(b, u.token, chat);
    await s.next((e) => e.event === "queue_update");
    const retry = s.events.find((e) => e.event === "retry");
    expect(retry && data(retry)).toMatchObject({
      chat_id: chat,
      attempt: 2,
      error: { kind: "rate_limit" },
    });
    release();
    await settled(a.pool, chat, "waiting");
    await s.next((e) => e.event === "message" && data(e).role === "assistant");
    expect(textOf(s.events)).toBe("after the wait");
  });

  it("delivers every part of concurrent publishers once, in seq order, on the publishing server too", async () => {
    const u = await gen.member(a.pool, { organizationIds: [orgId] });
    const chat = await gen.chat(a.pool, { ownerId: u.id, organizationId: orgId });
    const workerId = crypto.randomUUID();
    const { rows } = await a.pool.query<{ started_at: string }>(
      `UPDATE chats SET status = 'running', worker_id = $2, started_at = now() WHERE id = $1
       RETURNING started_at::text`,
      [chat.id, workerId],
    );
    const lease = { workerId, startedAt: rows[0]!.started_at };
    const s = await open(a, u.token, chat.id);
    await s.next((e) => e.event === "queue_update");
    // Two publishers at once: their answers may come back out of commit order.
    const each = 60;
    await Promise.all(
      ["x", "y"].map(async (who) => {
        for (let i = 0; i < each; i++) {
          await a.watch.publishEphemeral(
            chat.id,
            u.id,
            "message_part",
            { chat_id: chat.id, part: { type: "text", text: `${who}${i} ` } },
            lease,
          );
        }
      }),
    );
    const parts = await s.waitFor(2 * each, (e) => e.event === "message_part");
    const seqs = parts.map((e) => data(e).seq as number);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(new Set(parts.map((e) => data(e).part.text)).size).toBe(2 * each);
  });

  it("starts with nothing in flight once the turn is over", async () => {
    const { u, chat, release } = await pausedTurn(["done"], []);
    const runner = await testRunner({
      dbUrl: a.dbUrl,
      partFlushMs: 5,
      publish: createEphemeralPublisher(a.pool),
    });
    release();
    runner.runner.wake();
    await settled(a.pool, chat, "waiting");
    const s = await open(b, u.token, chat);
    await s.next((e) => e.event === "queue_update");
    expect(s.events.filter((e) => e.event === "message_part")).toEqual([]);
  });
});
