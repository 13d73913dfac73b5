import { parseSync } from "libpg-query";
import type pg from "pg";
import { as, list, names, type Obj, obj, str, sval, unwrap, walk } from "./ast.ts";
import type { DescribedField } from "./describe.ts";

/*
 * Result-column nullability, inferred from the statement's parse tree. PostgreSQL's Describe says
 * which table column a result column comes from, but not whether an outer join, an aggregate or
 * an expression can make it NULL; this walks the tree to find out.
 *
 * Every rule errs towards "nullable": a node this does not understand is nullable, and when the
 * inferred columns do not line up with the row description, each column falls back to its table
 * column's NOT NULL (or nullable when computed).
 */

export interface Col {
  name: string;
  notNull: boolean;
}

/** Looks up a table or view by its name as written (unqualified: the search_path decides). */
export interface RelationSource {
  /** The relation's columns in attnum order, or undefined when there is no such relation. */
  relation(schema: string | undefined, name: string): Col[] | undefined;
}

export interface InferContext {
  relations: RelationSource;
  /** `$n` numbers of parameters declared with sqlc.narg. */
  nullableParams: ReadonlySet<number>;
}

/** The statement uses something inference cannot follow (then the fallback applies). */
export class Unsupported extends Error {
  constructor(what: string) {
    super(`cannot infer nullability: ${what}`);
    this.name = "Unsupported";
  }
}

/** A name in FROM (table, view, CTE, subquery, function, join alias). */
interface Rel {
  name: string;
  /** null: the columns are not known (a function without a column list). */
  columns: Col[] | null;
  /** On the nullable side of an outer join. */
  nullable: boolean;
}

/** What one FROM item contributes: its names, and its columns in `*` order. */
interface FromItem {
  rels: Rel[];
  columns: Col[] | null;
}

/** Names visible to a (sub)query: its CTEs and FROM items, then those of enclosing queries. */
export class Scope {
  readonly ctes = new Map<string, Col[] | null>();
  readonly items: FromItem[] = [];
  constructor(
    readonly ctx: InferContext,
    readonly parent?: Scope,
  ) {}

  static root(ctx: InferContext): Scope {
    return new Scope(ctx);
  }

  /** The CTE `name` visible here: its columns (null when unknown), or undefined when none. */
  cte(name: string): { columns: Col[] | null } | undefined {
    for (let s: Scope | undefined = this; s; s = s.parent) {
      if (s.ctes.has(name)) return { columns: s.ctes.get(name) ?? null };
    }
    return undefined;
  }

  /** The FROM name `name` in this query level only. */
  localRel(name: string): Rel | undefined {
    for (const item of this.items) {
      for (const r of item.rels) if (r.name === name) return r;
    }
    return undefined;
  }

  /** An unqualified column of this query level. */
  localColumn(name: string): Col | undefined {
    for (const item of this.items) {
      const c = item.columns?.find((col) => col.name === name);
      if (c) return c;
    }
    // A join whose other side has unknown columns: look in the relations themselves.
    for (const item of this.items) {
      for (const r of item.rels) {
        const c = r.columns?.find((col) => col.name === name);
        if (c) return c;
      }
    }
    return undefined;
  }
}

const nullified = (cols: Col[] | null): Col[] | null =>
  cols ? cols.map((c) => ({ name: c.name, notNull: false })) : null;

function nullifyItem(item: FromItem): FromItem {
  return {
    rels: item.rels.map((r) => ({ name: r.name, columns: nullified(r.columns), nullable: true })),
    columns: nullified(item.columns),
  };
}

/** Applies an alias column list (`AS t(a, b)`) to the first columns. */
function rename(cols: Col[] | null, aliases: string[]): Col[] | null {
  if (!cols || aliases.length === 0) return cols;
  return cols.map((c, i) => ({ name: aliases[i] ?? c.name, notNull: c.notNull }));
}

/* ---------------------------------------------------------------------------------------------
 * Statements
 */

