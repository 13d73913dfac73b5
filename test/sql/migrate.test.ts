import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { migrate as runMigrations } from "postgres-migrations";
import { describe, expect, it } from "vitest";
import { bootstrap } from "../../src/db/bootstrap.ts";
import { applyRoutines, migrate, sqlDir } from "../../src/db/migrate.ts";
import { connectClient } from "../../src/db/pool.ts";
import { authenticateUser } from "../../src/server/auth.ts";
import { emptyDatabase, newPool } from "../setup/db.ts";

describe("migrations", () => {
  it("brings up one empty database from two migrators started at the same moment", async () => {
    const db = await emptyDatabase();
    const results = await Promise.allSettled([migrate(db.url), migrate(db.url), migrate(db.url)]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "fulfilled"]);
    const client = await connectClient(db.url);
    try {
      const { rows } = await client.query("SELECT name FROM migrations ORDER BY id");
      const names = rows.map((r) => r.name);
      expect(new Set(names).size).toBe(names.length);
      expect(names).toContain("identity");
    } finally {
      await client.end();
    }
  });

  it("re-applies routines idempotently", async () => {
    const db = await emptyDatabase();
    await migrate(db.url);
    const client = await connectClient(db.url);
    try {
      await applyRoutines(client);
      await applyRoutines(client);
    } finally {
      await client.end();
    }
    await migrate(db.url);
  });

  it("rebuilds an index that an interrupted concurrent build left invalid, so the planner uses it again", async () => {
    const db = await emptyDatabase();
    await migrate(db.url);
    const client = await connectClient(db.url);
    try {
      // A concurrent build that fails half-way (here: duplicates under a unique index) leaves its
      // index behind, invalid, as a cancelled or timed-out one does.
      await client.query("CREATE TABLE probe (x int); INSERT INTO probe VALUES (1), (1)");
      await expect(
        client.query("CREATE UNIQUE INDEX CONCURRENTLY probe_x_idx ON probe (x)"),
      ).rejects.toThrow(/could not create unique index/);
      await client.query("DELETE FROM probe WHERE ctid = (SELECT max(ctid) FROM probe)");
      const valid = async () =>
        (
          await client.query(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'probe_x_idx'::regclass",
          )
        ).rows[0].indisvalid;
      expect(await valid()).toBe(false);
      const logged: string[] = [];
      await migrate(db.url, { log: (m) => logged.push(m) });
      expect(await valid()).toBe(true);
      expect(logged.join("\n")).toMatch(/rebuilding invalid index public\.probe_x_idx/);
    } finally {
      await client.end();
    }
  });
});

