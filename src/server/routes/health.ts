import { Hono } from "hono";
import { z } from "zod";
import { Health } from "../../api/schemas.ts";
import { pingDatabase } from "../../generated/health.ts";
import type { AppEnv } from "../deps.ts";
import type { Metrics } from "../metrics.ts";
import { operation } from "../openapi.ts";

export function healthRoutes(metrics: Metrics) {
  return new Hono<AppEnv>()
    .get(
      "/healthz",
      operation({
        summary: "Whether the server can serve: migrated, and the database answers",
        auth: "none",
        tags: ["Operations"],
        responses: {
          200: Health,
          503: { schema: Health, description: "Not migrated, or the database does not answer" },
        },
      }),
      async (c) => {
        try {
          const row = await pingDatabase(c.get("deps").db);
          if (!row.migrated)
            return c.json({ status: "unavailable", message: "Schema is not migrated." }, 503);
        } catch {
          return c.json({ status: "unavailable", message: "Database does not answer." }, 503);
        }
        return c.json({ status: "ok" });
      },
    )
    .get(
      "/metrics",
      operation({
        summary: "Prometheus metrics",
        auth: "none",
        tags: ["Operations"],
        responses: {
          200: {
            schema: z.string(),
            description: "The Prometheus text format",
            media: "text/plain",
          },
        },
      }),
      async (c) => {
        return c.text(await metrics.registry.metrics(), 200, {
          "Content-Type": metrics.registry.contentType,
        });
      },
    );
}
