import { describe, expect, it } from "vitest";
import { Subscriber } from "../../src/watch/subscriber.ts";

/*
 * A chat stream's subscriber (src/watch/subscriber.ts): which stream parts it passes on. Its
 * frames and parts come from the tailer and NOTIFY in the real tests (test/watch/*.test.ts); here
 * the order in which they arrive is chosen.
 */

const cursor = (id: number) => ({ xid: 100n, id });
const part = (text: string) => Buffer.from(`event: message_part\ndata: {"text":"${text}"}\n\n`);

async function drain(sub: Subscriber): Promise<string> {
  let out = "";
  for (;;) {
    const chunk = await Promise.race([sub.take(), Promise.resolve(null)]);
    if (!chunk) return out;
    out += Buffer.concat(chunk).toString();
  }
}

describe("Subscriber", () => {
  it("drops a part that a stored message already replaced, when its NOTIFY trails the log", async () => {
    const sub = new Subscriber("owner", "chat", cursor(0), 1 << 20);
    sub.release();
    sub.pushEphemeral(part("shown"), 5);
    sub.push({
      cursor: cursor(1),
      text: "event: message\ndata: {}\n\n",
      messageId: 1,
      partsMark: 9,
    });
    sub.pushEphemeral(part("late, replaced"), 8);
    sub.pushEphemeral(part("next step"), 10);
    const out = await drain(sub);
    expect(out).toContain("shown");
    expect(out).not.toContain("late, replaced");
    expect(out).toContain("next step");
  });

  it("passes held parts above the snapshot's mark once released, and drops those at or below it", async () => {
    const sub = new Subscriber("owner", "chat", cursor(0), 1 << 20);
    sub.pushEphemeral(part("in the snapshot"), 3);
    sub.pushEphemeral(part("after it"), 4);
    sub.partsThrough = 3;
    sub.release();
    const out = await drain(sub);
    expect(out).not.toContain("in the snapshot");
    expect(out).toContain("after it");
  });
});
