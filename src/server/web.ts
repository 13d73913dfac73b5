import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { Hono } from "hono";
import { buildWeb, webDist } from "../../web/build.ts";

/*
 * The web app (web/, Preact): its page at `/` and its files under /app/. No token: the page asks
 * for one and calls the API with it (web/src/session.ts).
 */

const files: Record<string, string> = {
  "app.js": "text/javascript; charset=utf-8",
  "app.js.map": "application/json; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
};

/**
 * Builds web/dist when it is missing (a checkout whose install skipped `prepare`), so `pgchatd
 * serve` always has a page to serve.
 */
export async function ensureWebBuilt(): Promise<void> {
  if (await stat(path.join(webDist, "index.html")).catch(() => null)) return;
  await buildWeb();
}

/**
 * The page keeps an API token in localStorage: it runs only its own script, talks only to this
 * origin, and cannot be framed (no injected script or clickjacking can reach the token).
 */
const page = {
  "content-security-policy":
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
};

export function webRoutes() {
  // Read at each request: small files, and a rebuild (npm run build:web) shows without a restart.
  const send = async (file: string, type: string, extra: Record<string, string> = {}) =>
    new Response(await readFile(path.join(webDist, file)), {
      headers: {
        "content-type": type,
        // Revalidated every time: the names do not change between builds.
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
        ...extra,
      },
    });
  return new Hono()
    .get("/", async (c) => {
      try {
        return await send("index.html", "text/html; charset=utf-8", page);
      } catch {
        return c.text("The web app is not built: run npm run build:web.", 503);
      }
    })
    .get("/app/:file", async (c) => {
      const type = files[c.req.param("file")];
      if (!type) return c.notFound();
      try {
        return await send(c.req.param("file"), type);
      } catch {
        return c.notFound();
      }
    });
}
