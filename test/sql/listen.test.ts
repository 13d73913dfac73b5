import { describe, expect, it } from "vitest";
import { withTx } from "../../src/db/pool.ts";
import { testDb } from "../setup/db.ts";
import { listen } from "../setup/listen.ts";

describe("raw LISTEN helper", () => {
  it("receives what another connection commits, and nothing from a rolled-back transaction", async () => {
    const db = await testDb();
    const l = await listen(db.url, "probe");
    try {
      await withTx(db.pool, (c) => c.query("SELECT pg_notify('probe', 'committed')"));
      await withTx(db.pool, async (c) => {
        await c.query("SELECT pg_notify('probe', 'rolled back')");
        throw new Error("abort");
      }).catch(() => {});
      await withTx(db.pool, (c) => c.query("SELECT pg_notify('probe', 'after')"));
      expect((await l.next((n) => n.payload === "after")).payload).toBe("after");
      expect(l.received.map((n) => n.payload)).toEqual(["committed", "after"]);
    } finally {
      await l.close();
    }
  });
});
