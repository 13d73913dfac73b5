import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "../../src/db/index.ts";
import { testDb } from "../setup/db.ts";

/*
 * Rules about the schema as a whole, read from the catalog of a migrated database.
 */

let pool: Pool;

beforeAll(async () => {
  pool = (await testDb()).pool;
});

/**
 * Foreign keys with no index on the referencing side, and why none is needed (docs/sql.md
 * "Foreign keys"): deleting or re-keying the referenced row scans the referencing table, which is
 * fine only when that never happens or the table is small.
 */
const unindexedOnPurpose: Record<string, string> = {
  chat_model_configs_provider_id_fkey: "providers are soft-deleted, and few",
  chats_last_model_config_id_fkey: "model configs are soft-deleted, never removed",
  chat_messages_model_config_id_fkey: "model configs are soft-deleted, never removed",
  chat_queued_messages_model_config_id_fkey: "model configs are soft-deleted, never removed",
  chats_organization_id_fkey: "pgchatd never deletes an organization",
  chat_files_organization_id_fkey: "pgchatd never deletes an organization",
  chat_queued_messages_api_key_id_fkey: "the queue holds at most 20 rows per busy chat",
  chat_queued_messages_created_by_fkey: "the queue holds at most 20 rows per busy chat",
};

describe("foreign keys", () => {
  it("every foreign key is served by an index on its referencing columns, or is listed with the reason it needs none", async () => {
    // An index serves a key when it leads with one of the key's columns and is either complete
    // or partial on exactly "that column IS NOT NULL" (a key lookup implies it).
    const { rows } = await pool.query<{ name: string; indexed: boolean }>(`
      SELECT c.conname AS name, EXISTS (
        SELECT 1 FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = c.conrelid AND i.indkey[0] = ANY (c.conkey)
          AND (i.indpred IS NULL
            OR pg_get_expr(i.indpred, i.indrelid) = format('(%I IS NOT NULL)', a.attname))
      ) AS indexed
      FROM pg_constraint c
      WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
      ORDER BY c.conname`);
    const unindexed = rows.filter((r) => !r.indexed).map((r) => r.name);
    expect(unindexed).toEqual(Object.keys(unindexedOnPurpose).sort());
  });
});

describe("the chat status state machine", () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const pointer = 'docs/sql.md "Chat status"';

  /** The rows of the "Chat status" table in docs/sql.md: from, event, to, where, also. */
  async function stateTable(): Promise<string[][]> {
    const doc = await fs.readFile(path.join(root, "docs/sql.md"), "utf8");
    const section = doc.slice(doc.indexOf("### Chat status"));
    const start = section.indexOf("| from |");
    const table = section.slice(start, section.indexOf("\n\n", start));
    return table
      .split("\n")
      .slice(2)
      .map((line) =>
        line
          .split("|")
          .slice(1, -1)
          .map((cell) => cell.trim()),
      );
  }

  it("every UPDATE of chats that sets status in sql/ points at the table", async () => {
    const missing: string[] = [];
    let sites = 0;
    for (const dir of ["functions", "queries", "triggers"]) {
      for (const name of await fs.readdir(path.join(root, "sql", dir))) {
        const text = await fs.readFile(path.join(root, "sql", dir, name), "utf8");
        for (const m of text.matchAll(/UPDATE chats\b[\s\S]*?\bWHERE\b/g)) {
          const setClause = m[0].slice(m[0].search(/\bSET\b/));
          if (!/(^|[\s,(])status\s*=/.test(setClause.replace(/^SET\s+/, " "))) continue;
          sites++;
          const before = text.slice(0, m.index).split("\n").slice(-4).join("\n");
          if (!before.includes(pointer)) {
            const line = text.slice(0, m.index).split("\n").length;
            missing.push(`sql/${dir}/${name}:${line}`);
          }
        }
      }
    }
    expect(sites).toBeGreaterThanOrEqual(8);
    expect(missing).toEqual([]);
  });

  it("names only functions and queries that exist, and every status the enum has", async () => {
    const rows = await stateTable();
    expect(rows.length).toBeGreaterThanOrEqual(10);
    const named = new Set(rows.flatMap((r) => [...r[3]!.matchAll(/`(\w+)`/g)].map((m) => m[1]!)));
    const { rows: procs } = await pool.query<{ proname: string }>(
      "SELECT proname FROM pg_proc WHERE proname = ANY ($1)",
      [[...named]],
    );
    const queries = (await fs.readdir(path.join(root, "sql/queries"))).map((f) =>
      fs.readFile(path.join(root, "sql/queries", f), "utf8"),
    );
    const queryText = (await Promise.all(queries)).join("\n");
    const unknown = [...named].filter(
      (n) => !procs.some((p) => p.proname === n) && !queryText.includes(`-- name: ${n} `),
    );
    expect(unknown).toEqual([]);
    const { rows: statuses } = await pool.query<{ s: string }>(
      "SELECT unnest(enum_range(NULL::chat_status))::text AS s",
    );
    const inTable = new Set(
      rows.flatMap((r) => [...`${r[0]} ${r[2]}`.matchAll(/`(\w+)`/g)].map((m) => m[1]!)),
    );
    // In the enum because docs/api.md lists them; no rule sets them (said under the table).
    const unused = ["paused", "completed"];
    expect(statuses.map((r) => r.s).filter((s) => !inTable.has(s))).toEqual(unused);
  });
});
