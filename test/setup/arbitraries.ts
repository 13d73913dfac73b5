import fc from "fast-check";
import type { OpenAPIV3_1 } from "openapi-types";

/*
 * fast-check arbitraries for the HTTP API's inputs, generated from the OpenAPI document
 * (src/server/openapi.ts), whose request schemas are the JSON Schemas of the routes' zod
 * validators (src/server/validation.ts), plus hostile values mixed in.
 *
 * The converter from JSON Schema to arbitraries is hand-written because no maintained library
 * does it for this stack: `@fast-check/zod` does not exist on npm, and `zod-fast-check` (0.10.1,
 * the latest) declares peers `zod ^3.18.0` and `fast-check >2.23.0 <4.0.0`, while this project
 * uses zod 4 and fast-check 4. Converting the document rather than the zod objects also fuzzes
 * exactly what clients are told to send.
 */

type Schema = OpenAPIV3_1.SchemaObject & { const?: unknown; propertyNames?: unknown };
type SchemaOrRef = OpenAPIV3_1.SchemaObject | OpenAPIV3_1.ReferenceObject | boolean | undefined;

/** Ids of rows the caller owns, by the name of the field or parameter that carries one. */
export type KnownValues = (name: string | undefined) => readonly string[];

export interface SchemaContext {
  doc: OpenAPIV3_1.Document;
  known: KnownValues;
}

/**
 * Emitted as is by encodeJson: numbers JSON.stringify would normalise ("-0", "1e400",
 * "9007199254740993"), bytes that are not UTF-8, nesting too deep to build as objects.
 */
export class Raw {
  constructor(readonly chunk: string | Uint8Array) {}
  toString() {
    return typeof this.chunk === "string" ? this.chunk : `<${this.chunk.length} bytes>`;
  }
}

/** A JSON text from a value that may hold Raw pieces, as the bytes a client would send. */
export function encodeJson(value: unknown): Uint8Array {
  const parts: (string | Uint8Array)[] = [];
  const walk = (v: unknown) => {
    if (v instanceof Raw) parts.push(v.chunk);
    else if (Array.isArray(v)) {
      parts.push("[");
      v.forEach((item, i) => {
        if (i) parts.push(",");
        walk(item);
      });
      parts.push("]");
    } else if (v !== null && typeof v === "object") {
      parts.push("{");
      Object.entries(v).forEach(([k, item], i) => {
        if (i) parts.push(",");
        parts.push(`${JSON.stringify(k)}:`);
        walk(item);
      });
      parts.push("}");
    } else parts.push(JSON.stringify(v) ?? "null");
  };
  walk(value);
  return Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : p)));
}

/** Numbers at and past the edges of every numeric type the routes and SQL use. */
export const hostileNumberTokens = [
  "1e308",
  "-1e308",
  "1e309",
  "9007199254740993",
  "9007199254740992",
  "9223372036854775807",
  "9223372036854775808",
  "-9223372036854775809",
  "18446744073709551616",
  "2147483648",
  "-2147483649",
  "-0",
  "-0.0",
  "0.5",
  "1E2",
  "1e-400",
  "4.9e-324",
  "-1",
  "123456789012345678901234567890",
] as const;

/** Numbers as strings, for fields and parameters that parse strings into numbers. */
export const numericStrings = [
  "1e3",
  "0x10",
  "0o7",
  "0b1",
  "1_000",
  " 1",
  "1 ",
  "+1",
  "-0",
  "00",
  "01",
  "NaN",
  "Infinity",
  "-Infinity",
  "9007199254740993",
  "9223372036854775808",
  "99999999999999999999999",
  "1.5",
  "",
] as const;

/** Text the database or a parser may choke on. */
export const hostileStringArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "",
    " ",
    "\u0000",
    "a\u0000b",
    "%00",
    "\ud800",
    "\udfff",
    "a\ud83d",
    "\u202e\u2066",
    "\ufeff",
    "😀".repeat(100),
    "'; DROP TABLE chats; --",
    "\\",
    "\\u0000",
    "%",
    "%C3%28",
    "%FF",
    "*",
    "(",
    ":*",
    "!",
    "&|!",
    "__proto__",
    "constructor",
    "null",
    "true",
    "[]",
    "{}",
    "..",
    "../../etc/passwd",
    "\r\n",
    "a".repeat(70_000),
    "é".repeat(20_000),
  ),
  fc.constantFrom(...numericStrings),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
);

