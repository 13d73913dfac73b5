import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Analyzer } from "../../scripts/sqlc_gen_ts/analyze.ts";
import { describeStatement } from "../../scripts/sqlc_gen_ts/describe.ts";
import { GenError, GenErrors } from "../../scripts/sqlc_gen_ts/errors.ts";
import { diffOutputs, generate, writeOutputs } from "../../scripts/sqlc_gen_ts/generate.ts";
import { initSqlParser, prepareQuery } from "../../scripts/sqlc_gen_ts/params.ts";
import { parseQueryFile } from "../../scripts/sqlc_gen_ts/parse.ts";
import { connectClient } from "../../src/db/pool.ts";
import { type TestDb, testDb } from "../setup/db.ts";

/*
 * The generator against a real, migrated database: Describe, type lookup and nullability. The
 * tables these tests need are created in this file's private database.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const fixtures = `
CREATE TYPE gen_mood AS ENUM ('happy', 'sad', 'it''s complicated');
CREATE DOMAIN gen_positive AS integer CHECK (VALUE > 0);
CREATE TABLE gen_parents (
  id integer PRIMARY KEY,
  name text NOT NULL,
  note text,
  mood gen_mood NOT NULL DEFAULT 'happy',
  moods gen_mood[] NOT NULL DEFAULT '{}',
  tags text[] NOT NULL DEFAULT '{}',
  big bigint,
  amount numeric NOT NULL DEFAULT 0,
  born date,
  seen_at timestamptz NOT NULL DEFAULT now(),
  data jsonb,
  blob bytea,
  score gen_positive
);
CREATE TABLE gen_children (
  id integer PRIMARY KEY,
  parent_id integer NOT NULL REFERENCES gen_parents (id),
  label text NOT NULL
);
CREATE VIEW gen_family AS
  SELECT p.id, p.name, c.label FROM gen_parents p LEFT JOIN gen_children c ON c.parent_id = p.id;
INSERT INTO gen_parents (id, name, note, mood, moods, tags, big, amount, born, data, blob, score)
  VALUES (1, 'one', NULL, 'sad', '{happy,sad}', '{a,b}', 9007199254740991, 1.25, '2026-01-02',
          '{"k": [1]}', '\\x0102', 7);
INSERT INTO gen_children (id, parent_id, label) VALUES (10, 1, 'ten');
`;

let db: TestDb;
let client: pg.Client;
let analyzer: Analyzer;
const notes: string[] = [];

beforeAll(async () => {
  await initSqlParser();
  db = await testDb();
  client = await connectClient(db.url, "pgchatd-gen-test");
  await client.query(fixtures);
  analyzer = new Analyzer(client, (msg) => notes.push(msg));
});

afterAll(async () => {
  await client?.end();
});

async function analyze(sql: string, command = ":many") {
  const [block] = parseQueryFile("sql/queries/test.sql", `-- name: Q ${command}\n${sql}`);
  return analyzer.analyze(prepareQuery(block!));
}

/** Result column name → TypeScript type. */
async function rowType(sql: string): Promise<Record<string, string>> {
  const q = await analyze(sql);
  return Object.fromEntries(q.columns.map((c) => [c.name, c.type]));
}

async function analyzeError(sql: string, command = ":many"): Promise<string> {
  try {
    await analyze(sql, command);
  } catch (err) {
    if (err instanceof GenError) return err.message;
    throw err;
  }
  throw new Error("expected a GenError");
}

