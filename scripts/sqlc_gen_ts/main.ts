import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { GenErrors } from "./errors.ts";
import { diffOutputs, generate, writeOutputs } from "./generate.ts";

/*
 * `npm run gen`: regenerates src/generated from sql/queries (see docs/queries.md).
 * `npm run gen:check`: generates in memory and fails when the committed files differ.
 *
 * Options: --check, --config <sqlc.yaml>, --queries <dir>, --out <dir>.
 * DATABASE_URL: describe queries in a scratch database on that server instead of an embedded one.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      check: { type: "boolean", default: false },
      config: { type: "string" },
      queries: { type: "string" },
      out: { type: "string" },
    },
    strict: true,
  });
  const gen = await generate({
    configFile: path.resolve(values.config ?? path.join(root, "sqlc.yaml")),
    queriesDir: values.queries,
    outDir: values.out,
    databaseUrl: process.env.DATABASE_URL || undefined,
    log: (msg) => console.error(msg),
  });
  const show = (name: string) => `${gen.outDisplay}/${name}`;

  if (values.check) {
    const diff = await diffOutputs(gen.outDir, gen.files);
    const problems = [
      ...diff.missing.map((n) => `missing: ${show(n)} is not generated yet`),
      ...diff.changed.map((n) => `stale: ${show(n)} differs from what its query file generates`),
      ...diff.extra.map((n) => `extra: ${show(n)} has no query file any more`),
    ];
    if (problems.length > 0) {
      console.error(`${problems.join("\n")}\nRun \`npm run gen\` and commit the result.`);
      return 1;
    }
    console.log(`generated code is up to date (${gen.files.size} modules)`);
    return 0;
  }

  const diff = await writeOutputs(gen.outDir, gen.files);
  for (const n of diff.missing) console.log(`wrote ${show(n)} (new)`);
  for (const n of diff.changed) console.log(`wrote ${show(n)}`);
  for (const n of diff.extra) console.log(`removed ${show(n)}`);
  const unchanged = gen.files.size - diff.missing.length - diff.changed.length;
  console.log(`${gen.files.size} modules, ${unchanged} unchanged`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(
      err instanceof GenErrors ? err.message : err instanceof Error ? err.message : String(err),
    );
    process.exit(1);
  },
);
