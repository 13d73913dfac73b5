import pg from "pg";
import { describe, expect, it } from "vitest";
import {
  nullable,
  type PgTypeInfo,
  resultParsers,
  TypeCatalog,
} from "../../scripts/sqlc_gen_ts/types.ts";
import { clientConfig } from "../../src/db/pool.ts";

function base(oid: number, name: string, extra: Partial<PgTypeInfo> = {}): PgTypeInfo {
  return { oid, name, typtype: "b", category: "X", elem: 0, base: 0, labels: [], ...extra };
}

const moodOid = 90_001;
const moodArrayOid = 90_002;
const positiveOid = 90_003;
const moodDomainOid = 90_004;

const catalog = new TypeCatalog([
  base(16, "bool"),
  base(17, "bytea"),
  base(20, "int8"),
  base(21, "int2"),
  base(23, "int4"),
  base(25, "text"),
  base(114, "json"),
  base(700, "float4"),
  base(1082, "date"),
  base(1114, "timestamp"),
  base(1184, "timestamptz"),
  base(1186, "interval"),
  base(1700, "numeric"),
  base(2278, "void", { typtype: "p" }),
  base(2950, "uuid"),
  base(3614, "tsvector"),
  base(3802, "jsonb"),
  base(1009, "_text", { category: "A", elem: 25 }),
  base(1016, "_int8", { category: "A", elem: 20 }),
  base(1231, "_numeric", { category: "A", elem: 1700 }),
  base(2951, "_uuid", { category: "A", elem: 2950 }),
  base(moodOid, "mood", {
    typtype: "e",
    category: "E",
    labels: ["happy", "sad", "it's complicated"],
  }),
  base(moodArrayOid, "_mood", { category: "A", elem: moodOid }),
  base(positiveOid, "positive", { typtype: "d", base: 23 }),
  base(moodDomainOid, "mood_d", { typtype: "d", base: moodOid }),
]);

describe("parameter types", () => {
  it.each([
    [23, "number"],
    [21, "number"],
    [700, "number"],
    [20, "number"], // int8: the pool parses bigint into a safe number
    [1700, "string"], // numeric stays exact
    [16, "boolean"],
    [25, "string"],
    [2950, "string"],
    [1184, "string"],
    [1114, "string"],
    [1082, "string"],
    [1186, "string"],
    [114, "any"],
    [3802, "any"],
    [17, "Buffer"],
    [2278, "void"],
    [3614, "any"], // no mapping: any
    [1009, "string[]"],
    [2951, "string[]"],
    [moodOid, '"happy" | "sad" | "it\'s complicated"'],
    [moodArrayOid, '("happy" | "sad" | "it\'s complicated")[]'],
    [positiveOid, "number"], // a domain is its base type
    [moodDomainOid, '"happy" | "sad" | "it\'s complicated"'],
    [123_456, "any"], // not in the catalog
  ])("OID %i is passed as %s", (oid, ts) => {
    expect(catalog.paramType(oid)).toBe(ts);
  });
});

describe("result types follow the pool's type parsers", () => {
  it.each([
    [23, "number"],
    [20, "number"],
    [1700, "string"],
    [16, "boolean"],
    [25, "string"],
    [1184, "string"],
    [1114, "string"],
    [1082, "Date"], // pg-types' default date parser: the pool does not override it
    [1186, "any"], // a postgres-interval object
    [3802, "any"],
    [17, "Buffer"],
    [2278, "void"],
    [3614, "string"], // no parser: the text form
    [1009, "string[]"],
    [1016, "number[]"],
    [1231, "number[]"], // pg-types parses numeric[] as floats
    [moodOid, '"happy" | "sad" | "it\'s complicated"'],
    [moodArrayOid, "string"], // no parser for enum arrays: they arrive as "{happy,sad}"
  ])("OID %i arrives as %s", (oid, ts) => {
    expect(catalog.resultType(oid)).toBe(ts);
  });

  it("the OIDs with a result parser are exactly the ones the pool parses", () => {
    const types = clientConfig("postgres://localhost/x").types!;
    // pg-types hands out one shared no-op parser for every OID without a parser (0 has none).
    const noParser = (pg.types.getTypeParser as (oid: number, format: "text") => unknown)(
      0,
      "text",
    );
    const parsed: number[] = [];
    for (let oid = 1; oid < 20_000; oid++) {
      if (types.getTypeParser(oid, "text") !== noParser) parsed.push(oid);
    }
    expect(parsed).toEqual([...resultParsers.keys()].sort((a, b) => a - b));
  });

  it("the pool's parsers produce the values the result types promise", () => {
    const types = clientConfig("postgres://localhost/x").types!;
    const parse = (oid: number, text: string): unknown => types.getTypeParser(oid, "text")(text);
    expect(parse(20, "9007199254740991")).toBe(9_007_199_254_740_991);
    expect(parse(1184, "2026-01-02 03:04:05.5+00")).toBe("2026-01-02T03:04:05.500000Z");
    expect(parse(1114, "2026-01-02 03:04:05")).toBe("2026-01-02T03:04:05.000000Z");
    expect(parse(1082, "2026-01-02")).toBeInstanceOf(Date);
    expect(parse(1016, "{1,2}")).toEqual([1, 2]);
    expect(parse(1185, '{"2026-01-02 03:04:05+00"}')).toEqual(["2026-01-02T03:04:05.000000Z"]);
    expect(parse(1231, "{1.5}")).toEqual([1.5]);
    expect((parse(1115, '{"2026-01-02 03:04:05"}') as unknown[])[0]).toBeInstanceOf(Date);
  });
});

describe("nullable types", () => {
  it("adds | null, except to any", () => {
    expect(nullable("string", true)).toBe("string | null");
    expect(nullable('"a" | "b"', true)).toBe('"a" | "b" | null');
    expect(nullable('("a" | "b")[]', true)).toBe('("a" | "b")[] | null');
    expect(nullable("any", true)).toBe("any");
    expect(nullable("number", false)).toBe("number");
  });
});