/** Invalid UTF-8: a truncated sequence, bytes that never occur, an overlong NUL, a surrogate. */
export const invalidUtf8Sequences: readonly number[][] = [
  [0xc3, 0x28],
  [0xff],
  [0xfe, 0xff],
  [0xc0, 0x80],
  [0xe0, 0x80, 0x80],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xe2, 0x82],
  [0x80],
];

/** A JSON string whose bytes are not UTF-8 (a Raw, so encodeJson sends the bytes as they are). */
export const invalidUtf8StringArb: fc.Arbitrary<Raw> = fc
  .tuple(fc.constantFrom(...invalidUtf8Sequences), fc.string({ maxLength: 5 }))
  .map(
    ([bytes, text]) =>
      new Raw(
        Buffer.concat([
          Buffer.from(`"${text.replace(/["\\]/g, "")}`),
          Buffer.from(bytes),
          Buffer.from('"'),
        ]),
      ),
  );

/** Nesting well past any sane document: JSON.parse copes; code walking it recursively may not. */
export const deepJsonArb: fc.Arbitrary<Raw> = fc
  .tuple(fc.constantFrom(1_000, 5_000, 20_000), fc.boolean())
  .map(([depth, arrays]) =>
    arrays
      ? new Raw(`${"[".repeat(depth)}${"]".repeat(depth)}`)
      : new Raw(`${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`),
  );

/** A value of the wrong type, a number past the edges, hostile text, or deep nesting. */
export const hostileValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, "", [], {}, [null], { "": null }),
  fc.constantFrom(...hostileNumberTokens).map((t) => new Raw(t)),
  fc.constantFrom(...numericStrings),
  hostileStringArb,
  invalidUtf8StringArb,
  deepJsonArb,
  fc.jsonValue({ maxDepth: 3 }),
);

/** Whole bodies that are no valid JSON, or JSON of no use to any route. */
export const hostileBodyArb: fc.Arbitrary<Uint8Array> = fc
  .oneof(
    fc.constantFrom(
      "",
      " ",
      "{",
      "}",
      "[",
      '{"a":}',
      "[1,]",
      "nul",
      "NaN",
      "undefined",
      "'{}'",
      '{"a":1}{"b":2}',
      "\ufeff{}",
      "{}\u0000",
      "\u0000",
      "null",
      "true",
      "0",
      "-0",
      "1e309",
      '""',
      "[]",
      '{"__proto__":{"x":1}}',
      '{"a":1,"a":2}',
    ),
    deepJsonArb.map((r) => r.chunk as string),
  )
  .map((s) => Buffer.from(s, "utf8")) as fc.Arbitrary<Uint8Array>;

/** Bytes that are not UTF-8 as a whole body, inside or outside JSON syntax. */
export const invalidUtf8BodyArb: fc.Arbitrary<Uint8Array> = fc
  .tuple(fc.constantFrom(...invalidUtf8Sequences), fc.boolean())
  .map(([bytes, wrapped]) =>
    wrapped
      ? Buffer.concat([Buffer.from('{"x":"'), Buffer.from(bytes), Buffer.from('"}')])
      : Buffer.from(bytes),
  );

function deref(schema: SchemaOrRef, doc: OpenAPIV3_1.Document): Schema {
  if (schema === undefined || schema === true) return {};
  if (schema === false) return { not: {} };
  if ("$ref" in schema) {
    const name = schema.$ref.replace("#/components/schemas/", "");
    return deref(doc.components?.schemas?.[name] as SchemaOrRef, doc);
  }
  return schema as Schema;
}

const uuidLike = /^\^\[0-9a-f\]\{8\}-/;