describe("migrations 00024 to 00027 (the cost rollups and their backfill)", () => {
  it("counts the assistant messages stored before it, priced and unpriced apart", async () => {
    const db = await emptyDatabase();
    // The schema as it was before the cost rollups, with messages in it.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-migrations-"));
    try {
      for (const f of await fs.readdir(path.join(sqlDir, "schema"))) {
        if (f < "00024") await fs.copyFile(path.join(sqlDir, "schema", f), path.join(dir, f));
      }
      const client = await connectClient(db.url);
      try {
        await runMigrations({ client }, dir);
        await client.query(
          `WITH o AS (INSERT INTO organizations (name) VALUES ('old') RETURNING id),
             u AS (INSERT INTO users (username) VALUES ('old') RETURNING id),
             m AS (INSERT INTO organization_members SELECT o.id, u.id FROM o, u RETURNING *),
             c AS (INSERT INTO chats (id, owner_id, organization_id, title, last_model_config_id)
                   SELECT '00000000-0000-4000-8000-000000000001', u.id, o.id, 'old',
                     (SELECT id FROM chat_model_configs WHERE is_default)
                   FROM o, u
                   RETURNING id)
           INSERT INTO chat_messages (chat_id, role, content, created_at, total_cost_micros,
             input_tokens, runtime_ms)
           SELECT c.id, r.role::chat_message_role, '[]', r.at, r.cost, 10, 5
           FROM c, (VALUES ('assistant', '2026-01-05T10:00:00Z'::timestamptz, 7),
             ('assistant', '2026-01-05T23:00:00Z', NULL), ('user', '2026-01-05T09:00:00Z', NULL),
             ('assistant', '2026-01-06T01:00:00Z', 3)) r(role, at, cost)`,
        );
      } finally {
        await client.end();
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
    await migrate(db.url);
    const client = await connectClient(db.url);
    try {
      const { rows } = await client.query(
        `SELECT day::text, total_cost_micros, priced_message_count, unpriced_message_count,
           input_tokens, runtime_ms
         FROM chat_cost_daily ORDER BY day`,
      );
      expect(rows).toEqual([
        {
          day: "2026-01-05",
          total_cost_micros: 7,
          priced_message_count: 1,
          unpriced_message_count: 1,
          input_tokens: 20,
          runtime_ms: 10,
        },
        {
          day: "2026-01-06",
          total_cost_micros: 3,
          priced_message_count: 1,
          unpriced_message_count: 0,
          input_tokens: 10,
          runtime_ms: 5,
        },
      ]);
      const spend = await client.query(
        "SELECT day::text, total_cost_micros FROM chat_spend_daily ORDER BY day",
      );
      expect(spend.rows).toEqual([
        { day: "2026-01-05", total_cost_micros: 7 },
        { day: "2026-01-06", total_cost_micros: 3 },
      ]);
    } finally {
      await client.end();
    }
  });
});

describe("migrations 00032 to 00039 (pull-request status copies and indexes)", () => {
  it("fills the copies of statuses stored before them, and the routines repair an archive they missed", async () => {
    const db = await emptyDatabase();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-migrations-"));
    const root = "00000000-0000-4000-8000-000000000001";
    const child = "00000000-0000-4000-8000-000000000002";
    try {
      for (const f of await fs.readdir(path.join(sqlDir, "schema"))) {
        if (f < "00032") await fs.copyFile(path.join(sqlDir, "schema", f), path.join(dir, f));
      }
      const client = await connectClient(db.url);
      try {
        await runMigrations({ client }, dir);
        await client.query(
          `WITH o AS (INSERT INTO organizations (name) VALUES ('old') RETURNING id),
             u AS (INSERT INTO users (username) VALUES ('old') RETURNING id),
             m AS (INSERT INTO organization_members SELECT o.id, u.id FROM o, u RETURNING *)
           INSERT INTO chats (id, owner_id, organization_id, title, last_model_config_id,
             parent_chat_id, root_chat_id, archived, created_at)
           SELECT x.id::uuid, u.id, o.id, 'old', (SELECT id FROM chat_model_configs WHERE is_default),
             x.parent::uuid, x.parent::uuid, x.archived, '2026-02-01T00:00:00Z'
           FROM o, u, (VALUES ('${root}', NULL, false), ('${child}', '${root}', true))
             x(id, parent, archived)`,
        );
        await client.query(
          `INSERT INTO chat_diff_statuses (chat_id, git_branch, git_remote_origin, pr_number,
             pull_request_state)
           VALUES ('${root}', 'a', 'git@github.com:acme/api.git', 1, 'open'),
             ('${child}', 'b', 'git@github.com:acme/api.git', 2, 'merged')`,
        );
      } finally {
        await client.end();
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
    await migrate(db.url);
    const client = await connectClient(db.url);
    try {
      const copies = async () =>
        (
          await client.query(
            `SELECT chat_id, root_chat_id, chat_created_at, chat_archived FROM chat_diff_statuses
             ORDER BY chat_id`,
          )
        ).rows;
      expect(await copies()).toEqual([
        {
          chat_id: root,
          root_chat_id: root,
          chat_created_at: "2026-02-01T00:00:00.000000Z",
          chat_archived: false,
        },
        {
          chat_id: child,
          root_chat_id: root,
          chat_created_at: "2026-02-01T00:00:00.000000Z",
          chat_archived: true,
        },
      ]);
      const { rows: indexes } = await client.query(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'chat_diff_statuses' ORDER BY 1",
      );
      expect(indexes.map((r) => r.indexname)).toEqual([
        "chat_diff_statuses_owner_pr_number_idx",
        "chat_diff_statuses_owner_pull_requests_idx",
        "chat_diff_statuses_pkey",
        "chat_diff_statuses_refresh_idx",
        "chat_diff_statuses_remote_trgm_idx",
        "chat_diff_statuses_title_trgm_idx",
        "chat_diff_statuses_url_lower_idx",
        "chat_diff_statuses_url_trgm_idx",
      ]);
      // As a server of the previous version unarchiving the child while 00032 ran (before the
      // trigger that keeps the copy existed): the next migrate's routines repair it, due at once.
      await client.query("ALTER TABLE chats DISABLE TRIGGER chats_700_copy_archived");
      await client.query(`UPDATE chats SET archived = false WHERE id = '${child}'`);
      await client.query("ALTER TABLE chats ENABLE TRIGGER chats_700_copy_archived");
      await client.query(
        `UPDATE chat_diff_statuses SET stale_at = now() + interval '1 hour' WHERE chat_id = '${child}'`,
      );
      await applyRoutines(client);
      const { rows } = await client.query(
        `SELECT chat_archived, stale_at <= now() AS due FROM chat_diff_statuses
         WHERE chat_id = '${child}'`,
      );
      expect(rows).toEqual([{ chat_archived: false, due: true }]);
    } finally {
      await client.end();
    }
  });
});

describe("bootstrap", () => {
  it("creates the default organization and an owner 'admin' whose configured token works, once", async () => {
    const db = await emptyDatabase();
    const token = `abcdefghij-${"s".repeat(30)}`;
    const runs = await Promise.all(
      [0, 1].map(() => {
        let result: Awaited<ReturnType<typeof bootstrap>> = null;
        return migrate(db.url, {
          afterMigrate: async (client) => {
            result = await bootstrap(client, { bootstrapToken: token });
          },
        }).then(() => result);
      }),
    );
    const created = runs.filter((r) => r !== null);
    expect(created).toHaveLength(1);
    expect(created[0]).toMatchObject({ token, generated: false });

    const pool = newPool(db.url);
    const actor = await authenticateUser(pool, token);
    expect(actor?.user).toMatchObject({ username: "admin", roles: ["owner"] });
    const { rows } = await pool.query("SELECT name FROM organizations");
    expect(rows).toEqual([{ name: "default" }]);
    expect(actor?.user.organization_ids).toHaveLength(1);
    const { rows: keys } = await pool.query("SELECT expires_at FROM api_keys");
    expect(keys).toEqual([{ expires_at: null }]);
  });

  it("generates a token when none is configured", async () => {
    const db = await emptyDatabase();
    let result: Awaited<ReturnType<typeof bootstrap>> = null;
    await migrate(db.url, {
      afterMigrate: async (client) => {
        result = await bootstrap(client, {});
      },
    });
    expect(result).toMatchObject({
      generated: true,
      token: expect.stringMatching(/^[a-z0-9]{10}-.{22,}$/),
    });
    const pool = newPool(db.url);
    expect((await authenticateUser(pool, result!.token))?.user.username).toBe("admin");
  });
});
