import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { EmbeddedPostgres } from "../../src/db/embedded.ts";
import { migrate } from "../../src/db/migrate.ts";
import { connectClient } from "../../src/db/pool.ts";
import { databaseUrl } from "../../support/scratch_db.ts";
import { checkQueryCoverage } from "./coverage.ts";

/*
 * One PostgreSQL server for the whole run: DATABASE_URL when set (CI's PostgreSQL 15 run), else a
 * container when a container runtime answers, else embedded PostgreSQL 18. One template database
 * is migrated here; every test file clones its own database from it (test/setup/db.ts).
 */

declare module "vitest" {
  export interface ProvidedContext {
    pg: { adminUrl: string; template: string; coverageDir: string };
  }
}

interface Server {
  adminUrl: string;
  kind: string;
  stop(): Promise<void>;
}

async function containerServer(): Promise<Server | null> {
  if (process.env.PGCHATD_TEST_CONTAINERS === "0") return null;
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    await getContainerRuntimeClient();
  } catch {
    return null; // no runtime answered: fall back to embedded
  }
  const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
  const container = await new PostgreSqlContainer("postgres:18-alpine").start();
  return {
    adminUrl: databaseUrl(container.getConnectionUri(), "postgres"),
    kind: "container postgres:18",
    stop: async () => void (await container.stop()),
  };
}

async function embeddedServer(): Promise<Server> {
  // Enterable by the postgres OS user (as root), so the cluster stays in this directory and goes
  // with it, instead of being placed in /var/lib/pgchatd.
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-test-"));
  await fs.chmod(dir, 0o755);
  const pg = await EmbeddedPostgres.start({
    pgDir: path.join(dir, "pg"),
    passwordFile: path.join(dir, "password"),
  });
  return {
    adminUrl: pg.url("postgres"),
    kind: "embedded PostgreSQL 18",
    stop: async () => {
      await pg.stop();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export default async function setup(project: TestProject) {
  const server: Server = process.env.DATABASE_URL
    ? { adminUrl: process.env.DATABASE_URL, kind: "DATABASE_URL", stop: async () => {} }
    : ((await containerServer()) ?? (await embeddedServer()));

  const template = `pgchatd_test_${randomBytes(4).toString("hex")}`;
  const admin = await connectClient(server.adminUrl, "pgchatd-test-setup");
  try {
    const { rows } = await admin.query<{ server_version: string }>("SHOW server_version");
    console.log(`tests use ${server.kind} (PostgreSQL ${rows[0]?.server_version})`);
    await admin.query(`CREATE DATABASE ${template}`);
  } finally {
    await admin.end();
  }
  await migrate(databaseUrl(server.adminUrl, template));

  const coverageDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-query-coverage-"));
  project.provide("pg", { adminUrl: server.adminUrl, template, coverageDir });

  return async () => {
    try {
      const admin = await connectClient(server.adminUrl, "pgchatd-test-teardown");
      try {
        const { rows } = await admin.query<{ datname: string }>(
          "SELECT datname FROM pg_database WHERE datname LIKE $1",
          [`${template}%`],
        );
        for (const { datname } of rows) {
          await admin.query(
            `DROP DATABASE IF EXISTS ${admin.escapeIdentifier(datname)} WITH (FORCE)`,
          );
        }
      } finally {
        await admin.end();
      }
    } finally {
      await server.stop();
    }
    try {
      await checkQueryCoverage(coverageDir);
    } catch (err) {
      // vitest only logs a teardown error; the exit code is what fails CI.
      console.error(`\nFAIL query coverage: ${(err as Error).message}`);
      process.exitCode = 1;
    }
  };
}
