import type pg from "pg";

/*
 * PostgreSQL types → TypeScript types.
 *
 * Parameters get the type a caller should pass (node-postgres serialises it). Result columns get
 * the type the values actually arrive as, which is decided by the type parsers of the pool
 * (src/db/pool.ts, on top of pg-types' defaults): a type with a parser arrives parsed, every other
 * type arrives as its text form. `resultParsers` below mirrors that set, and
 * test/generator/types.test.ts fails if the pool's parsers and this table drift apart.
 */

export interface PgTypeInfo {
  oid: number;
  /** pg_type.typname, e.g. `int4`, `_text`, `site_role`. */
  name: string;
  /** pg_type.typtype: b(ase), c(omposite), d(omain), e(num), p(seudo), r(ange), m(ultirange). */
  typtype: string;
  /** pg_type.typcategory: `A` for arrays. */
  category: string;
  /** pg_type.typelem: the element type of an array, else 0. */
  elem: number;
  /** pg_type.typbasetype: the base type of a domain, else 0. */
  base: number;
  /** pg_enum labels in sort order, for enums. */
  labels: string[];
}

/** Parameter types by name (typname). Any other type is `any`. */
const paramScalars: Record<string, string> = {
  int2: "number",
  int4: "number",
  int8: "number", // the pool parses bigint into a (safe) number; numbers serialise fine
  oid: "number",
  float4: "number",
  float8: "number",
  numeric: "string", // exact: never through a float
  money: "string",
  bool: "boolean",
  text: "string",
  varchar: "string",
  bpchar: "string",
  char: "string",
  name: "string",
  unknown: "string",
  uuid: "string",
  citext: "string",
  inet: "string",
  cidr: "string",
  macaddr: "string",
  macaddr8: "string",
  xid8: "string",
  interval: "string",
  date: "string",
  time: "string",
  timetz: "string",
  bit: "string",
  varbit: "string",
  timestamptz: "string", // RFC 3339, see parseTimestamptz in src/db/pool.ts
  timestamp: "string",
  json: "any",
  jsonb: "any",
  bytea: "Buffer",
  void: "void",
};

/**
 * Result types of the OIDs that arrive parsed: pg-types' default text parsers plus the pool's
 * overrides (int8, timestamp, timestamptz, int8[], timestamptz[]). Every other type arrives as text.
 */
export const resultParsers: ReadonlyMap<number, string> = new Map([
  [16, "boolean"], // bool
  [17, "Buffer"], // bytea
  [20, "number"], // int8 (pool: parseInt8, refuses unsafe integers)
  [21, "number"], // int2
  [23, "number"], // int4
  [26, "number"], // oid
  [114, "any"], // json
  [3802, "any"], // jsonb
  [600, "{ x: number; y: number }"], // point
  [718, "{ x: number; y: number; radius: number }"], // circle
  [700, "number"], // float4
  [701, "number"], // float8
  [1082, "Date"], // date: pg-types makes a Date at local midnight
  [1114, "string"], // timestamp (pool: parseTimestamptz)
  [1184, "string"], // timestamptz (pool: parseTimestamptz)
  [1186, "any"], // interval: a postgres-interval object
  [651, "string[]"], // cidr[]
  [791, "string[]"], // money[]
  [199, "any[]"], // json[]
  [3807, "any[]"], // jsonb[]
  [1000, "boolean[]"], // bool[]
  [1001, "Buffer[]"], // bytea[]
  [1005, "number[]"], // int2[]
  [1007, "number[]"], // int4[]
  [1008, "string[]"], // regproc[]
  [1009, "string[]"], // text[]
  [1014, "string[]"], // bpchar[]
  [1015, "string[]"], // varchar[]
  [1016, "number[]"], // int8[] (pool)
  [1017, "{ x: number; y: number }[]"], // point[]
  [1021, "number[]"], // float4[]
  [1022, "number[]"], // float8[]
  [1028, "number[]"], // oid[]
  [1040, "string[]"], // macaddr[]
  [1041, "string[]"], // inet[]
  [1115, "Date[]"], // timestamp[]: pg-types' date parser (the pool only overrides the scalar)
  [1182, "Date[]"], // date[]
  [1183, "string[]"], // time[]
  [1185, "string[]"], // timestamptz[] (pool)
  [1187, "any[]"], // interval[]
  [1231, "number[]"], // numeric[]: pg-types parses these as floats
  [1270, "string[]"], // timetz[]
  [2951, "string[]"], // uuid[]
  [3907, "string[]"], // numrange[]
]);

