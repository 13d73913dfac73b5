import { parseSync } from "libpg-query";
import { beforeAll, describe, expect, it } from "vitest";
import {
  type Col,
  inferColumns,
  type RelationSource,
  resultNullability,
  Scope,
  Unsupported,
} from "../../scripts/sqlc_gen_ts/infer.ts";
import { initSqlParser } from "../../scripts/sqlc_gen_ts/params.ts";

/*
 * Nullability inference on parse trees alone, against a fake catalog. (describe.test.ts runs the
 * same rules against a real database.)
 */

const cols = (spec: string): Col[] =>
  spec.split(" ").map((c) => ({ name: c.replace("?", ""), notNull: !c.endsWith("?") }));

const tables: Record<string, Col[]> = {
  users: cols("id name email?"),
  posts: cols("id user_id title body?"),
  tags: cols("post_id tag"),
  post_stats: cols("post_id views?"),
};

const relations: RelationSource = {
  relation: (schema, name) =>
    schema === undefined || schema === "public" ? tables[name] : undefined,
};

beforeAll(async () => {
  await initSqlParser();
});

function stmtOf(sql: string): unknown {
  return (parseSync(sql) as { stmts: { stmt: unknown }[] }).stmts[0]!.stmt;
}

/** The inferred columns as `name` (not null) or `name?` (nullable). */
function infer(sql: string, nullableParams: number[] = []): string[] {
  const scope = Scope.root({ relations, nullableParams: new Set(nullableParams) });
  return inferColumns(stmtOf(sql), scope).map((c) => `${c.name}${c.notNull ? "" : "?"}`);
}

describe("columns from tables", () => {
  it("keep their table's NOT NULL", () => {
    expect(infer("SELECT id, email, u.name FROM users u")).toEqual(["id", "email?", "name"]);
  });

  it("* and alias.* expand in table and column order", () => {
    expect(infer("SELECT * FROM users")).toEqual(["id", "name", "email?"]);
    expect(infer("SELECT p.*, u.name FROM posts p JOIN users u ON u.id = p.user_id")).toEqual([
      "id",
      "user_id",
      "title",
      "body?",
      "name",
    ]);
    expect(infer("SELECT * FROM users u, tags")).toEqual([
      "id",
      "name",
      "email?",
      "post_id",
      "tag",
    ]);
  });

  it("schema-qualified names resolve too", () => {
    expect(infer("SELECT public.users.id, u.email FROM public.users, public.users u")).toEqual([
      "id",
      "email?",
    ]);
  });

  it("an alias column list renames columns", () => {
    expect(infer("SELECT * FROM users AS u(a, b)")).toEqual(["a", "b", "email?"]);
  });
});

describe("joins", () => {
  it("a LEFT JOIN makes the right side's columns nullable", () => {
    expect(
      infer(
        "SELECT u.id, u.name, p.id, p.title FROM users u LEFT JOIN posts p ON p.user_id = u.id",
      ),
    ).toEqual(["id", "name", "id?", "title?"]);
  });

  it("a RIGHT JOIN makes the left side's columns nullable", () => {
    expect(
      infer("SELECT u.name, p.title FROM users u RIGHT JOIN posts p ON p.user_id = u.id"),
    ).toEqual(["name?", "title"]);
  });

  it("a FULL JOIN makes both sides nullable", () => {
    expect(
      infer("SELECT u.name, p.title FROM users u FULL JOIN posts p ON p.user_id = u.id"),
    ).toEqual(["name?", "title?"]);
  });

  it("an outer join makes every relation of a nested join on its nullable side nullable", () => {
    expect(
      infer(
        "SELECT u.name, p.title, t.tag FROM users u LEFT JOIN (posts p JOIN tags t ON t.post_id = p.id) ON p.user_id = u.id",
      ),
    ).toEqual(["name", "title?", "tag?"]);
    expect(
      infer(
        "SELECT u.name, p.title, t.tag FROM users u JOIN posts p ON p.user_id = u.id LEFT JOIN tags t ON t.post_id = p.id",
      ),
    ).toEqual(["name", "title", "tag?"]);
  });

  it("* over an outer join expands the nullable side as nullable", () => {
    expect(infer("SELECT * FROM users u LEFT JOIN tags t ON true")).toEqual([
      "id",
      "name",
      "email?",
      "post_id?",
      "tag?",
    ]);
  });

  it("JOIN USING puts the merged columns first in * and keeps them non-null on the preserved side", () => {
    expect(infer("SELECT * FROM tags JOIN post_stats USING (post_id)")).toEqual([
      "post_id",
      "tag",
      "views?",
    ]);
    expect(infer("SELECT * FROM tags LEFT JOIN post_stats USING (post_id)")).toEqual([
      "post_id",
      "tag",
      "views?",
    ]);
    expect(infer("SELECT post_id, tag FROM tags RIGHT JOIN post_stats USING (post_id)")).toEqual([
      "post_id",
      "tag?",
    ]);
    expect(infer("SELECT * FROM tags NATURAL JOIN post_stats")).toEqual([
      "post_id",
      "tag",
      "views?",
    ]);
  });
});