/** Strings for a `format` the document uses; anything else is text of the allowed length. */
function formatted(format: string): fc.Arbitrary<string> | undefined {
  switch (format) {
    case "email":
      return fc.emailAddress();
    case "date-time":
      return fc
        .date({ min: new Date("1970-01-01"), max: new Date("2100-01-01"), noInvalidDate: true })
        .map((d) => d.toISOString());
    case "date":
      return fc
        .date({ min: new Date("1970-01-01"), max: new Date("2100-01-01"), noInvalidDate: true })
        .map((d) => d.toISOString().slice(0, 10));
    case "uri":
      // Loopback's discard port: a URL a route stores and may call refuses at once.
      return fc.webPath().map((p) => `http://127.0.0.1:9${p}`);
    default:
      return undefined;
  }
}

function stringArb(schema: Schema, name: string | undefined, ctx: SchemaContext) {
  const known = ctx.known(name);
  let arb: fc.Arbitrary<string>;
  const min = schema.minLength ?? 0;
  // Long enough to reach a maximum, short enough that a run stays cheap.
  const max = Math.min(schema.maxLength ?? 64, Math.max(min, 64) + 8);
  if (schema.pattern) {
    const pattern = new RegExp(schema.pattern);
    arb = fc
      .stringMatching(pattern, { size: "small" })
      .filter((s) => s.length >= min && s.length <= (schema.maxLength ?? Number.POSITIVE_INFINITY));
    // A UUID field takes the caller's own ids often, so routes get past their 404s.
    if (uuidLike.test(schema.pattern) && known.length === 0) {
      const all = ctx.known("*");
      if (all.length) arb = fc.oneof(fc.constantFrom(...all), arb);
    }
  } else if (schema.format && formatted(schema.format)) {
    arb = formatted(schema.format)!;
  } else if (name && /url$/i.test(name)) {
    arb = formatted("uri")!;
  } else {
    arb = fc.string({ minLength: min, maxLength: max });
  }
  if (known.length) arb = fc.oneof(fc.constantFrom(...known), arb);
  return arb;
}

function numberArb(schema: Schema, integer: boolean): fc.Arbitrary<number> {
  const exMin = typeof schema.exclusiveMinimum === "number" ? schema.exclusiveMinimum : undefined;
  const exMax = typeof schema.exclusiveMaximum === "number" ? schema.exclusiveMaximum : undefined;
  if (integer) {
    const min = Math.max(
      schema.minimum ?? (exMin !== undefined ? exMin + 1 : -1_000_000),
      Number.MIN_SAFE_INTEGER,
    );
    const max = Math.min(
      schema.maximum ?? (exMax !== undefined ? exMax - 1 : 1_000_000),
      Number.MAX_SAFE_INTEGER,
    );
    return fc.oneof(fc.integer({ min, max }), fc.constantFrom(min, max));
  }
  return fc.double({
    min: schema.minimum ?? exMin ?? -1e9,
    max: schema.maximum ?? exMax ?? 1e9,
    noNaN: true,
    noDefaultInfinity: true,
    minExcluded: exMin !== undefined,
    maxExcluded: exMax !== undefined,
  });
}

/**
 * Values valid under `schema` (a JSON Schema of the document): objects, arrays, strings with
 * pattern, format and length, numbers with bounds, enums and consts, nullable types, oneOf,
 * anyOf and allOf. `name` is the property or parameter it is for (for the caller's own ids).
 */
