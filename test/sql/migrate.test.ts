import { describe, expect, it } from "vitest";
import { bootstrap } from "../../src/db/bootstrap.ts";
import { applyRoutines, migrate } from "../../src/db/migrate.ts";
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
