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
