import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

/*
 * "Every generated query is exercised by some test." Each test file records the names of the
 * generated queries its database connections ran (the `-- name: X` header the generator keeps at
 * the top of every query text); the global teardown compares the union with src/generated.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const nameHeader = /^-- name: (\w+) :/;

export function queryNameOf(text: string): string | undefined {
  return nameHeader.exec(text)?.[1];
}

export async function writeUsage(dir: string, testFile: string, names: Iterable<string>) {
  const file = path.join(dir, `${randomBytes(6).toString("hex")}.json`);
  await fs.writeFile(
    file,
    JSON.stringify({ testFile: path.relative(root, testFile), names: [...names] }),
  );
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

export async function generatedQueryNames(): Promise<string[]> {
  const names: string[] = [];
  const dir = path.join(root, "src/generated");
  for (const file of (await fs.readdir(dir)).filter((f) => f.endsWith(".ts"))) {
    const text = await fs.readFile(path.join(dir, file), "utf8");
    for (const m of text.matchAll(/^export const \w+Query = `-- name: (\w+) :/gm))
      names.push(m[1]!);
  }
  return names.sort();
}

export async function checkQueryCoverage(dir: string): Promise<void> {
  const used = new Set<string>();
  const ranFiles = new Set<string>();
  for (const f of await fs.readdir(dir)) {
    const { testFile, names } = JSON.parse(await fs.readFile(path.join(dir, f), "utf8")) as {
      testFile: string;
      names: string[];
    };
    ranFiles.add(testFile);
    for (const n of names) used.add(n);
  }
  await fs.rm(dir, { recursive: true, force: true });
  const allFiles = (await walk(path.join(root, "test")))
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => path.relative(root, f));
  const missedFiles = allFiles.filter((f) => !ranFiles.has(f));
  if (missedFiles.length > 0) {
    // A filtered run (one file, -t) cannot judge coverage; only the whole suite can.
    console.log(`query coverage not checked: ${missedFiles.length} test files did not run`);
    return;
  }
  const generated = await generatedQueryNames();
  const unused = generated.filter((n) => !used.has(n));
  if (unused.length > 0) {
    throw new Error(
      `generated queries never run by any test: ${unused.join(", ")}. Test them, or remove them from sql/queries.`,
    );
  }
  console.log(`query coverage: all ${generated.length} generated queries ran in tests`);
}
