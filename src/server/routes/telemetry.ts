import { Hono } from "hono";
import { z } from "zod";
import { requireOwner } from "../auth.ts";
import type { AppEnv } from "../deps.ts";
import { badRequest } from "../errors.ts";
import { operation } from "../openapi.ts";
import { buildTelemetrySnapshot, defaultTelemetryWindowMs } from "../telemetry.ts";
import { validate } from "../validation.ts";

/*
 * GET /api/v2/telemetry/snapshot (site owners): the deployment's activity without personal data
 * (docs/api.md "Telemetry"; built in src/server/telemetry.ts).
 */

const snapshotQuery = z.object({
  /** RFC 3339; default a day before now. */
  since: z.iso.datetime({ offset: true }).optional(),
});

export const telemetryRoutes = new Hono<AppEnv>().get(
  "/telemetry/snapshot",
  operation({
    summary: "What the deployment did in a window, without content or identities (site owners)",
    tags: ["Operations"],
    responses: {
      200: {
        schema: z.looseObject({}),
        description: 'The snapshot (docs/api.md "Telemetry")',
      },
    },
    errors: [400, 403],
  }),
  requireOwner,
  validate("query", snapshotQuery),
  async (c) => {
    const until = new Date();
    const requested = c.req.valid("query").since;
    const since = requested
      ? new Date(requested)
      : new Date(until.getTime() - defaultTelemetryWindowMs);
    if (since.getTime() > until.getTime()) throw badRequest("since is in the future.");
    return c.json(await buildTelemetrySnapshot(c.get("deps").db, { since, until }));
  },
);