describe("expressions", () => {
  it("COALESCE is not null when any argument is not null", () => {
    expect(
      infer(
        "SELECT coalesce(email, '') AS a, coalesce(email, p.body) AS b, coalesce(p.title, email) AS c FROM users, posts p",
      ),
    ).toEqual(["a", "b?", "c"]);
  });

  it("count() is never null; other aggregates can be", () => {
    expect(
      infer(
        "SELECT count(*) AS n, count(email) AS e, max(id) AS m, sum(id) AS s, array_agg(id) AS a FROM users",
      ),
    ).toEqual(["n", "e", "m?", "s?", "a?"]);
  });

  it("constants, casts and parameters: NULL and sqlc.narg parameters are nullable", () => {
    expect(
      infer(
        "SELECT 1 AS one, 'x'::text AS x, NULL::int AS nothing, $1::int AS arg, $2::int AS narg",
        [2],
      ),
    ).toEqual(["one", "x", "nothing?", "arg", "narg?"]);
  });

  it("functions that never return NULL, and strict functions of non-null arguments, are not null", () => {
    expect(
      infer(
        "SELECT now() AS t, gen_random_uuid() AS u, jsonb_build_object('a', email) AS j, lower(name) AS l, lower(email) AS le, length(name) AS n, array_length(ARRAY[1], 1) AS al, row_number() OVER () AS r, my_func(id) AS f FROM users",
      ),
    ).toEqual(["t", "u", "j", "l", "le?", "n", "al?", "r", "f?"]);
  });

  it("operators are not null when all operands are; IS [NOT] DISTINCT FROM and IS NULL never are null", () => {
    expect(
      infer(
        "SELECT id + 1 AS a, email || 'x' AS b, name LIKE 'a%' AS c, id IN (1, 2) AS d, id BETWEEN 1 AND 2 AS e, email IS DISTINCT FROM name AS f, email IS NULL AS g, (email = name) IS TRUE AS h, NOT (id = 1 AND name = 'x') AS i, (id = 1 OR email = 'x') AS j FROM users",
      ),
    ).toEqual(["a", "b?", "c", "d", "e", "f", "g", "h", "i", "j?"]);
  });

  it("NULLIF and = ANY(array) can be null", () => {
    expect(infer("SELECT nullif(name, '') AS a, id = ANY(ARRAY[1]) AS b FROM users")).toEqual([
      "a?",
      "b?",
    ]);
  });

  it("CASE is not null only with an ELSE and all branches not null", () => {
    expect(
      infer(
        "SELECT CASE WHEN id = 1 THEN name ELSE 'x' END AS a, CASE WHEN id = 1 THEN name END AS b, CASE WHEN id = 1 THEN email ELSE name END AS c FROM users",
      ),
    ).toEqual(["a", "b?", "c?"]);
  });

  it("EXISTS and ARRAY(subquery) are never null; a scalar subquery can be", () => {
    expect(
      infer(
        "SELECT EXISTS (SELECT 1 FROM posts) AS e, ARRAY(SELECT id FROM posts) AS a, (SELECT id FROM posts LIMIT 1) AS s FROM users",
      ),
    ).toEqual(["e", "a", "s?"]);
  });

  it("CURRENT_TIMESTAMP, ROW(...) and ARRAY[...] are not null; unknown expressions are nullable", () => {
    expect(
      infer(
        "SELECT CURRENT_TIMESTAMP AS t, ROW(1, 2) AS r, ARRAY[email] AS a, (ARRAY[id])[1] AS i FROM users",
      ),
    ).toEqual(["t", "r", "a", "i?"]);
  });

  it("a column of an enclosing query resolves through the scopes (LATERAL)", () => {
    expect(
      infer("SELECT s.n, s.e FROM users u, LATERAL (SELECT u.name AS n, u.email AS e) s"),
    ).toEqual(["n", "e?"]);
  });
});

