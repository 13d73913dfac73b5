import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool, type Pool, withPreparedStatements } from "../../src/db/pool.ts";
import { testDb } from "../setup/db.ts";

/*
 * withPreparedStatements (src/db/pool.ts): the change-event reads are parsed and planned once per
 * connection, and a migration that changes what a prepared statement returns does not break them.
 */

let pool: Pool;

beforeAll(async () => {
  // One connection: every call below runs on the same backend, so its prepared statements persist.
  pool = createPool({ connectionString: (await testDb()).url, max: 1 });
  await pool.query("CREATE TABLE prepared_probe (id int PRIMARY KEY, a text)");
  await pool.query("CREATE VIEW prepared_probe_rows AS SELECT id, a FROM prepared_probe");
  await pool.query("INSERT INTO prepared_probe VALUES (1, 'one')");
});

afterAll(async () => {
  await pool?.end();
});

const probe = {
  text: "-- name: ListPreparedProbe :many\nSELECT v.* FROM prepared_probe_rows v WHERE v.id = $1",
  values: [1],
};

const preparedHere = async () =>
  (
    await pool.query<{ name: string }>(
      "SELECT name FROM pg_prepared_statements WHERE name LIKE 'ListPreparedProbe%' ORDER BY name",
    )
  ).rows.map((r) => r.name);

describe("withPreparedStatements", () => {
  it("prepares a named query once per connection and runs it by name after that", async () => {
    const db = withPreparedStatements(pool);
    expect((await db.query(probe)).rows).toEqual([{ id: 1, a: "one" }]);
    expect((await db.query(probe)).rows).toEqual([{ id: 1, a: "one" }]);
    expect(await preparedHere()).toEqual(["ListPreparedProbe_0"]);
  });

  it("answers the first call after a migration changed the columns a prepared statement returns", async () => {
    const db = withPreparedStatements(pool);
    await db.query(probe);
    await pool.query(
      "CREATE OR REPLACE VIEW prepared_probe_rows AS SELECT id, a, upper(a) AS b FROM prepared_probe",
    );
    // Run by its old name, Postgres refuses the statement once ("cached plan must not change
    // result type"): the wrapper prepares it again under a new name and answers.
    expect((await db.query(probe)).rows).toEqual([{ id: 1, a: "one", b: "ONE" }]);
    expect((await db.query(probe)).rows).toEqual([{ id: 1, a: "one", b: "ONE" }]);
  });
});
