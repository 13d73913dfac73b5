import { beforeAll, describe, expect, it } from "vitest";
import { GenError } from "../../scripts/sqlc_gen_ts/errors.ts";
import {
  initSqlParser,
  ParamError,
  prepareQuery,
  rewriteParams,
} from "../../scripts/sqlc_gen_ts/params.ts";
import { parseQueryFile } from "../../scripts/sqlc_gen_ts/parse.ts";

beforeAll(async () => {
  await initSqlParser();
});

function prepare(source: string) {
  const [block] = parseQueryFile("sql/queries/q.sql", source);
  return prepareQuery(block!);
}

function prepareError(source: string): string {
  try {
    prepare(source);
  } catch (err) {
    if (err instanceof GenError) return err.message;
    throw err;
  }
  throw new Error("expected a GenError");
}

describe("parameter rewriting", () => {
  it("rewrites sqlc.arg(name), sqlc.arg('name') and @name to $n in order of first appearance", () => {
    const r = rewriteParams(
      "SELECT * FROM t WHERE a = sqlc.arg(alpha) AND b = sqlc.arg('beta') AND c = @gamma",
    );
    expect(r.text).toBe("SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $3");
    expect(r.params).toEqual([
      { name: "alpha", number: 1, nullable: false, index: 26 },
      { name: "beta", number: 2, nullable: false, index: 50 },
      { name: "gamma", number: 3, nullable: false, index: 75 },
    ]);
  });

  it("gives a name used again the same number", () => {
    const r = rewriteParams("SELECT @a, @b, sqlc.arg(a), @b::int");
    expect(r.text).toBe("SELECT $1, $2, $1, $2::int");
    expect(r.params.map((p) => p.name)).toEqual(["a", "b"]);
  });

  it("sqlc.narg makes the parameter nullable, also when the name is used with sqlc.arg or @ elsewhere", () => {
    const r = rewriteParams("SELECT sqlc.narg(x), @y, @x, sqlc.narg('y')");
    expect(r.text).toBe("SELECT $1, $2, $1, $2");
    expect(r.params).toMatchObject([
      { name: "x", number: 1, nullable: true },
      { name: "y", number: 2, nullable: true },
    ]);
  });

  it("accepts keywords as @names (@limit, @name)", () => {
    const r = rewriteParams("SELECT * FROM t WHERE name = @name LIMIT @limit");
    expect(r.text).toBe("SELECT * FROM t WHERE name = $1 LIMIT $2");
    expect(r.params.map((p) => p.name)).toEqual(["name", "limit"]);
  });

  it("folds unquoted names to lower case like SQL identifiers, keeps quoted ones", () => {
    expect(
      rewriteParams("SELECT sqlc.arg(UserID), SQLC.ARG('UserName')").params.map((p) => p.name),
    ).toEqual(["userid", "UserName"]);
  });

  it("leaves strings, comments, casts and the @ operator untouched", () => {
    const sql = [
      "SELECT '@a sqlc.arg(b)' AS s, -- @c sqlc.arg(d)",
      "  /* @e sqlc.narg(f) */ $$ @g $$ AS d, E'\\'@h' AS e,",
      "  x::text, @ -5 AS abs, tags @> ARRAY['x'] AS contains, @real",
      "FROM t",
    ].join("\n");
    const r = rewriteParams(sql);
    expect(r.params.map((p) => p.name)).toEqual(["real"]);
    expect(r.text).toBe(sql.replace("@real", "$1"));
  });

  it("keeps non-ASCII text intact around parameters", () => {
    const r = rewriteParams("SELECT 'héllo €' AS s, @after AS a, '✓' AS t");
    expect(r.text).toBe("SELECT 'héllo €' AS s, $1 AS a, '✓' AS t");
  });

  it("rejects positional parameters", () => {
    expect(() => rewriteParams("SELECT * FROM t WHERE id = $1")).toThrow(ParamError);
    expect(prepareError("-- name: GetX :one\nSELECT *\nFROM t WHERE id = $1")).toBe(
      "sql/queries/q.sql:3: positional parameter $1 is not supported: use sqlc.arg(name) or @name in query GetX",
    );
  });

  it("rejects other sqlc macros and malformed ones", () => {
    expect(
      prepareError("-- name: GetX :many\nSELECT * FROM t WHERE id = ANY(sqlc.slice(ids))"),
    ).toMatch(/^sql\/queries\/q\.sql:2: unsupported macro sqlc\.slice\(\.\.\.\)/);
    expect(prepareError("-- name: GetX :many\nSELECT sqlc.arg(a, b)")).toMatch(
      /^sql\/queries\/q\.sql:2: malformed sqlc\.arg\(\.\.\.\)/,
    );
  });

  it("maps positions in the rewritten text back to the source", () => {
    const r = rewriteParams("SELECT sqlc.arg(long_name), x");
    // "x" is at 28 in the source and at 11 in "SELECT $1, x".
    expect(r.text.indexOf("x")).toBe(11);
    expect(r.originalIndex(11)).toBe(28);
    expect(r.originalIndex(8)).toBe(7); // inside the placeholder: its start
  });
});

describe("statements", () => {
  it("parses the rewritten text into exactly one statement", () => {
    const q = prepare("-- name: GetX :one\nSELECT id FROM t WHERE id = @id;");
    expect(q.sql).toBe("-- name: GetX :one\nSELECT id FROM t WHERE id = $1");
    expect(Object.keys(q.stmt as object)).toEqual(["SelectStmt"]);
    expect(q.params).toMatchObject([{ name: "id", number: 1, nullable: false }]);
  });

  it("reports a syntax error at its file:line", () => {
    expect(prepareError("-- name: GetX :one\nSELECT id\nFROM WHERE x = @x")).toBe(
      'sql/queries/q.sql:3: syntax error at or near "WHERE" in query GetX',
    );
  });

  it("counts lines from the source even when a parameter spans lines", () => {
    expect(prepareError("-- name: GetX :one\nSELECT sqlc.arg(\n  x\n), y\nFROM WHERE")).toBe(
      'sql/queries/q.sql:5: syntax error at or near "WHERE" in query GetX',
    );
  });

  it("rejects more than one statement per query", () => {
    expect(prepareError("-- name: GetX :one\nSELECT 1 AS a;\nSELECT 2 AS b")).toBe(
      "sql/queries/q.sql:3: query GetX has 2 statements; put each in its own query",
    );
  });

  it("rejects a query without a statement", () => {
    expect(prepareError("-- name: GetX :one\n-- nothing")).toBe(
      "sql/queries/q.sql:1: query GetX has no SQL statement",
    );
  });
});