/**
 * The result columns of `stmt` (a wrapped node: SelectStmt, InsertStmt, UpdateStmt, DeleteStmt)
 * with their inferred nullability, resolving names in `scope`. Throws Unsupported when the
 * columns cannot be known (e.g. `*` over a function without a column list).
 */
export function inferColumns(stmt: unknown, scope: Scope): Col[] {
  const n = unwrap(stmt);
  if (!n) throw new Unsupported("no statement");
  switch (n.kind) {
    case "SelectStmt":
      return inferSelect(n.body, scope);
    case "InsertStmt":
    case "UpdateStmt":
    case "DeleteStmt":
      return inferModify(n.kind, n.body, scope);
    default:
      throw new Unsupported(n.kind);
  }
}

/** SelectStmt fields, whether wrapped (`{ SelectStmt: ... }`) or bare (set-operation arms). */
function selectBody(v: unknown): Obj | undefined {
  return (
    as(v, "SelectStmt") ??
    (obj(v)?.targetList || obj(v)?.op || obj(v)?.valuesLists ? obj(v) : undefined)
  );
}

function inferSelect(sel: Obj, outer: Scope): Col[] {
  const scope = new Scope(outer.ctx, outer);
  addWith(scope, sel.withClause);

  const op = str(sel.op);
  if (op !== undefined && op !== "SETOP_NONE") {
    const l = selectBody(sel.larg);
    const r = selectBody(sel.rarg);
    if (!l || !r) throw new Unsupported(op);
    const left = inferSelect(l, scope);
    const right = inferSelect(r, scope);
    if (left.length !== right.length) throw new Unsupported(`${op} arms of different widths`);
    return left.map((c, i) => ({ name: c.name, notNull: c.notNull && right[i]!.notNull }));
  }

  const values = list(sel.valuesLists);
  if (values.length > 0) {
    const rows = values.map((row) => list(as(row, "List")?.items));
    const width = rows[0]!.length;
    if (rows.some((row) => row.length !== width))
      throw new Unsupported("VALUES rows of different widths");
    return Array.from({ length: width }, (_, i) => ({
      name: `column${i + 1}`,
      notNull: rows.every((row) => notNull(row[i], scope)),
    }));
  }

  for (const item of list(sel.fromClause)) scope.items.push(fromItem(item, scope));
  return targetList(list(sel.targetList), scope);
}

function inferModify(kind: string, stmt: Obj, outer: Scope): Col[] {
  const scope = new Scope(outer.ctx, outer);
  addWith(scope, stmt.withClause);
  const target = obj(stmt.relation);
  if (target) scope.items.push(rangeVar(target, scope));
  const extra =
    kind === "UpdateStmt" ? stmt.fromClause : kind === "DeleteStmt" ? stmt.usingClause : [];
  for (const item of list(extra)) scope.items.push(fromItem(item, scope));
  const returning = obj(stmt.returningClause)?.exprs ?? stmt.returningList;
  return targetList(list(returning), scope);
}

/** Registers a WITH clause's CTEs, each seeing the ones before it (and itself when recursive). */
function addWith(scope: Scope, withClause: unknown): void {
  const w = obj(withClause);
  if (!w) return;
  const recursive = w.recursive === true;
  for (const node of list(w.ctes)) {
    const cte = as(node, "CommonTableExpr");
    const name = str(cte?.ctename);
    if (!cte || !name) continue;
    const aliases = names(cte.aliascolnames);
    let cols: Col[] | null;
    try {
      const sel = as(cte.ctequery, "SelectStmt");
      const larg = selectBody(sel?.larg);
      if (recursive && sel && larg && str(sel.op) !== "SETOP_NONE") {
        // The recursive arm refers to the CTE itself: seed it with the non-recursive arm.
        scope.ctes.set(name, rename(inferSelect(larg, scope), aliases));
      }
      cols = rename(inferColumns(cte.ctequery, scope), aliases);
    } catch (err) {
      if (!(err instanceof Unsupported)) throw err;
      cols = null; // referencing its columns gives nullable; `*` over it is unsupported
    }
    scope.ctes.set(name, cols);
  }
}

