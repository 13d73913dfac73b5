import { describe, expect, it } from "vitest";
import { PartStream } from "../../src/runner/parts.ts";
import { maxPartChars, publishStreamEvent } from "../../src/watch/index.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger } from "../setup/app.ts";
import { testDb } from "../setup/db.ts";

/* How a turn's streamed deltas become message_part events: coalesced, ordered, NOTIFY-sized. */

function recorder() {
  const sent: { event: string; data: { part?: { type: string; text?: string } } }[] = [];
  const publish = async (_c: string, _o: string, event: string, data: unknown) => {
    sent.push({ event, data: data as (typeof sent)[number]["data"] });
  };
  return { sent, publish };
}

const chatId = "00000000-0000-4000-8000-000000000001";
/** The recorder ignores it; the real publication below uses a real one. */
const lease = { workerId: "00000000-0000-4000-8000-000000000002", startedAt: "2026-01-01" };

describe("PartStream", () => {
  it("joins the deltas of one flush window into one part, and keeps text and reasoning apart", async () => {
    const { sent, publish } = recorder();
    const s = new PartStream(publish, chatId, "o", 60_000, captureLogger().logger, lease);
    s.delta("reasoning", "think");
    s.delta("reasoning", "ing");
    s.delta("text", "Hel");
    s.delta("text", "lo");
    await s.close();
    expect(sent.map((p) => [p.event, p.data.part])).toEqual([
      ["message_part", { type: "reasoning", text: "thinking" }],
      ["message_part", { type: "text", text: "Hello" }],
    ]);
  });

  it("publishes once the flush window passes, without waiting for the turn's end", async () => {
    const { sent, publish } = recorder();
    const s = new PartStream(publish, chatId, "o", 5, captureLogger().logger, lease);
    s.delta("text", "soon");
    // Waits for the part, with the turn still open (close() would flush it anyway).
    await expect.poll(() => sent.length, { timeout: 10_000, interval: 5 }).toBeGreaterThan(0);
    expect(sent.map((p) => p.data.part?.text)).toEqual(["soon"]);
    await s.close();
  });

  it("splits long text into parts that each fit a NOTIFY, without cutting a surrogate pair", async () => {
    const { sent, publish } = recorder();
    const s = new PartStream(publish, chatId, "o", 60_000, captureLogger().logger, lease);
    const worst = "\u0001".repeat(1500) + "😀".repeat(700);
    s.delta("text", worst);
    await s.close();
    expect(sent.map((p) => p.data.part!.text).join("")).toBe(worst);
    // Each one goes through the real publication: its NOTIFY payload is within Postgres' limit.
    const db = await testDb();
    const org = await gen.organization(db.pool);
    const u = await gen.member(db.pool, { organizationIds: [org.id] });
    const chat = await gen.chat(db.pool, { ownerId: u.id, organizationId: org.id });
    const { rows } = await db.pool.query<{ started_at: string }>(
      `UPDATE chats SET status = 'running', worker_id = $2, started_at = now() WHERE id = $1
       RETURNING started_at::text`,
      [chat.id, lease.workerId],
    );
    const running = { workerId: lease.workerId, startedAt: rows[0]!.started_at };
    for (const p of sent) {
      const published = await publishStreamEvent(db.pool, chat.id, "message_part", p.data, running);
      expect(published).not.toBeNull();
      expect(p.data.part!.text).not.toMatch(/[\ud800-\udbff]$/);
    }
    // One character more than a part holds would not fit.
    await expect(
      publishStreamEvent(
        db.pool,
        chat.id,
        "message_part",
        {
          part: { type: "text", text: "\u0001".repeat(maxPartChars + 200) },
        },
        running,
      ),
    ).rejects.toThrow(RangeError);
  });

  it("drops the buffered parts of a failed attempt and announces the retry", async () => {
    const { sent, publish } = recorder();
    const s = new PartStream(publish, chatId, "o", 60_000, captureLogger().logger, lease);
    s.delta("text", "half an ans");
    s.retry(2, 4, 1000, {
      message: "m",
      kind: "overloaded",
      provider: "openai",
      retryable: true,
      status_code: 529,
      detail: null,
    });
    s.delta("text", "the answer");
    await s.close();
    expect(sent.map((p) => p.event)).toEqual(["retry", "message_part"]);
    expect(sent[0]!.data).toMatchObject({ attempt: 2, max_attempts: 4, delay_ms: 1000 });
    expect(sent[1]!.data.part!.text).toBe("the answer");
  });
});
