import { describe, expect, it } from "vitest";
import { maxJsonDepth } from "../../src/server/validation.ts";
import { gen } from "../fixtures/index.ts";
import { testApp } from "../setup/app.ts";

/** A JSON text nested `depth` levels deep (arrays in arrays). */
const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

describe("POST /api/v2/workspaceagents/me/tool-calls/{call}/result", () => {
  it("answers 400 to a result nested thousands of levels deep (was a 500: JSON.stringify overflowed), and takes one at the depth limit", async () => {
    const t = await testApp();
    const org = await gen.organization(t.pool);
    const owner = await gen.member(t.pool, { organizationIds: [org.id] });
    const ws = await gen.workspace(t.pool, { organizationId: org.id, ownerId: owner.id });
    const agent = (await gen.build(t.pool, ws.id)).agents[0]!;
    const headers = { "coder-agent-token": agent.token };
    const session = await t.call("POST", "/api/v2/workspaceagents/me/sessions", { headers });
    expect(session.status).toBe(201);
    const answer = (result: string) =>
      t.call("POST", "/api/v2/workspaceagents/me/tool-calls/1/result", {
        headers,
        body: `{"session_id":"${session.json.session_id}","result":${result}}`,
      });
    for (const depth of [maxJsonDepth, 5_000, 20_000]) {
      const res = await answer(nested(depth));
      expect(res.status, `depth ${depth}: ${res.text}`).toBe(400);
      expect(res.json.validations).toEqual([
        { field: "json", detail: `nested deeper than ${maxJsonDepth} levels` },
      ]);
    }
    // The body's own object is the first level: a result one level shallower passes validation
    // and reaches the call's lookup.
    const res = await answer(nested(maxJsonDepth - 1));
    expect(res.status).toBe(404);
  });
});
