import { describe, expect, it } from "vitest";
import { GenError, GenErrors } from "../../scripts/sqlc_gen_ts/errors.ts";
import { prepareQueryFiles } from "../../scripts/sqlc_gen_ts/generate.ts";
import { lowerFirst, parseQueryFile } from "../../scripts/sqlc_gen_ts/parse.ts";

const file = "sql/queries/users.sql";

function errorOf(fn: () => unknown): GenError {
  try {
    fn();
  } catch (err) {
    if (err instanceof GenError) return err;
    throw err;
  }
  throw new Error("expected a GenError");
}

describe("query file headers", () => {
  it("splits a file into one query per `-- name:` header, with the header's line", () => {
    const source = [
      "-- Users.", // 1
      "", // 2
      "-- name: GetUserByID :one", // 3
      "SELECT id, username FROM users WHERE id = @id;", // 4
      "", // 5
      "-- name: ListUsers :many", // 6
      "-- Newest first.", // 7
      "SELECT id FROM users", // 8
      "ORDER BY created_at DESC;", // 9
      "", // 10
      "-- name: DeleteUser :exec", // 11
      "DELETE FROM users WHERE id = @id", // 12
      "-- name: TouchUsers :execrows", // 13
      "UPDATE users SET updated_at = now()", // 14
    ].join("\n");
    const blocks = parseQueryFile(file, source);
    expect(blocks.map((b) => [b.name, b.command, b.line])).toEqual([
      ["GetUserByID", ":one", 3],
      ["ListUsers", ":many", 6],
      ["DeleteUser", ":exec", 11],
      ["TouchUsers", ":execrows", 13],
    ]);
    expect(blocks[0]!.text).toBe(
      "-- name: GetUserByID :one\nSELECT id, username FROM users WHERE id = @id",
    );
    // Comment lines right under the header stay; the trailing `;` goes.
    expect(blocks[1]!.text).toBe(
      "-- name: ListUsers :many\n-- Newest first.\nSELECT id FROM users\nORDER BY created_at DESC",
    );
  });

  it("strips trailing whitespace, a trailing `;` and comment lines that introduce the next query", () => {
    const source =
      "-- name: A :one\nSELECT 1 AS a;   \n\n-- The next query explains itself.\n\n-- name: B :one\nSELECT 2 AS b\n\n";
    const [a, b] = parseQueryFile(file, source);
    expect(a!.text).toBe("-- name: A :one\nSELECT 1 AS a");
    expect(b!.text).toBe("-- name: B :one\nSELECT 2 AS b");
  });

  it("normalises the header line (the test coverage check reads `-- name: X :cmd`)", () => {
    const [q] = parseQueryFile(file, "--   name:  GetX   :one  \nSELECT 1 AS x");
    expect(q!.text.split("\n")[0]).toBe("-- name: GetX :one");
  });

  it("accepts CRLF line endings", () => {
    const [q] = parseQueryFile(file, "-- name: GetX :one\r\nSELECT 1 AS x;\r\n");
    expect(q!.text).toBe("-- name: GetX :one\nSELECT 1 AS x");
  });

  it("rejects an unsupported command, naming file:line and the supported ones", () => {
    const err = errorOf(() =>
      parseQueryFile(
        file,
        "-- name: GetX :one\nSELECT 1 AS x;\n\n-- name: CopyX :copyfrom\nINSERT INTO t (a) VALUES (@a);",
      ),
    );
    expect(err.message).toBe(
      "sql/queries/users.sql:4: unsupported command :copyfrom in query CopyX (supported: :one, :many, :exec, :execrows)",
    );
  });

  it("rejects :batchexec like any other command outside the subset", () => {
    expect(errorOf(() => parseQueryFile(file, "-- name: B :batchexec\nSELECT 1")).message).toMatch(
      /^sql\/queries\/users\.sql:1: unsupported command :batchexec in query B/,
    );
  });

  it("rejects a malformed header, naming file:line", () => {
    expect(errorOf(() => parseQueryFile(file, "\n-- name: GetX\nSELECT 1")).message).toMatch(
      /^sql\/queries\/users\.sql:2: malformed query header/,
    );
    expect(errorOf(() => parseQueryFile(file, "-- name: GetX one\nSELECT 1")).message).toMatch(
      /^sql\/queries\/users\.sql:1: malformed query header/,
    );
    expect(errorOf(() => parseQueryFile(file, "-- name: Get-X :one\nSELECT 1")).message).toMatch(
      /^sql\/queries\/users\.sql:1: invalid query name "Get-X"/,
    );
  });

  it("rejects SQL before the first header", () => {
    expect(
      errorOf(() => parseQueryFile(file, "-- fine\nSELECT 1;\n-- name: A :one\nSELECT 2")).message,
    ).toBe('sql/queries/users.sql:2: SQL before the first "-- name:" header');
  });

  it("an empty file has no queries", () => {
    expect(parseQueryFile(file, "")).toEqual([]);
    expect(parseQueryFile(file, "-- nothing here yet\n")).toEqual([]);
  });

  it("function names are the query name with a lower-case first letter", () => {
    expect(lowerFirst("GetUserByID")).toBe("getUserByID");
    expect(lowerFirst("InsertAPIKey")).toBe("insertAPIKey");
  });
});

describe("query files together", () => {
  it("rejects a query name used twice across files, naming both places", async () => {
    const files = new Map([
      ["sql/queries/a.sql", "-- name: GetX :one\nSELECT 1 AS x"],
      [
        "sql/queries/b.sql",
        "-- name: Other :one\nSELECT 1 AS y;\n\n-- name: GetX :one\nSELECT 2 AS x",
      ],
    ]);
    const err = await prepareQueryFiles(files).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GenErrors);
    expect((err as GenErrors).message).toBe(
      "sql/queries/b.sql:4: duplicate query name GetX (first defined at sql/queries/a.sql:1)",
    );
  });

  it("reports every broken query, not just the first", async () => {
    const files = new Map([
      [
        "sql/queries/a.sql",
        "-- name: A :one\nSELECT $1 AS a;\n\n-- name: B :one\nSELECT FROM WHERE",
      ],
      ["sql/queries/c.sql", "-- name: C :copyfrom\nSELECT 1"],
    ]);
    const err = (await prepareQueryFiles(files).catch((e: unknown) => e)) as GenErrors;
    expect(err.errors.map((e) => `${e.file}:${e.line}`)).toEqual([
      "sql/queries/a.sql:2",
      "sql/queries/a.sql:5",
      "sql/queries/c.sql:1",
    ]);
  });
});
