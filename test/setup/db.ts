import { randomBytes } from "node:crypto";
import { inject } from "vitest";
import { connectClient, createPool, type Pool } from "../../src/db/pool.ts";
import {
  createScratchDatabase,
  databaseUrl,
  dropScratchDatabases,
} from "../../support/scratch_db.ts";

/*
 * Each test file gets a private database cloned from the migrated template, created on the first
 * call and dropped after the file's last test (test/setup/file.ts).
 */

export interface TestDb {
  /** Connection URL of this file's database. */
  url: string;
  /** Its name, for tests that need to connect in other ways. */
  name: string;
  pool: Pool;
}

let current: Promise<TestDb> | undefined;
const pools: Pool[] = [];
const cloneRetries = 20;

async function createClone(): Promise<TestDb> {
  const { adminUrl, template } = inject("pg");
  const name = `${template}_${randomBytes(5).toString("hex")}`;
  const admin = await connectClient(adminUrl, "pgchatd-test-clone");
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
        break;
      } catch (err) {
        // 55006: the template is briefly in use by another file's clone; try again.
        if ((err as { code?: string }).code !== "55006" || attempt >= cloneRetries) throw err;
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
      }
    }
  } finally {
    await admin.end();
  }
  const url = databaseUrl(adminUrl, name);
  return { url, name, pool: newPool(url) };
}

/** A pool on `url` (this file's database, or one of emptyDatabase()), closed after the file. */
export function newPool(url: string, max = 10, eventsMode?: "trigger" | "batched" | "off"): Pool {
  const pool = createPool({
    connectionString: url,
    max,
    applicationName: "pgchatd-test",
    eventsMode,
  });
  pools.push(pool);
  return pool;
}

const extraDatabases: string[] = [];

/** A new, empty (unmigrated) database on the test server, dropped after the file. */
export async function emptyDatabase(): Promise<{ url: string; name: string }> {
  const { adminUrl, template } = inject("pg");
  const name = await createScratchDatabase(adminUrl, `${template}_empty`);
  extraDatabases.push(name);
  return { url: databaseUrl(adminUrl, name), name };
}

/** This test file's private, migrated database. */
export function testDb(): Promise<TestDb> {
  current ??= createClone();
  return current;
}

/** Called once after the file: closes pools and drops the clone. */
export async function releaseTestDb(): Promise<void> {
  await Promise.all(pools.splice(0).map((p) => p.end().catch(() => {})));
  const names = extraDatabases.splice(0);
  if (current) names.push((await current).name);
  current = undefined;
  await dropScratchDatabases(inject("pg").adminUrl, names);
}