/* ---------------------------------------------------------------------------------------------
 * FROM
 */

function rangeVar(rv: Obj, scope: Scope): FromItem {
  const relname = str(rv.relname) ?? "";
  const schema = str(rv.schemaname);
  const alias = obj(rv.alias);
  let cols: Col[] | null = null;
  const cte = schema === undefined ? scope.cte(relname) : undefined;
  if (cte) cols = cte.columns;
  else cols = scope.ctx.relations.relation(schema, relname) ?? null;
  cols = rename(cols, names(alias?.colnames));
  const name = str(alias?.aliasname) ?? relname;
  return { rels: [{ name, columns: cols, nullable: false }], columns: cols };
}

/** Set-returning functions whose single output column is named after the function or alias. */
const scalarSetFunctions = new Set([
  "unnest",
  "generate_series",
  "generate_subscripts",
  "regexp_split_to_table",
  "json_array_elements",
  "jsonb_array_elements",
  "json_array_elements_text",
  "jsonb_array_elements_text",
  "json_object_keys",
  "jsonb_object_keys",
]);

/** Function calls in FROM: their columns are always nullable. */
function rangeFunction(rf: Obj): FromItem {
  const alias = obj(rf.alias);
  const aliasName = str(alias?.aliasname);
  const fns = list(rf.functions).map((f) => list(as(f, "List")?.items));
  const colnames = names(alias?.colnames);
  let colNames: string[] | null = null;
  const firstCall = as(fns[0]?.[0], "FuncCall");
  const fname = names(firstCall?.funcname).at(-1);
  if (colnames.length > 0) {
    colNames = colnames;
  } else if (fns.length === 1 && list(fns[0]?.[1]).length > 0) {
    colNames = list(fns[0]?.[1]).map((d) => str(as(d, "ColumnDef")?.colname) ?? "?column?");
  } else if (
    fns.length === 1 &&
    fname &&
    scalarSetFunctions.has(fname) &&
    list(firstCall?.args).length <= 1
  ) {
    colNames = [aliasName ?? fname];
    if (rf.ordinality === true) colNames.push("ordinality");
  }
  const columns = colNames ? colNames.map((name) => ({ name, notNull: false })) : null;
  const name = aliasName ?? (fns.length === 1 ? fname : undefined);
  return { rels: name ? [{ name, columns, nullable: true }] : [], columns };
}

function join(j: Obj, scope: Scope): FromItem {
  const left = fromItem(j.larg, scope);
  const right = fromItem(j.rarg, scope);
  const type = str(j.jointype) ?? "JOIN_INNER";
  const l = type === "JOIN_RIGHT" || type === "JOIN_FULL" ? nullifyItem(left) : left;
  const r = type === "JOIN_LEFT" || type === "JOIN_FULL" ? nullifyItem(right) : right;

  let columns: Col[] | null = null;
  const using = names(j.usingClause);
  if (using.length > 0 || j.isNatural === true) {
    if (left.columns && right.columns && l.columns && r.columns) {
      const rightCols = right.columns;
      const keys =
        j.isNatural === true
          ? left.columns
              .filter((c) => rightCols.some((rc) => rc.name === c.name))
              .map((c) => c.name)
          : using;
      const merged = keys.map((k) => {
        const lo = left.columns?.find((c) => c.name === k)?.notNull ?? false;
        const ro = right.columns?.find((c) => c.name === k)?.notNull ?? false;
        const nn =
          type === "JOIN_LEFT"
            ? lo
            : type === "JOIN_RIGHT"
              ? ro
              : type === "JOIN_FULL"
                ? lo && ro
                : lo || ro;
        return { name: k, notNull: nn };
      });
      const rest = (cols: Col[]) => cols.filter((c) => !keys.includes(c.name));
      columns = [...merged, ...rest(l.columns), ...rest(r.columns)];
    }
  } else if (l.columns && r.columns) {
    columns = [...l.columns, ...r.columns];
  }

  const rels = [...l.rels, ...r.rels];
  const alias = obj(j.alias);
  const aliasName = str(alias?.aliasname);
  if (aliasName) {
    columns = rename(columns, names(alias?.colnames));
    rels.push({ name: aliasName, columns, nullable: false });
  }
  return { rels, columns };
}

