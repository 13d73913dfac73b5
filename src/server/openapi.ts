import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { Hono, type MiddlewareHandler } from "hono";
import { describeRoute, generateSpecs, resolver } from "hono-openapi";
import type { OpenAPIV3_1 } from "openapi-types";
import type { z } from "zod";
import { ErrorBody } from "../api/schemas.ts";
import type { AppEnv } from "./deps.ts";

/*
 * The OpenAPI 3.1 document of the HTTP API (docs/api.md), generated from the app itself: each
 * route's request schemas come from its validators (src/server/validation.ts), its responses
 * from the `operation()` it declares. GET /api/openapi.json serves it, /api/docs browses it.
 * test/server/openapi.test.ts fails when a route and the document disagree, and every response
 * the HTTP tests receive is checked against it (test/setup/app.ts).
 */

/**
 * A response: a JSON body's schema, or null for one without a body (204, a redirect); the long
 * form says what it means, and its media type when it is not JSON.
 */
type ResponseSpec =
  | z.ZodType
  | null
  | { schema: z.ZodType | null; description: string; media?: string };

const reasons: Record<number, string> = {
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No content",
  400: "Invalid input, or a rule of the resource refused it",
  401: "Missing or invalid credentials",
  403: "Authenticated but not allowed",
  404: "Missing, or not visible to the caller",
  409: "Conflicts with the resource's state",
  413: "Body too large",
  429: "Too many",
  503: "The database is unavailable (down, restarting, its connections cut); retry after Retry-After seconds",
  507: "The database is out of storage space; nothing was stored",
};

/** The error statuses of docs/api.md "Errors": each answers the shared error body. */
export type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 429 | 503 | 507;

/**
 * Declares a route's operation for the document: what it is, and every status it answers with
 * its body. Error statuses answer the error body of docs/api.md; list them in `errors` (401 is
 * added to every operation that needs a token).
 */
export function operation(spec: {
  summary: string;
  tags: string[];
  responses: Partial<Record<200 | 201 | 202 | 204 | 302 | 503, ResponseSpec>>;
  errors?: ErrorStatus[];
  description?: string;
  /** Who calls it: a user (the default), a workspace agent with its token, or anyone. */
  auth?: "user" | "agent" | "none";
}): MiddlewareHandler {
  const responses: Record<string, OpenAPIV3_1.ResponseObject> = {};
  for (const [status, r] of Object.entries(spec.responses)) {
    const long = r !== null && !("_zod" in r) ? r : undefined;
    const schema = long ? long.schema : (r as z.ZodType | null);
    responses[status] = {
      description: long?.description ?? reasons[Number(status)] ?? "",
      ...(schema
        ? {
            content: { [long?.media ?? "application/json"]: { schema: resolver(schema) as never } },
          }
        : {}),
    };
  }
  // Every route but the public ones sits behind the token check (src/server/auth.ts), which asks
  // the database: 401, and 503 while the database cannot be reached (docs/errors.md).
  const errors = spec.auth === "none" ? (spec.errors ?? []) : [401, 503, ...(spec.errors ?? [])];
  for (const status of new Set(errors)) {
    responses[status] = {
      description: reasons[status] ?? "Error",
      ...(status === 503
        ? { headers: { "Retry-After": { schema: { type: "integer" }, description: "Seconds" } } }
        : {}),
      content: { "application/json": { schema: resolver(ErrorBody) as never } },
    };
  }
  const agent: OpenAPIV3_1.SecurityRequirementObject[] = [{ agentToken: [] }, { bearer: [] }];
  const security = spec.auth === "none" ? [] : spec.auth === "agent" ? agent : undefined;
  return describeRoute({
    summary: spec.summary,
    tags: spec.tags,
    ...(security ? { security } : {}),
    ...(spec.description ? { description: spec.description } : {}),
    responses,
  });
}

const documentation: Partial<OpenAPIV3_1.Document> = {
  openapi: "3.1.0",
  info: {
    title: "pgchatd",
    version: "1",
    description:
      "Chats of AI agents stored and coordinated in PostgreSQL. The rules behind each route are in docs/api.md.",
  },
  components: {
    securitySchemes: {
      bearer: { type: "http", scheme: "bearer", description: "An API key: <id>-<secret>." },
      sessionHeader: { type: "apiKey", in: "header", name: "Coder-Session-Token" },
      sessionCookie: { type: "apiKey", in: "cookie", name: "coder_session_token" },
      sessionQuery: { type: "apiKey", in: "query", name: "coder_session_token" },
      agentToken: { type: "apiKey", in: "header", name: "Coder-Agent-Token" },
    },
  },
  security: [{ bearer: [] }, { sessionHeader: [] }, { sessionCookie: [] }, { sessionQuery: [] }],
};

/** The document of `app` (computed once per app: it walks every route). */
export function openApiDocument(app: Hono<AppEnv>): Promise<OpenAPIV3_1.Document> {
  let doc = documents.get(app);
  if (!doc) {
    doc = generateSpecs(app, {
      documentation,
      exclude: ["/api/openapi.json", "/api/docs"],
      // Validation failures answer the shared error body, declared with the other errors.
      defaultValidationErrorResponse: {
        description: reasons[400]!,
        content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
      },
    }).then(withBodyLimit);
    documents.set(app, doc);
  }
  return doc;
}
const documents = new WeakMap<object, Promise<OpenAPIV3_1.Document>>();

/** Every POST, PUT and PATCH may answer 413: the body limit runs before any route (src/server/app.ts). */
function withBodyLimit(doc: OpenAPIV3_1.Document): OpenAPIV3_1.Document {
  for (const item of Object.values(doc.paths ?? {})) {
    for (const method of ["post", "put", "patch"] as const) {
      const op = item?.[method];
      if (!op) continue;
      op.responses = {
        ...op.responses,
        413: {
          description: reasons[413]!,
          content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
        },
      };
    }
  }
  return doc;
}

/** Swagger UI's files, served from the package (no CDN: the docs work offline). */
const swaggerDir = path.dirname(
  createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"),
);
const swaggerFiles: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
};

const docsPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pgchatd API</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger-ui" });</script>
</body>
</html>
`;

/** GET /api/openapi.json (the document of `app`) and GET /api/docs (Swagger UI over it). */
export function openApiRoutes(app: Hono<AppEnv>) {
  return new Hono()
    .get("/api/openapi.json", async (c) => c.json(await openApiDocument(app)))
    .get("/api/docs", (c) => c.html(docsPage))
    .get("/api/docs/:file", async (c) => {
      const file = c.req.param("file");
      const type = swaggerFiles[file];
      if (!type) return c.notFound();
      const body = await readFile(path.join(swaggerDir, file));
      return c.body(body, 200, {
        "content-type": type,
        "cache-control": "public, max-age=86400",
      });
    });
}