describe("describing statements", () => {
  it("Parse/Describe reports parameter types and result columns without running the statement", async () => {
    const d = await describeStatement(
      client,
      "DELETE FROM gen_children WHERE id = $1 RETURNING id, label",
    );
    expect(d.paramTypes).toEqual([23]);
    expect(d.fields.map((f) => [f.name, f.dataTypeID, f.columnID])).toEqual([
      ["id", 23, 1],
      ["label", 25, 3],
    ]);
    expect(d.fields[0]!.tableID).toBeGreaterThan(0);
    // Nothing ran: the row is still there, and the connection is still usable.
    const { rows } = await client.query("SELECT count(*) AS n FROM gen_children");
    expect(rows[0].n).toBe(1);
  });

  it("a statement without rows describes no columns", async () => {
    expect((await describeStatement(client, "UPDATE gen_parents SET note = $1")).fields).toEqual(
      [],
    );
  });

  it("parameters get their described types; sqlc.narg makes one nullable", async () => {
    const q = await analyze(
      "SELECT id FROM gen_parents WHERE id = @id AND (sqlc.narg(name)::text IS NULL OR name = sqlc.narg(name)) AND mood = @mood AND score = @score",
    );
    expect(q.params).toEqual([
      { name: "id", type: "number" },
      { name: "name", type: "string | null" },
      { name: "mood", type: '"happy" | "sad" | "it\'s complicated"' },
      { name: "score", type: "number" }, // a domain is passed as its base type
    ]);
  });

  it("a server error names file:line of the offending token", async () => {
    expect(await analyzeError("SELECT id,\n  zzz\nFROM gen_parents")).toBe(
      'sql/queries/test.sql:3: column "zzz" does not exist in query Q',
    );
  });

  it("a parameter whose type the server cannot determine is an error (add a cast)", async () => {
    expect(await analyzeError("SELECT id FROM gen_parents\nWHERE @flag IS NULL")).toBe(
      "sql/queries/test.sql:3: could not determine data type of parameter $1 in query Q (cast it, e.g. @flag::text)",
    );
  });

  it(":one and :many need a statement that returns columns", async () => {
    expect(await analyzeError("UPDATE gen_parents SET note = 'x'", ":one")).toBe(
      "sql/queries/test.sql:1: query Q is :one but its statement returns no columns; use :exec or :execrows (or add RETURNING)",
    );
    const exec = await analyze("UPDATE gen_parents SET note = note WHERE id = @id", ":exec");
    expect(exec.columns).toEqual([]);
  });

  it("two result columns with the same name are an error telling to alias them", async () => {
    expect(
      await analyzeError(
        "SELECT p.id, c.id FROM gen_parents p JOIN gen_children c ON c.parent_id = p.id",
      ),
    ).toBe(
      'sql/queries/test.sql:1: query Q returns more than one column named "id"; alias them (AS other_name)',
    );
  });
});

describe(":one queries that always return one row", () => {
  const one = async (sql: string) => (await analyze(sql, ":one")).alwaysOneRow === true;

  it("a SELECT without FROM, or FROM a function returning one row, returns the row, not | null", async () => {
    expect(await one("SELECT now() AS at")).toBe(true);
    expect(await one("SELECT EXISTS (SELECT 1 FROM gen_parents WHERE id = @id) AS found")).toBe(
      true,
    );
    expect(await one("SELECT p.x FROM make_interval(secs => 1) AS p(x)")).toBe(true);
    expect(
      await one(
        "INSERT INTO gen_children (id, parent_id, label) VALUES (@id, 1, 'x') RETURNING id",
      ),
    ).toBe(true);
    expect(
      await one(
        "INSERT INTO gen_children (id, parent_id, label) VALUES (@id, 1, 'x') ON CONFLICT (id) DO UPDATE SET label = 'y' RETURNING id",
      ),
    ).toBe(true);
  });

  it("anything that may return no row keeps | null", async () => {
    expect(await one("SELECT id FROM gen_parents WHERE id = @id")).toBe(false);
    expect(await one("SELECT now() AS at WHERE @flag::boolean")).toBe(false);
    expect(await one("SELECT now() AS at LIMIT @n")).toBe(false);
    expect(await one("SELECT unnest(@ids::int[]) AS id")).toBe(false);
    expect(await one("SELECT x FROM generate_series(1, @n) AS x")).toBe(false);
    expect(
      await one(
        "INSERT INTO gen_children (id, parent_id, label) VALUES (@id, 1, 'x') ON CONFLICT (id) DO NOTHING RETURNING id",
      ),
    ).toBe(false);
    expect(
      await one("INSERT INTO gen_children (id, parent_id, label) SELECT @id, 1, 'x' RETURNING id"),
    ).toBe(false);
    expect(await one("WITH x AS (SELECT 1 AS v) SELECT v FROM x")).toBe(false);
  });
});