export function schemaArb(
  input: SchemaOrRef,
  ctx: SchemaContext,
  name?: string,
  depth = 0,
): fc.Arbitrary<unknown> {
  const schema = deref(input, ctx.doc);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const variants = schema.oneOf ?? schema.anyOf;
  if (variants) return fc.oneof(...variants.map((v) => schemaArb(v, ctx, name, depth + 1)));
  if (schema.allOf) {
    // The document's allOf only joins object schemas: their properties together.
    const merged = schema.allOf.map((s) => deref(s, ctx.doc));
    return schemaArb(
      {
        type: "object",
        properties: Object.assign({}, ...merged.map((s) => s.properties ?? {})),
        required: merged.flatMap((s) => s.required ?? []),
      },
      ctx,
      name,
      depth,
    );
  }
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  const nullable = types.includes("null") || (schema as { nullable?: boolean }).nullable;
  const concrete = types.filter((t) => t !== "null");
  if (types.length > 0 && concrete.length === 0) return fc.constant(null);
  let arb: fc.Arbitrary<unknown>;
  if (concrete.length > 1) {
    arb = fc.oneof(
      ...concrete.map((type) => schemaArb({ ...schema, type } as Schema, ctx, name, depth)),
    );
  } else {
    switch (concrete[0]) {
      case "string":
        arb = stringArb(schema, name, ctx);
        break;
      case "integer":
        arb = numberArb(schema, true);
        break;
      case "number":
        arb = numberArb(schema, false);
        break;
      case "boolean":
        arb = fc.boolean();
        break;
      case "array": {
        const items = schemaArb(
          (schema as OpenAPIV3_1.ArraySchemaObject).items,
          ctx,
          name,
          depth + 1,
        );
        const minLength = schema.minItems ?? 0;
        arb = fc.array(items, {
          minLength,
          maxLength: Math.min(schema.maxItems ?? 4, Math.max(minLength, 4)),
        });
        break;
      }
      case "object":
        arb = objectArb(schema, ctx, depth);
        break;
      default:
        // No type (z.unknown(), z.any()): any JSON.
        arb = depth > 6 ? fc.constant(null) : fc.jsonValue({ maxDepth: 2 });
    }
  }
  return nullable ? fc.option(arb, { nil: null, freq: 4 }) : arb;
}

function objectArb(schema: Schema, ctx: SchemaContext, depth: number): fc.Arbitrary<unknown> {
  const props = schema.properties ?? {};
  const required = new Set(schema.required ?? []);
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [key, sub] of Object.entries(props)) {
    model[key] = schemaArb(sub as SchemaOrRef, ctx, key, depth + 1);
  }
  const fixed = fc.record(model, {
    requiredKeys: Object.keys(props).filter((k) => required.has(k)),
  });
  const extra = schema.additionalProperties;
  if (Object.keys(props).length === 0 && extra !== false && depth < 6) {
    // A map (z.record): string keys to values of its schema.
    const values =
      extra && typeof extra === "object"
        ? schemaArb(extra as SchemaOrRef, ctx, undefined, depth + 1)
        : fc.jsonValue({ maxDepth: 1 });
    // Keys as the schema names them (labels: a pattern and a length), else any short string.
    const names = schema.propertyNames as Schema | undefined;
    const keys = names
      ? stringArb(
          { type: "string", ...names, maxLength: Math.min(names.maxLength ?? 12, 12) },
          undefined,
          ctx,
        )
      : fc.string({ maxLength: 12 });
    return fc.dictionary(keys, values, { maxKeys: Math.min(schema.maxProperties ?? 4, 4) });
  }
  return fixed;
}

/** Every place in `value` a mutation can go: the root, and each key and index below it. */
function paths(value: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []) {
  out.push(prefix);
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) paths(v, [...prefix, i], out);
  } else if (value !== null && typeof value === "object" && !(value instanceof Raw)) {
    for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out);
  }
  return out;
}

type Mutation = "replace" | "unknown-field" | "drop";

