import fs from "node:fs/promises";
import path from "node:path";
import { sqlDir } from "../../src/db/migrate.ts";
import { connectClient } from "../../src/db/pool.ts";
import { Analyzer } from "./analyze.ts";
import { loadConfig } from "./config.ts";
import { withScratchDatabase } from "./database.ts";
import { type AnalyzedQuery, emitModule, generatedMarker } from "./emit.ts";
import { GenError, GenErrors } from "./errors.ts";
import { initSqlParser, type PreparedQuery, prepareQuery } from "./params.ts";
import { lowerFirst, parseQueryFile, type QueryBlock } from "./parse.ts";

export interface GenerateOptions {
  /** sqlc.yaml. */
  configFile: string;
  /** Override sql[0].queries. */
  queriesDir?: string;
  /** Override the codegen `out` directory. */
  outDir?: string;
  /** A server to create the scratch database on (else an embedded cluster is started). */
  databaseUrl?: string;
  /** Describe against this already-migrated database instead of a scratch one (tests). */
  migratedDatabaseUrl?: string;
  log?: (msg: string) => void;
}

export interface Generated {
  outDir: string;
  /** File name in outDir (`users.ts`) → contents. */
  files: Map<string, string>;
  /** Display path (relative to the repository root) of outDir. */
  outDisplay: string;
}

function display(root: string, file: string): string {
  const rel = path.relative(root, file);
  return (rel.startsWith("..") || path.isAbsolute(rel) ? file : rel).split(path.sep).join("/");
}

/** Parses and prepares every query in `files` (display path → contents); no database needed. */
export async function prepareQueryFiles(
  files: Map<string, string>,
): Promise<Map<string, PreparedQuery[]>> {
  await initSqlParser();
  const errors: GenError[] = [];
  const out = new Map<string, PreparedQuery[]>();
  const seen = new Map<string, QueryBlock>();
  for (const [file, source] of files) {
    let blocks: QueryBlock[];
    try {
      blocks = parseQueryFile(file, source);
    } catch (err) {
      if (!(err instanceof GenError)) throw err;
      errors.push(err);
      continue;
    }
    const prepared: PreparedQuery[] = [];
    for (const block of blocks) {
      const key = lowerFirst(block.name);
      const first = seen.get(key);
      if (first) {
        errors.push(
          new GenError(
            block.file,
            block.line,
            `duplicate query name ${block.name} (first defined at ${first.file}:${first.line})`,
          ),
        );
        continue;
      }
      seen.set(key, block);
      try {
        prepared.push(prepareQuery(block));
      } catch (err) {
        if (!(err instanceof GenError)) throw err;
        errors.push(err);
      }
    }
    out.set(file, prepared);
  }
  if (errors.length > 0) throw new GenErrors(errors);
  return out;
}

/** Generates every module in memory. Throws GenErrors listing every problem found. */
export async function generate(opts: GenerateOptions): Promise<Generated> {
  const log = opts.log ?? (() => {});
  const config = await loadConfig(opts.configFile);
  if (path.resolve(config.schemaDir) !== path.join(sqlDir, "schema")) {
    throw new Error(
      `sqlc.yaml's schema (${config.schemaDir}) is not the directory src/db/migrate.ts migrates (${path.join(sqlDir, "schema")})`,
    );
  }
  const queriesDir = opts.queriesDir ? path.resolve(opts.queriesDir) : config.queriesDir;
  const outDir = opts.outDir ? path.resolve(opts.outDir) : config.outDir;

  const names = (await fs.readdir(queriesDir)).filter((n) => n.endsWith(".sql")).sort();
  const sources = new Map<string, string>();
  const moduleOf = new Map<string, string>();
  for (const n of names) {
    const file = path.join(queriesDir, n);
    const shown = display(config.root, file);
    sources.set(shown, await fs.readFile(file, "utf8"));
    moduleOf.set(shown, `${n.slice(0, -".sql".length)}.ts`);
  }
  const prepared = await prepareQueryFiles(sources);

  const analyzed = new Map<string, AnalyzedQuery[]>();
  const total = [...prepared.values()].reduce((n, qs) => n + qs.length, 0);
  if (total > 0) {
    const run = async (url: string) => {
      const client = await connectClient(url, "pgchatd-gen");
      try {
        const analyzer = new Analyzer(client, log);
        const errors: GenError[] = [];
        for (const [file, queries] of prepared) {
          const results: AnalyzedQuery[] = [];
          for (const q of queries) {
            try {
              results.push(await analyzer.analyze(q));
            } catch (err) {
              if (!(err instanceof GenError)) throw err;
              errors.push(err);
            }
          }
          analyzed.set(file, results);
        }
        if (errors.length > 0) throw new GenErrors(errors);
      } finally {
        await client.end();
      }
    };
    if (opts.migratedDatabaseUrl) await run(opts.migratedDatabaseUrl);
    else await withScratchDatabase(run, { databaseUrl: opts.databaseUrl, log });
  }

  const files = new Map<string, string>();
  for (const [file, module] of moduleOf)
    files.set(module, emitModule(file, analyzed.get(file) ?? []));
  return { outDir, files, outDisplay: display(config.root, outDir) };
}

export interface OutputDiff {
  /** Generated modules with no file yet. */
  missing: string[];
  /** Files whose contents differ from what would be generated. */
  changed: string[];
  /** Generated files (by their header) whose query file is gone. */
  extra: string[];
}

/** Compares generated modules with the files in `outDir`. */
export async function diffOutputs(outDir: string, files: Map<string, string>): Promise<OutputDiff> {
  const diff: OutputDiff = { missing: [], changed: [], extra: [] };
  for (const [name, contents] of files) {
    const current = await fs.readFile(path.join(outDir, name), "utf8").catch(() => undefined);
    if (current === undefined) diff.missing.push(name);
    else if (current !== contents) diff.changed.push(name);
  }
  const existing = await fs.readdir(outDir).catch(() => [] as string[]);
  for (const name of existing.sort()) {
    if (!name.endsWith(".ts") || files.has(name)) continue;
    const text = await fs.readFile(path.join(outDir, name), "utf8").catch(() => "");
    if (text.startsWith(generatedMarker)) diff.extra.push(name);
  }
  return diff;
}

/** Writes new and changed modules and removes stale generated ones. */
export async function writeOutputs(
  outDir: string,
  files: Map<string, string>,
): Promise<OutputDiff> {
  const diff = await diffOutputs(outDir, files);
  await fs.mkdir(outDir, { recursive: true });
  for (const name of [...diff.missing, ...diff.changed]) {
    await fs.writeFile(path.join(outDir, name), files.get(name)!);
  }
  for (const name of diff.extra) await fs.rm(path.join(outDir, name));
  return diff;
}