describe("nullability against the database", () => {
  it("table columns keep their NOT NULL", async () => {
    expect(await rowType("SELECT id, name, note FROM gen_parents")).toEqual({
      id: "number",
      name: "string",
      note: "string | null",
    });
  });

  it("a LEFT JOIN makes the right side's columns nullable", async () => {
    expect(
      await rowType(
        "SELECT p.id, p.name, c.id AS child_id, c.label FROM gen_parents p LEFT JOIN gen_children c ON c.parent_id = p.id",
      ),
    ).toEqual({ id: "number", name: "string", child_id: "number | null", label: "string | null" });
  });

  it("COALESCE with a non-null argument is not null", async () => {
    expect(
      await rowType(
        "SELECT coalesce(p.note, '') AS note, coalesce(c.label, p.note) AS either FROM gen_parents p LEFT JOIN gen_children c ON c.parent_id = p.id",
      ),
    ).toEqual({ note: "string", either: "string | null" });
  });

  it("count(*) is never null (and a bigint); max() can be null", async () => {
    expect(await rowType("SELECT count(*) AS n, max(id) AS top FROM gen_parents")).toEqual({
      n: "number",
      top: "number | null",
    });
  });

  it("columns RETURNING from a data-modifying CTE keep their NOT NULL", async () => {
    expect(
      await rowType(
        "WITH ins AS (INSERT INTO gen_children (id, parent_id, label) VALUES (@id, @parent_id, @label) RETURNING id, label)\nSELECT ins.id, ins.label, p.note FROM ins JOIN gen_parents p ON p.id = @parent_id",
      ),
    ).toEqual({ id: "number", label: "string", note: "string | null" });
  });

  it("a view's columns are inferred from its definition", async () => {
    expect(await rowType("SELECT * FROM gen_family")).toEqual({
      id: "number",
      name: "string",
      label: "string | null",
    });
  });

  it("when inference cannot follow, each column falls back to its table column's NOT NULL (and a note says so)", async () => {
    notes.length = 0;
    expect(await rowType("SELECT * FROM gen_children c, jsonb_each('{}')")).toEqual({
      id: "number",
      parent_id: "number",
      label: "string",
      key: "string | null",
      value: "any",
    });
    expect(notes).toEqual([
      expect.stringMatching(/^sql\/queries\/test\.sql:1: note: cannot infer nullability/),
    ]);
  });
});

describe("types against the database", () => {
  it("an enum is a union of its labels in order; an enum array arrives as text", async () => {
    expect(await rowType("SELECT mood, moods FROM gen_parents")).toEqual({
      mood: '"happy" | "sad" | "it\'s complicated"',
      moods: "string",
    });
  });

  it("arrays of types the pool parses are arrays", async () => {
    expect(
      await rowType(
        "SELECT tags, ARRAY[id] AS ids, ARRAY[big] AS bigs, ARRAY[seen_at] AS times FROM gen_parents",
      ),
    ).toEqual({ tags: "string[]", ids: "number[]", bigs: "number[]", times: "string[]" });
  });

  it("scalars map as the pool parses them", async () => {
    expect(
      await rowType("SELECT big, amount, born, seen_at, data, blob, score FROM gen_parents"),
    ).toEqual({
      big: "number | null",
      amount: "string",
      born: "Date | null",
      seen_at: "string",
      data: "any",
      blob: "Buffer | null",
      score: "number | null",
    });
  });

  it("result types match the values the pool actually returns", async () => {
    const sql =
      "SELECT id, name, note, mood, moods, tags, big, amount, born, seen_at, data, blob, score, ARRAY[big] AS bigs, ARRAY[amount] AS amounts, count(*) OVER () AS n, (id = 1) AS b FROM gen_parents WHERE id = 1";
    const q = await analyze(sql);
    const { rows } = await db.pool.query({ text: sql, rowMode: "array" });
    const row = rows[0] as unknown[];
    const matches = (type: string, v: unknown): boolean => {
      const alternatives = type.split(" | ");
      if (v === null) return alternatives.includes("null");
      if (type === "any") return true;
      const t = alternatives.filter((a) => a !== "null").join(" | ");
      if (t.endsWith("[]")) {
        const elem = t.slice(0, -2).replace(/^\((.*)\)$/, "$1");
        return Array.isArray(v) && v.every((e) => matches(elem, e));
      }
      if (t === "number" || t === "string" || t === "boolean") return typeof v === t;
      if (t === "Date") return v instanceof Date;
      if (t === "Buffer") return Buffer.isBuffer(v);
      if (t.startsWith('"')) return alternatives.map((a) => JSON.parse(a)).includes(v);
      return false;
    };
    const mismatches = q.columns
      .map((c, i) => ({ column: c.name, type: c.type, value: row[i] }))
      .filter((m) => !matches(m.type, m.value));
    expect(mismatches).toEqual([]);
  });
});

