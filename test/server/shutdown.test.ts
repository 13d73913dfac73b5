import http from "node:http";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { startServer } from "../../src/processes/serve.ts";
import { captureLogger } from "../setup/app.ts";
import { emptyDatabase } from "../setup/db.ts";

describe("graceful shutdown", () => {
  it("finishes a request that is in flight when shutdown starts, and refuses new connections", async () => {
    const db = await emptyDatabase();
    const config = loadConfig({
      DATABASE_URL: db.url,
      PORT: "0",
      PGCHATD_DATA_DIR: "/tmp/pgchatd-unused",
    });
    const server = await startServer(config, captureLogger().logger);
    const url = new URL(server.url);

    // A request whose body is still arriving when close() is called: close() waits until the
    // server has answered its headers (it rejects it at once: no credentials), not for a time.
    let answered!: () => void;
    const headersAnswered = new Promise<void>((r) => {
      answered = r;
    });
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: url.hostname,
          port: url.port,
          method: "POST",
          path: "/api/v2/organizations",
          headers: { "content-type": "application/json" },
        },
        (res) => {
          answered();
          let body = "";
          res.on("data", (d) => {
            body += d;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on("error", reject);
      req.write('{"name":');
      setTimeout(() => req.end('"late"}'), 300);
    });
    await headersAnswered;
    const closed = server.close();
    const res = await response;
    // Unauthenticated: the point is that it was answered, not reset.
    expect(res.status).toBe(401);
    await closed;
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  });
});
