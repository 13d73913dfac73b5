import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { pino } from "pino";
import { createSecrets } from "../../src/lib/secrets.ts";
import { createModels, type ModelRouting } from "../../src/models/index.ts";
import { createApp } from "../../src/server/app.ts";
import type { AppDeps } from "../../src/server/deps.ts";
import { testDb } from "./db.ts";
import { checkResponse } from "./openapi.ts";

/** Captures every log line the app writes, so tests can assert what is (not) logged. */
export function captureLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: "trace" }, stream), lines };
}

/** An app on this file's database, plus a small JSON client for it; `deps` adds or overrides. */
export async function testApp(
  opts: Partial<AppDeps> & {
    /** The routing of the app's models (GET /models asks it); direct when absent. */
    modelRouting?: ModelRouting;
  } = {},
) {
  const { modelRouting, ...deps } = opts;
  const db = await testDb();
  const { logger, lines } = captureLogger();
  // A random key per app: tests that read sealed values decrypt them with `secrets`.
  const secrets = createSecrets(randomBytes(32));
  const models = createModels({ secrets, routing: modelRouting });
  const app = createApp({
    db: db.pool,
    logger,
    secrets,
    models,
    ...deps,
  });

  const call = appCaller(app);
  return { app, db, pool: db.pool, logLines: lines, secrets, models, call };
}

/**
 * A small JSON client for `app`: the response's status, text, JSON (when it parses) and headers,
 * checked against the OpenAPI document unless the call says why not.
 */
export function appCaller(app: ReturnType<typeof createApp>) {
  return async function call(
    method: string,
    path: string,
    opts: {
      token?: string;
      /** Bytes go as they are (uploads); anything else as JSON, a string as written. */
      body?: unknown;
      headers?: Record<string, string>;
      /**
       * Why this response is outside the OpenAPI document (rows a test stored behind the API's
       * back); absent, the response is checked against the document.
       */
      unchecked?: string;
    } = {},
  ) {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | Uint8Array | undefined;
    if (opts.body instanceof Uint8Array) {
      body = opts.body;
    } else if (opts.body !== undefined) {
      headers["content-type"] ??= "application/json";
      body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    }
    const res = await app.request(path, { method, headers, body });
    const text = await res.text();
    // biome-ignore lint/suspicious/noExplicitAny: tests assert on response JSON of any shape.
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!opts.unchecked) {
      await checkResponse(method, path, res.status, res.headers.get("content-type"), json);
    }
    return { status: res.status, json, text, headers: res.headers };
  };
}