function mutate(value: unknown, at: number, how: Mutation, hostile: unknown): unknown {
  const all = paths(value);
  const path = all[at % all.length]!;
  if (path.length === 0) {
    if (how === "unknown-field" && value !== null && typeof value === "object") {
      return Array.isArray(value) ? [...value, hostile] : { ...value, unknown_field: hostile };
    }
    return hostile;
  }
  const copy = structuredClone(value) as Record<string | number, unknown>;
  let parent = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (how === "drop") {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else if (how === "unknown-field" && parent[last] !== null && typeof parent[last] === "object") {
    const target = parent[last] as Record<string, unknown>;
    if (!Array.isArray(target)) target[`x_${String(last)}`] = hostile;
    else target.push(hostile);
  } else parent[last] = hostile;
  return copy;
}

/**
 * A request body for `schema`. Hostile: a valid one with one field replaced by a hostile value
 * (or dropped, or joined by an unknown field), or a hostile body (malformed JSON, deep nesting,
 * bytes that are not UTF-8, empty); else one valid under the schema.
 */
export function bodyArb(
  schema: SchemaOrRef,
  ctx: SchemaContext,
  hostile = true,
): fc.Arbitrary<Uint8Array> {
  const valid = schemaArb(schema, ctx);
  if (!hostile) return valid.map(encodeJson);
  const mutated = fc
    .tuple(
      valid,
      fc.nat(),
      fc.constantFrom<Mutation>("replace", "unknown-field", "drop"),
      hostileValueArb,
    )
    .map(([v, at, how, hostile]) => mutate(v, at, how, hostile));
  return fc.oneof(
    { arbitrary: mutated.map(encodeJson), weight: 5 },
    { arbitrary: hostileBodyArb, weight: 1 },
    { arbitrary: invalidUtf8BodyArb, weight: 1 },
  );
}

/** Percent-encoded pieces a URL may carry that decode to no valid UTF-8, or to NUL. */
export const hostileEncodedArb = fc.constantFrom(
  "%C3%28",
  "%FF",
  "%FE%FF",
  "%C0%80",
  "%ED%A0%80",
  "%00",
  "a%00b",
  "%",
  "%zz",
  "%%",
  "%2F",
  "%2e%2e",
  "%E2%82",
);

/** encodeURIComponent, with lone surrogates (which it refuses) sent as U+FFFD as a browser does. */
export const urlEncode = (s: string) =>
  encodeURIComponent(
    s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd"),
  );

/**
 * Node answers 431 without the app for a request line and headers past 16 KiB
 * (--max-http-header-size): longer URLs test Node, not the routes.
 */
const maxUrlValueLength = 2_000;
const maxQueryLength = 12_000;

/** A value for a path or query parameter, already encoded for the URL. */
export function parameterValueArb(
  schema: SchemaOrRef,
  name: string,
  ctx: SchemaContext,
  hostile = true,
): fc.Arbitrary<string> {
  const encode = (v: unknown) =>
    urlEncode(typeof v === "string" ? v : v instanceof Raw ? v.toString() : JSON.stringify(v));
  const valid = schemaArb(schema, ctx, name);
  const known = ctx.known(name);
  const sane = [
    { arbitrary: valid.map((v) => encode(v)), weight: 3 },
    ...(known.length ? [{ arbitrary: fc.constantFrom(...known).map(urlEncode), weight: 4 }] : []),
  ];
  if (!hostile) return fc.oneof(...sane);
  return fc
    .oneof(
      ...sane,
      {
        arbitrary: fc.constantFrom(...numericStrings, ...hostileNumberTokens).map(encode),
        weight: 2,
      },
      { arbitrary: hostileStringArb.map((s) => encode(s.slice(0, 6000))), weight: 2 },
      { arbitrary: hostileEncodedArb, weight: 2 },
      {
        // A UUID in upper case, with braces, or one character short.
        arbitrary: fc
          .uuid()
          .chain((u) => fc.constantFrom(u.toUpperCase(), `{${u}}`, u.slice(1), `${u}0`)),
        weight: 1,
      },
    )
    .map((v) => v.slice(0, maxUrlValueLength));
}

export interface Parameter {
  name: string;
  in: string;
  schema?: SchemaOrRef;
}

/**
 * A query string for the operation's query parameters, each present or not. Hostile: values
 * past their schema, repeated parameters, unknown ones; else values valid under the schema.
 */
export function queryArb(
  params: Parameter[],
  ctx: SchemaContext,
  hostile = true,
): fc.Arbitrary<string> {
  const query = params.filter((p) => p.in === "query");
  const one = (p: Parameter) =>
    fc
      .array(parameterValueArb(p.schema, p.name, ctx, hostile), {
        minLength: 0,
        maxLength: hostile ? 2 : 1,
      })
      .map((values) => values.map((v) => `${encodeURIComponent(p.name)}=${v}`));
  const unknown = hostile
    ? fc.oneof(
        fc.constant<string[]>([]),
        hostileEncodedArb.map((v) => [`${v}=${v}`]),
        fc.constant(["unknown=1", "limit", "=x", "&"]),
      )
    : fc.constant<string[]>([]);
  return fc
    .tuple(fc.tuple(...query.map(one)), unknown)
    .map(([parts, extra]) => [...parts.flat(), ...extra].join("&").slice(0, maxQueryLength));
}
