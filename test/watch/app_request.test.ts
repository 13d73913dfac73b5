import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWatch, type Watch } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger, testApp } from "../setup/app.ts";
import { testDb } from "../setup/db.ts";
import { readUntil } from "../setup/sse.ts";

/*
 * The streams without a Node socket (app.request, runtimes other than Node): served through
 * hono's streamSSE (src/server/streaming.ts sseResponse). The other stream tests use real sockets.
 */

let watch: Watch;
let t: Awaited<ReturnType<typeof testApp>>;

beforeAll(async () => {
  const db = await testDb();
  watch = await startWatch({
    url: db.url,
    pool: db.pool,
    logger: captureLogger().logger,
    mode: "trigger",
  });
  t = await testApp({ watch });
});

afterAll(async () => {
  await watch?.close();
});

describe("a watch stream through app.request", () => {
  it("opens as text/event-stream and delivers a change committed after it opened", async () => {
    const org = await gen.organization(t.pool);
    const u = await gen.member(t.pool, { organizationIds: [org.id] });
    const chat = await gen.chat(t.pool, { ownerId: u.id, organizationId: org.id });
    const res = await t.app.request("/api/experimental/chats/watch", {
      headers: { authorization: `Bearer ${u.token}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const reader = res.body!.getReader();
    try {
      await readUntil(reader, /^: watching$/m);
      await t.pool.query("UPDATE chats SET title = 'seen through app.request' WHERE id = $1", [
        chat.id,
      ]);
      // The chat's `created` event may still be on its way when the stream opens (the tailer can
      // be behind the INSERT), and it renders the row as it is now, new title included; the
      // title_change event is the one committed after the stream opened, so it is the one to wait for.
      const frame = await readUntil(reader, /^event: title_change\ndata: .*\n/m);
      expect(frame).toContain('"title":"seen through app.request"');
    } finally {
      await reader.cancel();
    }
  });
});
