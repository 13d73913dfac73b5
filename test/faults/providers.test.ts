import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { RunnerOptions } from "../../src/runner/index.ts";
import { createEphemeralPublisher } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { expectMessagesOnceEach, expectStreamMatchesLog } from "../setup/chat_log.ts";
import { type FakeAnswer, type FakeOpenAI, fakeOpenAI } from "../setup/fake_openai.ts";
import {
  eventually,
  messagesOf,
  settled,
  statusHistory,
  testRunner,
  textOf,
} from "../setup/runner.ts";
import { type TestServer, testServer } from "../setup/server.ts";
import { openSse, type SseClient, type SseEvent } from "../setup/sse.ts";

/*
 * A model provider that fails in the middle of a streamed answer (docs/api.md "Turns"): it stalls
 * (some chunks, then nothing), or its connection is cut. Each turn must end in the documented
 * state, a retry (announced by a `retry` event) or a ChatError, with every message stored once,
 * and the chat stream must deliver exactly what the change-event log (chat_events) holds. The
 * provider is a fake OpenAI-compatible server on loopback; the runner publishes its parts through
 * the database as `pgchatd runner` does, to a real server's chat stream.
 */

const base = "/api/experimental/chats";
let srv: TestServer;
let fake: FakeOpenAI;
let orgId: string;
let modelId: string;
/** Per prompt, the answer of its n-th request (from 1). */
const scripts = new Map<string, (n: number) => FakeAnswer>();

beforeAll(async () => {
  srv = await testServer();
  fake = await fakeOpenAI((req) => {
    const script = scripts.get(req.lastUser);
    if (script) return script(fake.requests.filter((r) => r.lastUser === req.lastUser).length);
    // Titles and summaries after a completed turn.
    return { kind: "text", chunks: ["Fine"] };
  });
  orgId = (await gen.organization(srv.pool)).id;
  const provider = await gen.chatProvider(srv.pool, { baseUrl: fake.url });
  modelId = (await gen.modelConfig(srv.pool, { providerId: provider.id })).id;
});

afterAll(async () => {
  await fake?.close();
  await srv?.close();
});

/** A promise the test resolves (a stalled provider's end), resolved when the test ends anyway. */
function gate() {
  let open!: () => void;
  const until = new Promise<void>((r) => {
    open = r;
  });
  onTestFinished(() => open());
  return { until, open };
}

const data = (e: SseEvent) => JSON.parse(e.data);

interface Scenario {
  chatId: string;
  token: string;
  stream: SseClient;
  /** The snapshot's last event (it carries the snapshot's cursor). */
  snapshotEnd: SseEvent;
  /** The events the stream delivered after its snapshot. */
  live(): SseEvent[];
  runner: Awaited<ReturnType<typeof testRunner>>;
  requests(): FakeOpenAI["requests"];
}

/**
 * A new member's chat whose prompt the fake answers with `script`, a chat stream opened on it
 * before any runner runs, then a runner started for it.
 */
async function scenario(
  prompt: string,
  script: (n: number) => FakeAnswer,
  runnerOpts: Partial<RunnerOptions> = {},
): Promise<Scenario> {
  scripts.set(prompt, script);
  const u = await gen.member(srv.pool, { organizationIds: [orgId] });
  const res = await fetch(`${srv.url}${base}`, {
    method: "POST",
    headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" },
    body: JSON.stringify({ content: [{ type: "text", text: prompt }], model_config_id: modelId }),
  });
  expect(res.status).toBe(201);
  const chatId = ((await res.json()) as { id: string }).id;
  const stream = await openSse(`${srv.url}${base}/${chatId}/stream`, {
    authorization: `Bearer ${u.token}`,
  });
  onTestFinished(() => stream.close());
  const snapshotEnd = await stream.next((e) => e.event === "queue_update");
  const runner = await testRunner({
    dbUrl: srv.dbUrl,
    partFlushMs: 5,
    publish: createEphemeralPublisher(srv.pool),
    ...runnerOpts,
  });
  runner.runner.wake();
  return {
    chatId,
    token: u.token,
    stream,
    snapshotEnd,
    live: () => stream.events.slice(stream.events.indexOf(snapshotEnd) + 1),
    runner,
    requests: () => fake.requests.filter((r) => r.lastUser === prompt),
  };
}

