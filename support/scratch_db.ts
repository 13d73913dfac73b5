import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedPostgres } from "../src/db/embedded.ts";
import { connectClient } from "../src/db/pool.ts";

/*
 * Scratch databases for the tools around pgchatd: the test setup, the benchmarks, the plans of
 * docs/sql.md and the query generator. One helper, so they all create, name and drop them alike.
 */

/** The same server URL with another database name. */
export function databaseUrl(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A new empty database named `<prefix>_<random>` on the server at `adminUrl`; its name. */
export async function createScratchDatabase(adminUrl: string, prefix: string): Promise<string> {
  const name = `${prefix}_${randomBytes(5).toString("hex")}`;
  const admin = await connectClient(adminUrl, `${prefix}-admin`);
  try {
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  return name;
}

/** Drops databases made by createScratchDatabase, with whatever sessions they still have. */
export async function dropScratchDatabases(adminUrl: string, names: string[]): Promise<void> {
  if (names.length === 0) return;
  const admin = await connectClient(adminUrl, "pgchatd-scratch-drop");
  try {
    for (const name of names) {
      await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(name)} WITH (FORCE)`);
    }
  } finally {
    await admin.end();
  }
}

/**
 * Runs `fn` with the URL of a new empty database, dropped afterwards: on the server at
 * `databaseUrl` (absent: DATABASE_URL) when there is one, else in a temporary embedded cluster;
 * `databaseUrl: null` always uses an embedded cluster. `where` says which, for reports.
 */
export async function withScratchDatabase<T>(
  prefix: string,
  fn: (url: string, where: string) => Promise<T>,
  opts: { databaseUrl?: string | null | undefined; log?: (msg: string) => void } = {},
): Promise<T> {
  const serverUrl = opts.databaseUrl === undefined ? process.env.DATABASE_URL : opts.databaseUrl;
  if (serverUrl) {
    const name = await createScratchDatabase(serverUrl, prefix);
    try {
      const url = databaseUrl(serverUrl, name);
      return await fn(url, `DATABASE_URL's server (${new URL(url).host})`);
    } finally {
      await dropScratchDatabases(serverUrl, [name]);
    }
  }
  opts.log?.("starting a temporary embedded PostgreSQL (set DATABASE_URL to use a server instead)");
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `${prefix.replaceAll("_", "-")}-`));
  try {
    // The postgres OS user (when running as root) must be able to enter the directory.
    await fs.chmod(dir, 0o755);
    const pg = await EmbeddedPostgres.start({
      pgDir: path.join(dir, "pg"),
      passwordFile: path.join(dir, "password"),
    });
    try {
      await pg.ensureDatabase(prefix);
      return await fn(pg.url(prefix), "embedded cluster (default settings)");
    } finally {
      await pg.stop();
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