describe("CTEs, subqueries and set operations", () => {
  it("a CTE's columns carry their inferred nullability", () => {
    expect(
      infer(
        "WITH x AS (SELECT u.id, p.title FROM users u LEFT JOIN posts p ON p.user_id = u.id) SELECT x.id, title FROM x",
      ),
    ).toEqual(["id", "title?"]);
  });

  it("RETURNING from an INSERT/UPDATE/DELETE CTE keeps the table's NOT NULL", () => {
    expect(
      infer(
        "WITH ins AS (INSERT INTO users (name) VALUES ($1) RETURNING id, email), up AS (UPDATE posts SET title = 'x' RETURNING title, body) SELECT ins.id, ins.email, up.title, up.body FROM ins, up",
      ),
    ).toEqual(["id", "email?", "title", "body?"]);
  });

  it("a CTE shadows a table of the same name, and sees the CTEs before it", () => {
    expect(
      infer("WITH users AS (SELECT 1 AS x), y AS (SELECT x FROM users) SELECT * FROM y"),
    ).toEqual(["x"]);
  });

  it("a CTE column list renames its columns", () => {
    expect(infer("WITH c(a, b) AS (SELECT id, email FROM users) SELECT * FROM c")).toEqual([
      "a",
      "b?",
    ]);
  });

  it("a recursive CTE is seeded with its non-recursive arm", () => {
    expect(
      infer(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r",
      ),
    ).toEqual(["n"]);
  });

  it("a subquery in FROM carries its columns' nullability", () => {
    expect(infer("SELECT s.id, s.body FROM (SELECT id, body FROM posts) s")).toEqual([
      "id",
      "body?",
    ]);
    expect(infer("SELECT * FROM (SELECT id, body FROM posts) AS s(a)")).toEqual(["a", "body?"]);
  });

  it("UNION: a column is not null only when it is in every arm", () => {
    expect(
      infer("SELECT id, name, email FROM users UNION SELECT id, title, title FROM posts"),
    ).toEqual(["id", "name", "email?"]);
    expect(
      infer("SELECT id, NULL::text AS t FROM users UNION ALL SELECT id, title FROM posts"),
    ).toEqual(["id", "t?"]);
  });

  it("VALUES: a column is not null only when it is in every row", () => {
    expect(infer("VALUES (1, 'a'), (2, NULL)")).toEqual(["column1", "column2?"]);
    expect(infer("SELECT * FROM (VALUES (1, $1::text)) AS v(a, b)", [1])).toEqual(["a", "b?"]);
  });

  it("columns of a function in FROM are nullable", () => {
    expect(infer("SELECT t.x, y FROM unnest(ARRAY[1]) AS t(x), unnest(ARRAY[2]) AS y")).toEqual([
      "x?",
      "y?",
    ]);
    expect(
      infer("SELECT * FROM unnest(ARRAY[1], ARRAY['a']) WITH ORDINALITY AS t(a, b, n)"),
    ).toEqual(["a?", "b?", "n?"]);
  });
});

describe("INSERT, UPDATE and DELETE ... RETURNING", () => {
  it("RETURNING sees the target table, not nullable", () => {
    expect(infer("INSERT INTO users AS u (name) VALUES ('a') RETURNING u.id, email, *")).toEqual([
      "id",
      "email?",
      "id",
      "name",
      "email?",
    ]);
  });

  it("UPDATE ... FROM and DELETE ... USING bring their tables into scope", () => {
    expect(
      infer(
        "UPDATE posts p SET title = u.name FROM users u WHERE u.id = p.user_id RETURNING p.id, u.email, u.name",
      ),
    ).toEqual(["id", "email?", "name"]);
    expect(
      infer(
        "DELETE FROM posts USING users u WHERE u.id = posts.user_id RETURNING posts.body, u.id",
      ),
    ).toEqual(["body?", "id"]);
  });

  it("a statement without RETURNING has no columns", () => {
    expect(infer("DELETE FROM posts")).toEqual([]);
  });
});

describe("when inference cannot follow", () => {
  it("* over a function with unknown columns is unsupported", () => {
    expect(() => infer("SELECT * FROM users, jsonb_each('{}')")).toThrow(Unsupported);
  });

  it("a name that may be a column of a function with unknown columns is not resolved further out", () => {
    expect(
      infer(
        "SELECT (SELECT t.x FROM (SELECT name FROM jsonb_each('{}')) t(x)) AS y, s.name FROM users, LATERAL (SELECT name FROM jsonb_each('{}')) s",
      ),
    ).toEqual(["y?", "name?"]);
  });

  it("unknown tables give nullable columns without crashing", () => {
    expect(infer("SELECT a, nope.b FROM nope")).toEqual(["a?", "b?"]);
  });

  it("falls back to each column's table NOT NULL, computed columns nullable", () => {
    const stmt = stmtOf("SELECT * FROM users, jsonb_each('{}')");
    const fields = [
      { name: "id", tableID: 100, columnID: 1, dataTypeID: 23 },
      { name: "name", tableID: 100, columnID: 2, dataTypeID: 25 },
      { name: "email", tableID: 100, columnID: 3, dataTypeID: 25 },
      { name: "key", tableID: 0, columnID: 0, dataTypeID: 25 },
    ];
    const notNull = new Map([
      ["100:1", true],
      ["100:2", true],
      ["100:3", false],
    ]);
    const result = resultNullability(stmt, fields, {
      relations,
      nullableParams: new Set(),
      attNotNull: (t, c) => notNull.get(`${t}:${c}`),
    });
    expect(result.inferred).toBe(false);
    expect(result.notNull).toEqual([true, true, false, false]);
  });

  it("falls back when the inferred columns do not line up with the row description", () => {
    const result = resultNullability(stmtOf("SELECT id FROM users"), [], {
      relations,
      nullableParams: new Set(),
      attNotNull: () => undefined,
    });
    expect(result).toMatchObject({
      inferred: false,
      reason: "inferred 1 columns, the server describes 0",
    });
  });
});