/**
 * Waits until the turn ended in `status`, then checks the chat stream against the log: its
 * durable events equal chat_events after the snapshot, and every stored message was streamed
 * once. Everything a test reads of the stream after this has caught up with the log.
 */
async function settledAsLogged(s: Scenario, status: string) {
  const state = await settled(srv.pool, s.chatId, status);
  await expectStreamMatchesLog(srv.pool, s.chatId, s.stream, s.snapshotEnd);
  await expectMessagesOnceEach(srv.pool, s.chatId, s.stream);
  return state;
}

/**
 * What a client shows after the stream's `retry` events: the text parts since the last `retry`
 * (each drops the parts of the attempt it follows), up to the stored assistant message.
 */
function textAfterLastRetry(events: SseEvent[]): string {
  const end = events.findIndex((e) => e.event === "message" && data(e).role === "assistant");
  const upTo = end === -1 ? events : events.slice(0, end);
  const lastRetry = upTo.map((e) => e.event).lastIndexOf("retry");
  return upTo
    .slice(lastRetry + 1)
    .filter((e) => e.event === "message_part" && data(e).part.type === "text")
    .map((e) => data(e).part.text)
    .join("");
}

const retries = (s: Scenario) =>
  s
    .live()
    .filter((e) => e.event === "retry")
    .map(data);

/** A stream idle limit short enough for a test, long enough that a loaded machine's pause is not one. */
const chunkTimeoutMs = 1_000;

describe("a provider that stalls mid-stream", () => {
  it("times out after the idle limit, is retried, and the retry's answer is stored once", async () => {
    const stall = gate();
    const s = await scenario(
      "stall once",
      (n) =>
        n === 1
          ? {
              kind: "text",
              chunks: ["Half ", "an ", "answer"],
              pause: { at: 2, until: stall.until },
            }
          : { kind: "text", chunks: ["The ", "whole ", "answer"] },
      { chunkTimeoutMs },
    );
    await settledAsLogged(s, "waiting");
    // The stalled call was given up, not left open.
    await s.requests()[0]!.closed;
    const msgs = await messagesOf(srv.pool, s.chatId);
    expect(msgs.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", "stall once"],
      ["assistant", "The whole answer"],
    ]);
    // One retry per call given up (on a loaded machine a later one may have been given up too).
    const announced = retries(s);
    expect(announced.length).toBe(s.requests().length - 1);
    expect(announced[0]).toMatchObject({
      attempt: 2,
      max_attempts: 4,
      error: { kind: "timeout", retryable: true },
    });
    const live = s.live();
    // The stalled attempt's parts went out before its retry; a client that drops them at the
    // retry shows what was stored.
    expect(
      textAfterLastRetry(
        live.slice(
          0,
          live.findIndex((e) => e.event === "retry"),
        ),
      ),
    ).toBe("Half an ");
    expect(textAfterLastRetry(live)).toBe("The whole answer");
    expect(await statusHistory(srv.pool, s.chatId)).toEqual(["running", "waiting"]);
  });

  it("fails the turn with a timeout ChatError once every attempt stalled, storing the last attempt's partial answer once", async () => {
    const stall = gate();
    const s = await scenario(
      "stall always",
      (n) => ({
        kind: "text",
        chunks: [`attempt ${n}: `, "half", " never sent"],
        pause: { at: 2, until: stall.until },
      }),
      { chunkTimeoutMs, retry: { retries: 1, baseDelayMs: 5, maxDelayMs: 20 } },
    );
    const state = await settledAsLogged(s, "error");
    expect(state.last_error).toMatchObject({ kind: "timeout", retryable: true });
    expect(s.requests()).toHaveLength(2);
    await Promise.all(s.requests().map((r) => r.closed));
    const msgs = await messagesOf(srv.pool, s.chatId);
    expect(msgs.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", "stall always"],
      ["assistant", "attempt 2: half"],
    ]);
    expect(retries(s)).toHaveLength(1);
    expect(textAfterLastRetry(s.live())).toBe("attempt 2: half");
    expect(await statusHistory(srv.pool, s.chatId)).toEqual(["running", "error"]);
    expect(
      s
        .live()
        .filter((e) => e.event === "error")
        .map(data),
    ).toEqual([state.last_error]);
  });

  it("ends the turn at an interrupt during the stall, keeping what was streamed, once", async () => {
    const stall = gate();
    const s = await scenario(
      "stall then interrupt",
      () => ({
        kind: "text",
        chunks: ["Kept ", "so far", " never sent"],
        pause: { at: 2, until: stall.until },
      }),
      // Longer than the test: only the interrupt can end this stall.
      { chunkTimeoutMs: 120_000 },
    );
    await eventually(
      () => (textAfterLastRetry(s.live()) === "Kept so far" ? true : undefined),
      "the parts before the stall",
    );
    const res = await fetch(`${srv.url}${base}/${s.chatId}/interrupt`, {
      method: "POST",
      headers: { authorization: `Bearer ${s.token}` },
    });
    expect(res.status).toBe(200);
    await settledAsLogged(s, "waiting");
    await s.requests()[0]!.closed;
    const msgs = await messagesOf(srv.pool, s.chatId);
    expect(msgs.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", "stall then interrupt"],
      ["assistant", "Kept so far"],
    ]);
    expect(s.requests()).toHaveLength(1);
    expect(retries(s)).toEqual([]);
    expect(await statusHistory(srv.pool, s.chatId)).toEqual(["running", "waiting"]);
  });

  it("times out a provider that sends no response headers at all, and retries it", async () => {
    const silence = gate();
    const s = await scenario(
      "silent once",
      (n) =>
        n === 1
          ? { kind: "silent", until: silence.until }
          : { kind: "text", chunks: ["Answered ", "after all"] },
      { chunkTimeoutMs },
    );
    await settledAsLogged(s, "waiting");
    await s.requests()[0]!.closed;
    const msgs = await messagesOf(srv.pool, s.chatId);
    expect(msgs.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", "silent once"],
      ["assistant", "Answered after all"],
    ]);
    expect(retries(s)[0]).toMatchObject({ attempt: 2, error: { kind: "timeout" } });
  });
});

