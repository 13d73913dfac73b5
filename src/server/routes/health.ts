import { Hono } from "hono";
import { pingDatabase } from "../../generated/health.ts";
import type { AppEnv } from "../deps.ts";
import type { Metrics } from "../metrics.ts";

export function healthRoutes(metrics: Metrics) {
  return new Hono<AppEnv>()
    .get("/healthz", async (c) => {
      try {
        const row = await pingDatabase(c.get("deps").db);
        if (!row.migrated)
          return c.json({ status: "unavailable", message: "Schema is not migrated." }, 503);
      } catch {
        return c.json({ status: "unavailable", message: "Database does not answer." }, 503);
      }
      return c.json({ status: "ok" });
    })
    .get("/metrics", async (c) => {
      return c.text(await metrics.registry.metrics(), 200, {
        "Content-Type": metrics.registry.contentType,
      });
    });
}