describe("generating modules", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-gen-test-"));
    await fs.mkdir(path.join(dir, "queries"));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("writes one module per query file, detects drift, removes stale modules, and the code runs", async () => {
    const queries = path.join(dir, "queries");
    const out = path.join(dir, "out");
    await fs.writeFile(
      path.join(queries, "gen_parents.sql"),
      [
        "-- name: GetGenParent :one",
        "SELECT id, name, note, mood FROM gen_parents WHERE id = @id;",
        "",
        "-- name: ListGenFamily :many",
        "SELECT * FROM gen_family ORDER BY id, label;",
        "",
        "-- name: TouchGenParents :execrows",
        "UPDATE gen_parents SET note = sqlc.narg(note) WHERE id = ANY(@ids::int[]);",
      ].join("\n"),
    );
    const opts = {
      configFile: path.join(root, "sqlc.yaml"),
      queriesDir: queries,
      outDir: out,
      migratedDatabaseUrl: db.url,
    };
    const gen = await generate(opts);
    expect([...gen.files.keys()]).toEqual(["gen_parents.ts"]);

    await fs.mkdir(out);
    await fs.writeFile(
      path.join(out, "gone.ts"),
      "// Code generated by scripts/sqlc_gen_ts from gone.sql. DO NOT EDIT.\n",
    );
    await fs.writeFile(path.join(out, "handwritten.ts"), "export const x = 1;\n");
    expect(await diffOutputs(out, gen.files)).toEqual({
      missing: ["gen_parents.ts"],
      changed: [],
      extra: ["gone.ts"],
    });
    await writeOutputs(out, gen.files);
    expect((await fs.readdir(out)).sort()).toEqual(["gen_parents.ts", "handwritten.ts"]);
    expect(await diffOutputs(out, (await generate(opts)).files)).toEqual({
      missing: [],
      changed: [],
      extra: [],
    });

    // Deterministic: a second run writes nothing.
    const { mtimeMs } = await fs.stat(path.join(out, "gen_parents.ts"));
    expect(await writeOutputs(out, (await generate(opts)).files)).toEqual({
      missing: [],
      changed: [],
      extra: [],
    });
    expect((await fs.stat(path.join(out, "gen_parents.ts"))).mtimeMs).toBe(mtimeMs);

    await fs.appendFile(path.join(out, "gen_parents.ts"), "// edited\n");
    expect((await diffOutputs(out, gen.files)).changed).toEqual(["gen_parents.ts"]);
    await writeOutputs(out, gen.files);

    const mod = await import(path.join(out, "gen_parents.ts"));
    expect(await mod.getGenParent(db.pool, { id: 1 })).toEqual({
      id: 1,
      name: "one",
      note: null,
      mood: "sad",
    });
    expect(await mod.getGenParent(db.pool, { id: 404 })).toBeNull();
    expect(await mod.listGenFamily(db.pool)).toEqual([{ id: 1, name: "one", label: "ten" }]);
    expect(await mod.touchGenParents(db.pool, { note: null, ids: [1, 404] })).toBe(1);
  });

  it("reports every query the server rejects, with file:line", async () => {
    const queries = path.join(dir, "bad");
    await fs.mkdir(queries);
    await fs.writeFile(
      path.join(queries, "bad.sql"),
      "-- name: A :one\nSELECT zzz FROM gen_parents;\n\n-- name: B :many\nSELECT id FROM no_such_table;\n",
    );
    const err = await generate({
      configFile: path.join(root, "sqlc.yaml"),
      queriesDir: queries,
      outDir: path.join(dir, "bad-out"),
      migratedDatabaseUrl: db.url,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GenErrors);
    expect((err as GenErrors).message.split("\n")).toEqual([
      `${path.join(queries, "bad.sql")}:2: column "zzz" does not exist in query A`,
      `${path.join(queries, "bad.sql")}:5: relation "no_such_table" does not exist in query B`,
    ]);
  });

  it("the committed src/generated matches sql/queries (what `npm run gen:check` checks)", async () => {
    const gen = await generate({
      configFile: path.join(root, "sqlc.yaml"),
      migratedDatabaseUrl: db.url,
    });
    expect(await diffOutputs(gen.outDir, gen.files)).toEqual({
      missing: [],
      changed: [],
      extra: [],
    });
  });
});