describe("a provider whose connection is cut mid-stream", () => {
  it("is retried, and the retry's answer is stored once with no part of the cut attempt", async () => {
    const s = await scenario("cut once", (n) =>
      n === 1
        ? { kind: "text", chunks: ["Cut ", "off ", "here"], cut: 2 }
        : { kind: "text", chunks: ["Complete ", "answer"] },
    );
    await settledAsLogged(s, "waiting");
    const msgs = await messagesOf(srv.pool, s.chatId);
    expect(msgs.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", "cut once"],
      ["assistant", "Complete answer"],
    ]);
    expect(msgs[1]!.content).toEqual([{ type: "text", text: "Complete answer" }]);
    expect(s.requests()).toHaveLength(2);
    const live = s.live();
    expect(retries(s)).toEqual([
      expect.objectContaining({
        attempt: 2,
        error: expect.objectContaining({ kind: "generic", retryable: true }),
      }),
    ]);
    // What the cut attempt had streamed before its retry (the retry drops what it had not yet
    // published: parts are coalesced for partFlushMs).
    expect("Cut off ").toContain(
      textAfterLastRetry(
        live.slice(
          0,
          live.findIndex((e) => e.event === "retry"),
        ),
      ),
    );
    expect(textAfterLastRetry(live)).toBe("Complete answer");
    expect(await statusHistory(srv.pool, s.chatId)).toEqual(["running", "waiting"]);
  });

  it("fails the turn with a retryable ChatError once every attempt was cut, storing the last attempt's partial answer once", async () => {
    const s = await scenario(
      "cut always",
      (n) => ({ kind: "text", chunks: [`attempt ${n}: `, "cut", " never sent"], cut: 2 }),
      { retry: { retries: 2, baseDelayMs: 5, maxDelayMs: 20 } },
    );
    const state = await settledAsLogged(s, "error");
    expect(state.last_error).toMatchObject({ kind: "generic", retryable: true });
    expect(s.requests()).toHaveLength(3);
    const msgs = await messagesOf(srv.pool, s.chatId);
    expect(msgs.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", "cut always"],
      ["assistant", "attempt 3: cut"],
    ]);
    expect(retries(s).map((r) => r.attempt)).toEqual([2, 3]);
    expect(textAfterLastRetry(s.live())).toBe("attempt 3: cut");
    expect(
      s
        .live()
        .filter((e) => e.event === "error")
        .map(data),
    ).toEqual([state.last_error]);
    expect(await statusHistory(srv.pool, s.chatId)).toEqual(["running", "error"]);
  });
});
