import { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import { requireAgent, requireOwner, requireUser } from "../../src/server/auth.ts";
import type { AppEnv } from "../../src/server/deps.ts";
import { errorHandler } from "../../src/server/errors.ts";
import { gen } from "../fixtures/index.ts";
import { captureLogger } from "../setup/app.ts";
import { testDb } from "../setup/db.ts";

/** A bare app with the auth middleware in front of routes that echo the actor. */
async function authApp() {
  const db = await testDb();
  const { logger } = captureLogger();
  const app = new Hono<AppEnv>();
  app.use(async (c, next) => {
    c.set("deps", { db: db.pool, logger });
    await next();
  });
  app.get("/agent", requireAgent, (c) => c.json(c.get("actor")));
  app.get("/user", requireUser, (c) => c.json(c.get("actor")));
  app.get("/owner", requireUser, requireOwner, (c) => c.text("ok"));
  app.onError(errorHandler(logger));
  return { app, pool: db.pool };
}

let t: Awaited<ReturnType<typeof authApp>>;
let agentToken: string;
let agentId: string;
let userToken: string;

beforeAll(async () => {
  t = await authApp();
  const org = await gen.organization(t.pool);
  const u = await gen.user(t.pool, { organizationIds: [org.id] });
  userToken = await gen.apiKey(t.pool, u.id);
  const ws = await gen.workspace(t.pool, { organizationId: org.id, ownerId: u.id });
  const b = await gen.build(t.pool, ws.id, ["main"]);
  agentToken = b.agents[0]!.token;
  agentId = b.agents[0]!.id;
});

describe("agent authentication", () => {
  it("accepts an agent token in Coder-Agent-Token or Bearer", async () => {
    const variants: Record<string, string>[] = [
      { "coder-agent-token": agentToken },
      { authorization: `Bearer ${agentToken}` },
    ];
    for (const headers of variants) {
      const res = await t.app.request("/agent", { headers });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ kind: "agent", agent: { id: agentId } });
    }
  });

  it("does not accept a user's API key as an agent token, nor an agent token as a user's key", async () => {
    expect(
      (await t.app.request("/agent", { headers: { authorization: `Bearer ${userToken}` } })).status,
    ).toBe(401);
    expect(
      (await t.app.request("/user", { headers: { authorization: `Bearer ${agentToken}` } })).status,
    ).toBe(401);
  });

  it("answers 403 to a member on an owner route", async () => {
    const res = await t.app.request("/owner", {
      headers: { authorization: `Bearer ${userToken}` },
    });
    expect(res.status).toBe(403);
  });
});
