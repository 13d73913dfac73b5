/*
 * Loose accessors for libpg-query's JSON parse tree. Nodes are `{ Kind: { ...fields } }`, except
 * where the grammar fixes a field's type (InsertStmt.relation, SelectStmt.larg, Alias, ...): those
 * hold the fields directly. Everything is treated as untrusted shape, so an unexpected tree never
 * crashes the generator.
 */

export type Obj = { [key: string]: unknown };

export function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The kind and fields of a wrapped node (`{ SelectStmt: {...} }`). */
export function unwrap(v: unknown): { kind: string; body: Obj } | undefined {
  if (!isObj(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length !== 1) return undefined;
  const kind = keys[0]!;
  const body = v[kind];
  if (!isObj(body)) return undefined;
  return { kind, body };
}

/** The fields of `v` if it is a wrapped node of `kind`. */
export function as(v: unknown, kind: string): Obj | undefined {
  const n = unwrap(v);
  return n?.kind === kind ? n.body : undefined;
}

export function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export function obj(v: unknown): Obj | undefined {
  return isObj(v) ? v : undefined;
}

export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** The `sval` of a `{ String: { sval } }` node. */
export function sval(v: unknown): string | undefined {
  return str(as(v, "String")?.sval);
}

/** Names in a list of String nodes (`funcname`, `colnames`, `fields`...). */
export function names(v: unknown): string[] {
  return list(v)
    .map(sval)
    .filter((s): s is string => s !== undefined);
}

/** Every object anywhere below `v` (including `v`), depth first. */
export function* walk(v: unknown): Generator<Obj> {
  if (Array.isArray(v)) {
    for (const item of v) yield* walk(item);
  } else if (isObj(v)) {
    yield v;
    for (const value of Object.values(v)) yield* walk(value);
  }
}

/** Converts a UTF-8 byte offset in `text` (as libpg-query reports locations) to a string index. */
export function byteToIndex(text: string, byteOffset: number): number {
  return Buffer.from(text, "utf8").subarray(0, Math.max(0, byteOffset)).toString("utf8").length;
}