function fromItem(node: unknown, scope: Scope): FromItem {
  const n = unwrap(node);
  switch (n?.kind) {
    case "RangeVar":
      return rangeVar(n.body, scope);
    case "JoinExpr":
      return join(n.body, scope);
    case "RangeFunction":
      return rangeFunction(n.body);
    case "RangeSubselect": {
      const alias = obj(n.body.alias);
      let cols: Col[] | null;
      try {
        cols = inferColumns(n.body.subquery, scope);
      } catch (err) {
        if (!(err instanceof Unsupported)) throw err;
        cols = null;
      }
      cols = rename(cols, names(alias?.colnames));
      const name = str(alias?.aliasname);
      return { rels: name ? [{ name, columns: cols, nullable: false }] : [], columns: cols };
    }
    case "RangeTableSample":
      return fromItem(n.body.relation, scope);
    default:
      return { rels: [], columns: null };
  }
}

/* ---------------------------------------------------------------------------------------------
 * Target lists and expressions
 */

function targetList(targets: unknown[], scope: Scope): Col[] {
  const out: Col[] = [];
  for (const t of targets) {
    const rt = as(t, "ResTarget");
    if (!rt) throw new Unsupported("target");
    const ref = as(rt.val, "ColumnRef");
    const fields = list(ref?.fields);
    if (ref && as(fields.at(-1), "A_Star")) {
      if (fields.length === 1) {
        if (scope.items.length === 0) throw new Unsupported("* without FROM");
        for (const item of scope.items) {
          if (!item.columns) throw new Unsupported("* over a relation with unknown columns");
          out.push(...item.columns);
        }
      } else {
        const relName = sval(fields.at(-2));
        const rel = relName ? findRel(relName, scope) : undefined;
        if (!rel?.columns) throw new Unsupported(`${relName ?? "?"}.*`);
        out.push(...rel.columns);
      }
      continue;
    }
    out.push({ name: str(rt.name) ?? columnName(rt.val), notNull: notNull(rt.val, scope) });
  }
  return out;
}

function findRel(name: string, scope: Scope): Rel | undefined {
  for (let s: Scope | undefined = scope; s; s = s.parent) {
    const r = s.localRel(name);
    if (r) return r;
  }
  return undefined;
}

function columnRefNotNull(fields: unknown[], scope: Scope): boolean {
  const parts = fields.map(sval);
  if (parts.some((p) => p === undefined)) return false;
  const strs = parts as string[];
  if (strs.length === 1) {
    const name = strs[0]!;
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      const col = s.localColumn(name);
      if (col) return col.notNull;
      const rel = s.localRel(name); // a whole-row reference
      if (rel) return !rel.nullable;
      // It may be a column of a FROM item whose columns are unknown: do not look further out.
      if (s.items.some((item) => item.columns === null)) return false;
    }
    return false;
  }
  // rel.col, schema.rel.col, db.schema.rel.col
  const relName = strs[strs.length - 2]!;
  const colName = strs[strs.length - 1]!;
  const rel = findRel(relName, scope);
  return rel?.columns?.find((c) => c.name === colName)?.notNull ?? false;
}

/** Functions whose result is never NULL. */
const neverNull = new Set([
  "count",
  "now",
  "clock_timestamp",
  "statement_timestamp",
  "transaction_timestamp",
  "gen_random_uuid",
  "uuidv4",
  "uuidv7",
  "random",
  "jsonb_build_object",
  "json_build_object",
  "jsonb_build_array",
  "json_build_array",
  "concat",
  "format",
  "row_number",
  "rank",
  "dense_rank",
  "percent_rank",
  "cume_dist",
  "pg_backend_pid",
  "current_database",
]);

