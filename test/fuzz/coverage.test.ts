import { existsSync } from "node:fs";
import { pino } from "pino";
import { expect, test } from "vitest";
import { createApp } from "../../src/server/app.ts";
import { fuzzGroup, operations } from "../setup/fuzz.ts";

/** Routes that are no API operation, so no fuzz file covers them: they read no input but a name. */
const notOperations: Record<string, string> = {
  "GET /api/openapi.json": "the document itself (no input)",
  "GET /api/docs": "Swagger UI's page (no input)",
  "GET /api/docs/{file}": "Swagger UI's files: a fixed list of names",
  "GET /": "the web app's page (no input)",
  "GET /app/{file}": "the web app's files: a fixed list of names",
};

test("every route of the app's route table is an operation of the document or listed as none", async () => {
  const app = createApp({ db: {} as never, logger: pino({ level: "silent" }) } as never);
  const routes = new Set(
    app.routes
      .filter((r) => r.method !== "ALL")
      .map((r) => `${r.method} ${r.path.replace(/\/$/, "").replace(/:(\w+)/g, "{$1}") || "/"}`),
  );
  const documented = new Set((await operations()).map((o) => `${o.method} ${o.path}`));
  expect([...routes].filter((r) => !documented.has(r) && !(r in notOperations))).toEqual([]);
  expect([...documented].filter((o) => !routes.has(o))).toEqual([]);
  expect(Object.keys(notOperations).filter((r) => !routes.has(r))).toEqual([]);
});

test("every operation of the document is fuzzed by a file of test/fuzz", async () => {
  const ops = await operations();
  expect(ops.length).toBeGreaterThan(50);
  const missing = ops
    .map((o) => `${fuzzGroup(o)}.test.ts`)
    .filter((file) => !existsSync(new URL(file, import.meta.url)));
  expect(missing).toEqual([]);
});
