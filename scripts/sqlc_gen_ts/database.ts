import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedPostgres } from "../../src/db/embedded.ts";
import { migrate } from "../../src/db/migrate.ts";
import { connectClient } from "../../src/db/pool.ts";

/*
 * A freshly migrated scratch database to describe queries against, dropped afterwards: a new
 * database on the server at DATABASE_URL, or else a temporary embedded cluster.
 */

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function withScratchDatabase<T>(
  fn: (url: string) => Promise<T>,
  opts: { databaseUrl?: string; log?: (msg: string) => void } = {},
): Promise<T> {
  const log = opts.log ?? (() => {});
  if (opts.databaseUrl) {
    const adminUrl = opts.databaseUrl;
    const name = `pgchatd_gen_${randomBytes(6).toString("hex")}`;
    const admin = await connectClient(adminUrl, "pgchatd-gen");
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    try {
      const url = withDatabase(adminUrl, name);
      await migrate(url);
      return await fn(url);
    } finally {
      const drop = await connectClient(adminUrl, "pgchatd-gen");
      try {
        await drop.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await drop.end();
      }
    }
  }

  // The postgres OS user (when running as root) must be able to enter the directory.
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-gen-"));
  try {
    await fs.chmod(dir, 0o755);
    log("starting a temporary embedded PostgreSQL (set DATABASE_URL to use a server instead)");
    const pg = await EmbeddedPostgres.start({
      pgDir: path.join(dir, "pg"),
      passwordFile: path.join(dir, "password"),
    });
    try {
      await pg.ensureDatabase("pgchatd_gen");
      const url = pg.url("pgchatd_gen");
      await migrate(url);
      return await fn(url);
    } finally {
      await pg.stop();
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
