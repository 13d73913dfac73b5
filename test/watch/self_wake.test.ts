import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient } from "../../src/db/pool.ts";
import { createEventRenderer } from "../../src/watch/frames.ts";
import { type RenderEvents, startWatch, type Watch } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger, testApp } from "../setup/app.ts";
import { testDb } from "../setup/db.ts";
import { readUntil } from "../setup/sse.ts";

/*
 * batched mode on a server that is the only listener: its notifier's NOTIFY would only come back
 * to itself, so it is not sent (chat_listeners_exist, docs/sql.md "Notifications nobody hears"),
 * and the server wakes its own tailer instead. A commit poked while a read runs (Tailer.nudge
 * leaves it to that wake-up) must arrive without waiting for the safety poll.
 */

let watch: Watch;
let t: Awaited<ReturnType<typeof testApp>>;
let url: string;
/** Holds the tailer's reads while set: the next read waits in its render until released. */
let gate: Promise<void> | undefined;
let rendering: (() => void) | undefined;

beforeAll(async () => {
  const db = await testDb();
  url = db.url;
  const render = createEventRenderer(db.pool);
  const held: RenderEvents = async (rows, wanted) => {
    rendering?.();
    if (gate) await gate;
    return render(rows, wanted);
  };
  watch = await startWatch({
    url: db.url,
    pool: db.pool,
    logger: captureLogger().logger,
    mode: "batched",
    render: held,
    // Far beyond the test's deadline: only a wake-up can deliver in time.
    safetyPollMs: 600_000,
  });
  t = await testApp({ watch });
});

afterAll(async () => {
  await watch?.close();
});

describe("a server in batched mode that alone listens", () => {
  it("delivers its own commit made while a read was running, without a NOTIFY and without the safety poll", async () => {
    const org = await gen.organization(t.pool);
    const u = await gen.member(t.pool, { organizationIds: [org.id] });
    const chat = await gen.chat(t.pool, { ownerId: u.id, organizationId: org.id });
    const writer = await connectClient(url, "pgchatd-test-batched-writer");
    await writer.query("SET pgchatd.events = 'batched'");
    const res = await t.app.request("/api/experimental/chats/watch", {
      headers: { authorization: `Bearer ${u.token}` },
    });
    const reader = res.body!.getReader();
    let release = () => {};
    try {
      await readUntil(reader, /^: watching$/m);
      gate = new Promise((r) => {
        release = r;
      });
      const readStarted = new Promise<void>((r) => {
        rendering = r;
      });
      await writer.query("UPDATE chats SET title = 'first' WHERE id = $1", [chat.id]);
      watch.poke();
      await readStarted;
      // The read of the first title runs; this commit's poke finds it running and does nothing.
      await writer.query("UPDATE chats SET title = 'second' WHERE id = $1", [chat.id]);
      watch.poke();
      gate = undefined;
      release();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("the second title never arrived")), 20_000);
      });
      try {
        // Two title_change frames: each renders the chat as it is when rendered, so the first
        // may show the second title too; the second is the second commit's own event.
        const frames = await Promise.race([
          readUntil(reader, /^event: title_change\n[\s\S]*^event: title_change\ndata: .*\n/m),
          deadline,
        ]);
        expect(frames.match(/^event: title_change$/gm)).toHaveLength(2);
      } finally {
        clearTimeout(timer);
      }
    } finally {
      release();
      gate = undefined;
      rendering = undefined;
      await reader.cancel();
      await writer.end();
    }
  });
});