/** Functions that are NULL only when an argument is (STRICT). */
const nullOnlyOnNullInput = new Set([
  "lower",
  "upper",
  "length",
  "char_length",
  "character_length",
  "octet_length",
  "bit_length",
  "btrim",
  "ltrim",
  "rtrim",
  "trim",
  "encode",
  "decode",
  "sha224",
  "sha256",
  "sha384",
  "sha512",
  "md5",
  "left",
  "right",
  "lpad",
  "rpad",
  "replace",
  "substring",
  "substr",
  "split_part",
  "strpos",
  "position",
  "initcap",
  "reverse",
  "repeat",
  "translate",
  "to_hex",
  "abs",
  "round",
  "trunc",
  "floor",
  "ceil",
  "ceiling",
  "sign",
  "mod",
  "power",
  "sqrt",
  "date_trunc",
  "date_part",
  "extract",
  "timezone",
  "make_interval",
  "to_char",
  "to_timestamp",
  "cardinality",
  "array_to_string",
  "jsonb_array_length",
  "json_array_length",
  "to_jsonb",
  "to_json",
  "jsonb_typeof",
  "json_typeof",
  "similar_to_escape",
]);

function argsOf(call: Obj): unknown[] {
  return list(call.args).map((a) => as(a, "NamedArgExpr")?.arg ?? a);
}

/** Whether `expr` can never be NULL (false when unsure). */
export function notNull(expr: unknown, scope: Scope): boolean {
  const n = unwrap(expr);
  if (!n) return false;
  const b = n.body;
  const all = (xs: unknown[]) => xs.every((x) => notNull(x, scope));
  switch (n.kind) {
    case "ColumnRef":
      return columnRefNotNull(list(b.fields), scope);
    case "A_Const":
      return b.isnull !== true;
    case "TypeCast":
    case "CollateClause":
    case "NamedArgExpr":
      return notNull(b.arg, scope);
    case "ParamRef":
      return typeof b.number === "number" && !scope.ctx.nullableParams.has(b.number);
    case "CoalesceExpr":
    case "MinMaxExpr": // GREATEST/LEAST ignore NULL arguments
      return list(b.args).some((a) => notNull(a, scope));
    case "FuncCall": {
      const fname = names(b.funcname).at(-1)?.toLowerCase() ?? "";
      if (b.agg_star === true || neverNull.has(fname)) return true;
      if (nullOnlyOnNullInput.has(fname)) return all(argsOf(b));
      return false;
    }
    case "SubLink": {
      const type = str(b.subLinkType);
      return type === "EXISTS_SUBLINK" || type === "ARRAY_SUBLINK";
    }
    case "A_Expr": {
      const kind = str(b.kind);
      if (kind === "AEXPR_DISTINCT" || kind === "AEXPR_NOT_DISTINCT") return true;
      // NULLIF yields NULL by design; `= ANY(array)` is NULL when the array holds a NULL.
      if (kind === "AEXPR_NULLIF" || kind === "AEXPR_OP_ANY" || kind === "AEXPR_OP_ALL")
        return false;
      const operands = [b.lexpr, b.rexpr]
        .filter((x) => x !== undefined)
        .flatMap((x) => (as(x, "List") ? list(as(x, "List")?.items) : [x]));
      return operands.length > 0 && all(operands);
    }
    case "BoolExpr":
      return all(list(b.args));
    case "NullTest":
    case "BooleanTest":
    case "SQLValueFunction":
    case "RowExpr":
    case "A_ArrayExpr":
    case "GroupingFunc":
      return true;
    case "CaseExpr": {
      if (b.defresult === undefined) return false;
      const results = list(b.args).map((w) => as(w, "CaseWhen")?.result);
      return all([...results, b.defresult]);
    }
    default:
      return false;
  }
}

/** The column name PostgreSQL gives an unaliased expression (FigureColname, roughly). */
export function columnName(expr: unknown): string {
  return figure(expr) ?? "?column?";
}

