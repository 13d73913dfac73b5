import { beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { reportChatGitActivity } from "../../src/generated/chat_diff_statuses.ts";
import { gen } from "../fixtures/index.ts";
import { testDb } from "../setup/db.ts";

/*
 * Pull-request status where it lives (sql/functions/chat_diff_statuses.sql), on the SQL clock.
 * test/server/chat_diff_statuses.test.ts checks the route.
 */

let pool: Pool;
let orgId: string;

beforeAll(async () => {
  pool = (await testDb()).pool;
  orgId = (await gen.organization(pool)).id;
});

describe("git activity", () => {
  it("marks the reference stale one second before the SQL clock, and updated_at at it", async () => {
    const u = await gen.user(pool, { organizationIds: [orgId] });
    const ws = await gen.workspace(pool, { organizationId: orgId, ownerId: u.id });
    const agent = (await gen.build(pool, ws.id)).agents[0]!;
    const chat = await gen.chat(pool, {
      ownerId: u.id,
      organizationId: orgId,
      workspace_id: ws.id,
    });
    const client = await pool.connect();
    try {
      await client.query("SELECT set_config('pgchatd.clock_now', '2026-04-01T12:00:00Z', false)");
      const row = await reportChatGitActivity(client, {
        agent_id: agent.id,
        chat_id: null,
        branch: "main",
        remote_origin: "https://github.com/acme/api.git",
        url: null,
      });
      expect(row).toMatchObject({ chat_id: chat.id, stale_at: "2026-04-01T11:59:59.000000Z" });
      const { rows } = await client.query(
        "SELECT updated_at FROM chat_diff_statuses WHERE chat_id = $1",
        [chat.id],
      );
      expect(rows[0].updated_at).toBe("2026-04-01T12:00:00.000000Z");
    } finally {
      await client.query("RESET pgchatd.clock_now");
      client.release();
    }
  });
});
