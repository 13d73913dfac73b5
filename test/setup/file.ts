import pg from "pg";
import { afterAll, expect, inject } from "vitest";
import { queryNameOf, writeUsage } from "./coverage.ts";
import { releaseTestDb } from "./db.ts";

// Runs in every test file (vitest setupFiles).

/*
 * Records the generated queries this file's code runs on any connection (pools, the migrator's
 * client, bootstrap), for the coverage check in test/setup/coverage.ts. Instrumentation only:
 * every query still goes to the real server unchanged.
 */
const queriesRun = new Set<string>();
/**
 * Statements sent to a client still busy with another: node-postgres queues them today and pg 9
 * refuses them, so each is a defect (a Promise.all over one transaction's client); afterAll fails
 * the file with their texts.
 */
const overlapping = new Set<string>();
const originalQuery = pg.Client.prototype.query;
// biome-ignore lint/suspicious/noExplicitAny: wrapping pg's overloaded query signature.
(pg.Client.prototype as any).query = function (this: pg.Client, ...args: unknown[]) {
  const first = args[0] as string | { text?: unknown; submit?: unknown } | undefined;
  // A Submittable (the generator's Parse/Describe) prepares a query without running it.
  const runs = typeof first === "string" || typeof first?.submit !== "function";
  const text = !runs ? undefined : typeof first === "string" ? first : first?.text;
  const name = typeof text === "string" ? queryNameOf(text) : undefined;
  if (name) queriesRun.add(name);
  // pg's own test for its deprecation notice: a statement queued behind the one running.
  // biome-ignore lint/suspicious/noExplicitAny: pg's private queue, read only.
  const busy = runs && ((this as any)._queryQueue?.length > 0 || (this as any)._getActiveQuery?.());
  if (busy)
    overlapping.add(
      String(text ?? "?")
        .replace(/\s+/g, " ")
        .slice(0, 120),
    );
  // biome-ignore lint/suspicious/noExplicitAny: forwarding the same arguments.
  return (originalQuery as any).apply(this, args);
};

afterAll(async () => {
  await releaseTestDb();
  expect([...overlapping], "statements sent to a client already running one").toEqual([]);
  const testFile = expect.getState().testPath;
  if (testFile) await writeUsage(inject("pg").coverageDir, testFile, queriesRun);
});