function figure(expr: unknown): string | undefined {
  const n = unwrap(expr);
  if (!n) return undefined;
  const b = n.body;
  switch (n.kind) {
    case "ColumnRef": {
      const last = sval(list(b.fields).at(-1));
      return last;
    }
    case "A_Indirection": {
      const last = sval(list(b.indirection).at(-1));
      return last ?? figure(b.arg);
    }
    case "FuncCall":
      return names(b.funcname).at(-1);
    case "A_Expr":
      return str(b.kind) === "AEXPR_NULLIF" ? "nullif" : undefined;
    case "TypeCast":
      return figure(b.arg) ?? names(obj(b.typeName)?.names).at(-1);
    case "CollateClause":
      return figure(b.arg);
    case "GroupingFunc":
      return "grouping";
    case "SubLink": {
      const type = str(b.subLinkType);
      if (type === "EXISTS_SUBLINK") return "exists";
      if (type === "ARRAY_SUBLINK") return "array";
      if (type === "EXPR_SUBLINK") {
        const first = as(list(as(b.subselect, "SelectStmt")?.targetList)[0], "ResTarget");
        return str(first?.name) ?? figure(first?.val);
      }
      return undefined;
    }
    case "CaseExpr":
      return figure(b.defresult) ?? "case";
    case "A_ArrayExpr":
      return "array";
    case "RowExpr":
      return "row";
    case "CoalesceExpr":
      return "coalesce";
    case "MinMaxExpr":
      return str(b.op) === "IS_LEAST" ? "least" : "greatest";
    case "SQLValueFunction":
      return str(b.op)
        ?.replace(/^SVFOP_/, "")
        .replace(/_N$/, "")
        .toLowerCase();
    default:
      return undefined;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Putting it together with the row description
 */

export interface Nullability {
  /** Per result column, aligned with the row description. */
  notNull: boolean[];
  /** false: inference did not line up and the per-column fallback was used. */
  inferred: boolean;
  /** Why the fallback was used. */
  reason?: string;
}

export interface ResultContext extends InferContext {
  /** pg_attribute.attnotnull of a table column (the fallback), undefined when unknown. */
  attNotNull(tableID: number, columnID: number): boolean | undefined;
}

/**
 * Nullability of each described result column: inferred from `stmt`; when that fails or does not
 * produce one column per field, each column falls back to its table column's NOT NULL constraint,
 * or nullable for a computed column.
 */
export function resultNullability(
  stmt: unknown,
  fields: DescribedField[],
  ctx: ResultContext,
): Nullability {
  let reason: string;
  try {
    const cols = inferColumns(stmt, Scope.root(ctx));
    if (cols.length === fields.length)
      return { notNull: cols.map((c) => c.notNull), inferred: true };
    reason = `inferred ${cols.length} columns, the server describes ${fields.length}`;
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err;
    reason = err.message;
  }
  return {
    notNull: fields.map((f) =>
      f.tableID !== 0 ? (ctx.attNotNull(f.tableID, f.columnID) ?? false) : false,
    ),
    inferred: false,
    reason,
  };
}

/* ---------------------------------------------------------------------------------------------
 * The catalog side: tables and views from the scratch database
 */

interface RelationEntry {
  kind: string;
  attrs: Col[];
  view?: unknown;
  /** A view's columns once inferred. */
  inferred?: Col[];
  inferring?: boolean;
}

function relationKey(schema: string | undefined, name: string): string {
  return `${schema ?? ""}\u0000${name}`;
}

function quoteIdent(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}

/** Every RangeVar below `node` (wrapped in FROM, bare as INSERT/UPDATE/DELETE targets). */
function rangeVars(node: unknown): { schema: string | undefined; name: string }[] {
  const out: { schema: string | undefined; name: string }[] = [];
  for (const o of walk(node)) {
    if (typeof o.relname === "string" && ("inh" in o || "relpersistence" in o || "location" in o)) {
      out.push({ schema: str(o.schemaname), name: o.relname });
    }
  }
  return out;
}

/**
 * Tables and views (with their columns' NOT NULL) looked up in the scratch database, cached for
 * the whole run. A view's columns are inferred from its definition (pg_get_viewdef).
 */
export class RelationCatalog implements RelationSource {
  private readonly relations = new Map<string, RelationEntry | null>();
  private readonly attributes = new Map<string, boolean>();
  private readonly attributesLoaded = new Set<number>();

  /** Loads every table and view `stmt` names (and the ones those views use). */
  async loadFor(client: pg.ClientBase, stmt: unknown): Promise<void> {
    const pending = rangeVars(stmt);
    while (pending.length > 0) {
      const { schema, name } = pending.pop()!;
      const key = relationKey(schema, name);
      if (this.relations.has(key)) continue;
      const qualified =
        schema === undefined ? quoteIdent(name) : `${quoteIdent(schema)}.${quoteIdent(name)}`;
      const { rows } = await client.query<{
        relkind: string;
        attrs: Col[];
        viewdef: string | null;
      }>(
        `SELECT c.relkind::text AS relkind,
           coalesce((SELECT json_agg(json_build_object('name', a.attname, 'notNull', a.attnotnull) ORDER BY a.attnum)
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS attrs,
           CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS viewdef
         FROM pg_class c WHERE c.oid = to_regclass($1::text)`,
        [qualified],
      );
      const row = rows[0];
      if (!row) {
        this.relations.set(key, null); // a CTE name, or a table the server will complain about
        continue;
      }
      const entry: RelationEntry = { kind: row.relkind, attrs: row.attrs };
      if (row.viewdef) {
        try {
          const tree = parseSync(row.viewdef) as { stmts?: { stmt?: unknown }[] };
          entry.view = tree.stmts?.[0]?.stmt;
          pending.push(...rangeVars(entry.view));
        } catch {
          // an unparsable view: its columns stay nullable
        }
      }
      this.relations.set(key, entry);
    }
  }

  /** Loads attnotnull for the table columns in `fields` (the per-column fallback). */
  async loadAttributes(client: pg.ClientBase, fields: DescribedField[]): Promise<void> {
    const tables = [...new Set(fields.map((f) => f.tableID))].filter(
      (t) => t !== 0 && !this.attributesLoaded.has(t),
    );
    if (tables.length === 0) return;
    const { rows } = await client.query<{ attrelid: number; attnum: number; attnotnull: boolean }>(
      `SELECT attrelid::int4 AS attrelid, attnum::int4 AS attnum, attnotnull
       FROM pg_attribute WHERE attrelid = ANY($1::int4[]) AND attnum > 0`,
      [tables],
    );
    for (const t of tables) this.attributesLoaded.add(t);
    for (const r of rows) this.attributes.set(`${r.attrelid}:${r.attnum}`, r.attnotnull);
  }

  attNotNull(tableID: number, columnID: number): boolean | undefined {
    return this.attributes.get(`${tableID}:${columnID}`);
  }

  relation(schema: string | undefined, name: string): Col[] | undefined {
    const entry = this.relations.get(relationKey(schema, name));
    if (!entry) return undefined;
    if (entry.view === undefined) {
      return entry.kind === "v" || entry.kind === "m"
        ? entry.attrs.map((a) => ({ name: a.name, notNull: false }))
        : entry.attrs;
    }
    if (entry.inferred) return entry.inferred;
    if (entry.inferring) return entry.attrs.map((a) => ({ name: a.name, notNull: false }));
    entry.inferring = true;
    let cols: Col[] | undefined;
    try {
      cols = inferColumns(entry.view, Scope.root({ relations: this, nullableParams: new Set() }));
    } catch (err) {
      if (!(err instanceof Unsupported)) throw err;
    } finally {
      entry.inferring = false;
    }
    entry.inferred = entry.attrs.map((a, i) => ({
      name: a.name,
      notNull: cols !== undefined && cols.length === entry.attrs.length ? cols[i]!.notNull : false,
    }));
    return entry.inferred;
  }
}
