import type { OpenAPIV3_1 } from "openapi-types";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/server/app.ts";
import { described, streamEventChecker, testDocument } from "../setup/openapi.ts";

/*
 * The OpenAPI document (src/server/openapi.ts) against the app it describes: every route is in
 * it and nothing else is. Responses are checked against it wherever the suite calls the app
 * (test/setup/openapi.ts).
 */

const app = createApp({ db: {} as never, logger: pino({ level: "silent" }) } as never);

/** Every route the app answers, as "METHOD /openapi/{path}" (middleware excluded). */
function appOperations() {
  const ops = new Set<string>();
  for (const r of app.routes) {
    if (r.method === "ALL") continue;
    if (r.path.startsWith("/api/docs") || r.path === "/api/openapi.json") continue;
    // The web app's page and files (src/server/web.ts) are not API.
    if (r.path === "/" || r.path.startsWith("/app/")) continue;
    ops.add(`${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`);
  }
  return ops;
}

describe("the OpenAPI document", () => {
  it("is served at /api/openapi.json as OpenAPI 3.1, without a token", async () => {
    const res = await app.request("/api/openapi.json");
    expect(res.status).toBe(200);
    const doc = (await res.json()) as OpenAPIV3_1.Document;
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.paths?.["/api/experimental/chats/{chat}/messages"]?.post?.responses).toHaveProperty(
      "200",
    );
  });

  it("is browsable at /api/docs with the Swagger UI files served locally", async () => {
    const page = await app.request("/api/docs");
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("/api/openapi.json");
    const js = await app.request("/api/docs/swagger-ui-bundle.js");
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toContain("javascript");
    expect((await js.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
    expect((await app.request("/api/docs/package.json")).status).toBe(404);
  });

  it("has an operation, with its responses, for every route of the app and for nothing else", async () => {
    const { doc } = await testDocument();
    const documented = new Set<string>();
    const withoutResponses: string[] = [];
    for (const [path, item] of Object.entries(doc.paths ?? {})) {
      for (const [method, op] of Object.entries(item ?? {})) {
        const key = `${method.toUpperCase()} ${path}`;
        documented.add(key);
        if (!described(op as OpenAPIV3_1.OperationObject)) withoutResponses.push(key);
      }
    }
    const routes = appOperations();
    const missing = [...routes].filter((r) => !documented.has(r));
    const extra = [...documented].filter((d) => !routes.has(d));
    expect(missing, "routes the document lacks").toEqual([]);
    expect(extra, "operations that are not routes").toEqual([]);
    expect(withoutResponses, "operations without responses").toEqual([]);
  });

  it("describes each stream's events, so an event the document does not allow is caught", async () => {
    const chatId = "0b7c1a52-4a5e-4b8e-9c61-3f1d2a9e8b10";
    const stream = await streamEventChecker(`/api/experimental/chats/${chatId}/stream`);
    const watch = await streamEventChecker("/api/experimental/chats/watch");
    expect(stream).not.toBeNull();
    expect(watch).not.toBeNull();
    const status = JSON.stringify({ chat_id: chatId, status: "running" });
    expect(stream!({ event: "status", data: status, id: "" })).toBeUndefined();
    expect(stream!({ event: "status", data: JSON.stringify({ chat_id: chatId }), id: "" })).toMatch(
      /event status does not match/,
    );
    expect(stream!({ event: "sparkle", data: "{}", id: "" })).toMatch(/not in the OpenAPI/);
    // The watch stream has no `status` event: its chat events are named by their kind.
    expect(watch!({ event: "status", data: status, id: "" })).toMatch(/not in the OpenAPI/);
    expect(watch!({ event: "resync", data: '{"cursor":"12.3"}', id: "12.3" })).toBeUndefined();
    // The AI SDK's stream is that SDK's protocol, described as text.
    expect(await streamEventChecker(`/api/experimental/chats/ai-sdk/${chatId}/stream`)).toBeNull();
  });
});
