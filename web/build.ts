import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

/*
 * Builds the web app (web/src, Preact) into web/dist: app.js (one ES module, minified), app.css
 * and index.html. esbuild alone: it bundles TypeScript and JSX in well under a second, so
 * `npm install` (prepare) and a server that finds no build (src/server/web.ts) can both run it.
 */

const webDir = path.dirname(fileURLToPath(import.meta.url));
export const webDist = path.join(webDir, "dist");

export async function buildWeb(outDir = webDist): Promise<void> {
  // Built aside, then renamed into place file by file: a server reading web/dist meanwhile (or
  // another build) never sees a half-written file.
  const staging = await fs.mkdtemp(`${outDir}-`);
  try {
    await esbuild.build({
      entryPoints: [path.join(webDir, "src/main.tsx")],
      outfile: path.join(staging, "app.js"),
      bundle: true,
      format: "esm",
      target: "es2022",
      minify: true,
      sourcemap: "linked",
      jsx: "automatic",
      jsxImportSource: "preact",
      logLevel: "warning",
    });
    await fs.copyFile(path.join(webDir, "src/app.css"), path.join(staging, "app.css"));
    await fs.copyFile(path.join(webDir, "index.html"), path.join(staging, "index.html"));
    await fs.mkdir(outDir, { recursive: true });
    // The page last: once it is there, everything it loads is.
    for (const file of ["app.js.map", "app.js", "app.css", "index.html"]) {
      await fs.rename(path.join(staging, file), path.join(outDir, file));
    }
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const started = performance.now();
  await buildWeb();
  console.error(`web/dist built in ${Math.round(performance.now() - started)} ms`);
}
