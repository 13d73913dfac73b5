import fs from "node:fs/promises";
import path from "node:path";
import { parse as parseYaml } from "yaml";

/** The parts of sqlc.yaml the generator uses, resolved to absolute paths. */
export interface GenConfig {
  /** Repository root (the directory holding sqlc.yaml). */
  root: string;
  /** `sql[0].schema`: the migrations directory. */
  schemaDir: string;
  /** `sql[0].queries`: the directory of query files. */
  queriesDir: string;
  /** `sql[0].codegen[0].out`: where the generated modules go. */
  outDir: string;
}

interface SqlcYaml {
  sql?: {
    engine?: string;
    schema?: string | string[];
    queries?: string | string[];
    codegen?: { out?: string }[];
  }[];
}

function single(value: string | string[] | undefined, what: string, file: string): string {
  const v = Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
  if (typeof v !== "string" || v === "") {
    throw new Error(`${file}: sql[0].${what} must be one path`);
  }
  return v;
}

/** Reads `sqlc.yaml` (or another sqlc v2 config) and resolves its paths against its directory. */
export async function loadConfig(configFile: string): Promise<GenConfig> {
  const text = await fs.readFile(configFile, "utf8");
  const doc = parseYaml(text) as SqlcYaml | null;
  const rel = path.relative(process.cwd(), configFile) || configFile;
  const sql = doc?.sql?.[0];
  if (!sql) throw new Error(`${rel}: no sql[0] entry`);
  if (sql.engine !== undefined && sql.engine !== "postgresql") {
    throw new Error(`${rel}: sql[0].engine is ${sql.engine}; only postgresql is supported`);
  }
  const root = path.dirname(path.resolve(configFile));
  const out = sql.codegen?.[0]?.out;
  if (typeof out !== "string" || out === "")
    throw new Error(`${rel}: sql[0].codegen[0].out is missing`);
  return {
    root,
    schemaDir: path.resolve(root, single(sql.schema, "schema", rel)),
    queriesDir: path.resolve(root, single(sql.queries, "queries", rel)),
    outDir: path.resolve(root, out),
  };
}
