import fs from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../../src/db/pool.ts";
import { createApp } from "../../src/server/app.ts";
import { ensureWebBuilt } from "../../src/server/web.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger, testApp } from "../setup/app.ts";
import { emptyDatabase } from "../setup/db.ts";

let t: Awaited<ReturnType<typeof testApp>>;
let token: string;
let ownerToken: string;

beforeAll(async () => {
  t = await testApp();
  const u = await gen.user(t.pool);
  token = await gen.apiKey(t.pool, u.id);
  const owner = await gen.user(t.pool, { owner: true });
  ownerToken = await gen.apiKey(t.pool, owner.id);
});

describe("error bodies", () => {
  it("answers 503 on the stream routes of an app built without change events", async () => {
    const res = await t.call("GET", "/api/experimental/chats/watch", { token });
    expect(res.status).toBe(503);
    expect(res.json.message).toMatch(/change streams are not running/i);
  });

  it("answers an unknown route with a JSON 404", async () => {
    const res = await t.call("GET", "/no/such/route");
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    expect(res.json.message).toMatch(/no route/i);
  });

  it("answers malformed JSON with 400, not 500", async () => {
    const res = await t.call("POST", "/api/v2/organizations", {
      token: ownerToken,
      body: "{not json",
    });
    expect(res.status).toBe(400);
    expect(typeof res.json.message).toBe("string");
  });

  it("answers a wrong JSON type with 400 naming the field", async () => {
    const res = await t.call("POST", "/api/v2/organizations", {
      token: ownerToken,
      body: { name: 42 },
    });
    expect(res.status).toBe(400);
    expect(res.json.validations).toEqual([{ field: "name", detail: expect.any(String) }]);
  });

  it("answers a body over the limit with 413", async () => {
    const res = await t.call("POST", "/api/v2/organizations", {
      token: ownerToken,
      body: { name: "x".repeat(2 * 1024 * 1024) },
    });
    expect(res.status).toBe(413);
    expect(res.json.message).toMatch(/exceeds/);
  });

  it("answers a database fault with a bare 500 and logs it", async () => {
    const { logger, lines } = captureLogger();
    // Reachable, but without the schema: the query fails with undefined_table, which no rule maps.
    const unmigrated = createPool({ connectionString: (await emptyDatabase()).url });
    const app = createApp({ db: unmigrated, logger });
    const res = await app.request("/api/v2/users/me", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ message: "Internal server error." });
    expect(lines.join("")).toMatch(/unhandled error/);
    await unmigrated.end();
  });

  it("answers 503 with Retry-After when the database cannot be reached, and logs it", async () => {
    const { logger, lines } = captureLogger();
    const deadPool = createPool({ connectionString: "postgres://nobody@127.0.0.1:1/none" });
    const app = createApp({ db: deadPool, logger });
    const res = await app.request("/api/v2/users/me", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(await res.json()).toEqual({
      message: "The database is unavailable; retry the request shortly.",
    });
    expect(lines.join("")).toMatch(/database unavailable/);
    await deadPool.end();
  });
});

describe("the web app", () => {
  it("serves its page and files without a token, and nothing else under /app", async () => {
    await ensureWebBuilt();
    const page = await t.app.request("/");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(await page.text()).toContain('src="/app/app.js"');
    // It holds a token: its own script only, this origin only, never framed.
    expect(page.headers.get("content-security-policy")).toContain("default-src 'self'");
    expect(page.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    const js = await t.app.request("/app/app.js");
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toContain("javascript");
    expect((await t.app.request("/app/app.css")).status).toBe(200);
    for (const other of ["/app/index.html", "/app/..%2Fbuild.ts", "/app/secret-key"]) {
      expect((await t.app.request(other)).status).toBe(404);
    }
  });
});

describe("/healthz and /metrics", () => {
  it("reports healthy when the database answers", async () => {
    const res = await t.call("GET", "/healthz");
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: "ok" });
  });

  it("reports 503 when the database does not answer", async () => {
    const { logger } = captureLogger();
    const deadPool = createPool({ connectionString: "postgres://nobody@127.0.0.1:1/none" });
    const res = await createApp({ db: deadPool, logger }).request("/healthz");
    expect(res.status).toBe(503);
    await deadPool.end();
  });

  it("exports request durations by route pattern and status, and pool usage", async () => {
    await t.call("GET", "/api/v2/users/me", { token });
    await t.call("GET", "/api/v2/users/me");
    const res = await t.call("GET", "/metrics");
    expect(res.status).toBe(200);
    expect(res.text).toMatch(
      /pgchatd_http_request_duration_seconds_count\{method="GET",route="\/api\/v2\/users\/me",status="200"\} \d+/,
    );
    expect(res.text).toMatch(/status="401"/);
    expect(res.text).toMatch(/pgchatd_db_pool_connections \d+/);
  });

  it.runIf(process.platform === "linux")(
    "counts open file descriptors on the first scrape, and later ones report newly opened ones",
    async () => {
      const fds = () => fs.readdirSync("/proc/self/fd").length;
      const count = (text: string) => Number(/^process_open_fds (\d+)$/m.exec(text)?.[1]);
      const first = count((await t.call("GET", "/metrics")).text);
      expect(Math.abs(first - fds())).toBeLessThan(20);
      const opened = Array.from({ length: 50 }, () => fs.openSync("/dev/null", "r"));
      try {
        // A scrape reports the count the one before it started: a later scrape sees them.
        let later = first;
        for (let i = 0; i < 100 && later - first < 40; i++) {
          // Scrapes come seconds apart; app.request alone never lets the event loop poll for the
          // count's completion.
          await sleep(10);
          later = count((await t.call("GET", "/metrics")).text);
        }
        expect(later - first).toBeGreaterThanOrEqual(40);
      } finally {
        for (const fd of opened) fs.closeSync(fd);
      }
    },
  );
});