const voidOid = 2278;

function union(labels: string[]): string {
  return labels.length === 0 ? "never" : labels.map((l) => JSON.stringify(l)).join(" | ");
}

function arrayOf(t: string): string {
  return /[|&\s]/.test(t) && !t.startsWith("{") ? `(${t})[]` : `${t}[]`;
}

/** Adds `| null`. */
export function nullable(t: string, isNullable: boolean): string {
  return isNullable && t !== "any" ? `${t} | null` : t;
}

/** The pg_type facts the generator needs, for every type a query touches. */
export class TypeCatalog {
  private readonly types = new Map<number, PgTypeInfo>();

  constructor(infos: Iterable<PgTypeInfo> = []) {
    for (const t of infos) this.types.set(t.oid, t);
  }

  info(oid: number): PgTypeInfo | undefined {
    return this.types.get(oid);
  }

  /** Loads `oids` and the element and base types they refer to. */
  async load(client: pg.ClientBase, oids: Iterable<number>): Promise<void> {
    let missing = [...new Set(oids)].filter((o) => o !== 0 && !this.types.has(o));
    while (missing.length > 0) {
      const { rows } = await client.query<{
        oid: number;
        typname: string;
        typtype: string;
        typcategory: string;
        typelem: number;
        typbasetype: number;
        labels: string[] | null;
      }>(
        `SELECT t.oid::int4 AS oid, t.typname::text AS typname, t.typtype::text AS typtype,
           t.typcategory::text AS typcategory, t.typelem::int4 AS typelem,
           t.typbasetype::int4 AS typbasetype,
           (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
              FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels
         FROM pg_type t WHERE t.oid = ANY($1::int4[])`,
        [missing],
      );
      const next: number[] = [];
      for (const r of rows) {
        this.types.set(r.oid, {
          oid: r.oid,
          name: r.typname,
          typtype: r.typtype,
          category: r.typcategory,
          elem: r.typelem,
          base: r.typbasetype,
          labels: r.labels ?? [],
        });
        next.push(r.typelem, r.typbasetype);
      }
      for (const o of missing) {
        if (!this.types.has(o)) {
          // Not in pg_type (cannot happen for described types); remember as unknown.
          this.types.set(o, {
            oid: o,
            name: "",
            typtype: "",
            category: "",
            elem: 0,
            base: 0,
            labels: [],
          });
        }
      }
      missing = [...new Set(next)].filter((o) => o !== 0 && !this.types.has(o));
    }
  }

  private isArray(t: PgTypeInfo): boolean {
    return t.category === "A" && t.elem !== 0;
  }

  /** The TypeScript type of a parameter of type `oid` (what the caller passes). */
  paramType(oid: number, depth = 0): string {
    const t = this.types.get(oid);
    if (!t || depth > 10) return "any";
    if (t.typtype === "d") return this.paramType(t.base, depth + 1);
    if (t.typtype === "e") return union(t.labels);
    if (this.isArray(t)) {
      const elem = this.paramType(t.elem, depth + 1);
      return elem === "any" ? "any[]" : arrayOf(elem);
    }
    return paramScalars[t.name] ?? "any";
  }

  /** The TypeScript type a result column of type `oid` arrives as through the pool. */
  resultType(oid: number, depth = 0): string {
    const parsed = resultParsers.get(oid);
    if (parsed !== undefined) return parsed;
    if (oid === voidOid) return "void";
    const t = this.types.get(oid);
    if (t && depth < 10) {
      // Row descriptions name a domain's base type, but be safe when a domain OID shows up.
      if (t.typtype === "d") {
        const base = this.types.get(t.base);
        if (base?.typtype === "e" || base?.typtype === "d")
          return this.resultType(t.base, depth + 1);
        return "string";
      }
      if (t.typtype === "e") return union(t.labels);
    }
    // No parser: node-postgres hands over the text form (also for arrays without a parser,
    // e.g. enum arrays arrive as "{owner,member}").
    return "string";
  }
}
