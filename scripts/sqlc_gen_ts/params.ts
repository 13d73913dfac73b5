import { loadModule, parseSync, scanSync } from "libpg-query";
import { byteToIndex, obj } from "./ast.ts";
import { GenError, lineAt } from "./errors.ts";
import type { QueryBlock } from "./parse.ts";

/*
 * Parameters. A query names its parameters with sqlc's forms:
 *   sqlc.arg(name)  sqlc.arg('name')  @name        a value of the parameter's type
 *   sqlc.narg(name) sqlc.narg('name')              the same, but the argument may be null
 * Each is rewritten to `$n`, numbered by first appearance; a name used again gets the same number.
 * The scanner finds them, so text inside strings and comments is never touched.
 */

let loaded: Promise<void> | undefined;

/** Loads libpg-query's WebAssembly module; call (and await) once before rewriteParams/prepareQuery. */
export function initSqlParser(): Promise<void> {
  loaded ??= loadModule();
  return loaded;
}

export interface Param {
  name: string;
  /** The `$n` the parameter became. */
  number: number;
  /** Declared with sqlc.narg (in at least one place): the argument may be null. */
  nullable: boolean;
  /** Where it first appears in the original text (a string index). */
  index: number;
}

/** One replaced span: `[origStart, origEnd)` of the source became `[newStart, newEnd)`. */
interface Edit {
  origStart: number;
  origEnd: number;
  newStart: number;
  newEnd: number;
}

export interface Rewritten {
  /** The text with `$n` placeholders. */
  text: string;
  /** In `$n` order. */
  params: Param[];
  /** Maps an index in `text` back to the index in the original text (for error positions). */
  originalIndex(index: number): number;
}

/** A problem at `index` (a string index into the original text). */
export class ParamError extends Error {
  constructor(
    message: string,
    readonly index: number,
  ) {
    super(message);
    this.name = "ParamError";
  }
}

interface Token {
  start: number;
  end: number;
  text: string;
  tokenName: string;
  keywordKind: number;
}

const paramName = /^[A-Za-z_][A-Za-z0-9_]*$/;

function isWord(t: Token | undefined): t is Token {
  return (
    t !== undefined && (t.tokenName === "IDENT" || t.keywordKind > 0) && /^[A-Za-z_"]/.test(t.text)
  );
}

/** The parameter name an identifier token spells: unquoted identifiers fold to lower case. */
function identName(text: string): string {
  if (text.startsWith('"')) return text.slice(1, -1).replaceAll('""', '"');
  return text.toLowerCase();
}

function stringName(text: string): string | undefined {
  if (!text.startsWith("'") || !text.endsWith("'") || text.length < 2) return undefined;
  return text.slice(1, -1).replaceAll("''", "'");
}

/**
 * Rewrites sqlc parameters to `$n`. Throws ParamError for positional `$1` parameters, malformed
 * or unknown `sqlc.*(...)` macros and invalid names. Needs initSqlParser().
 */
export function rewriteParams(text: string): Rewritten {
  // Scanner offsets are UTF-8 byte offsets; convert once.
  const bytes = Buffer.from(text, "utf8");
  const idx = (b: number) => (bytes.length === text.length ? b : byteToIndex(text, b));
  const tokens: Token[] = scanSync(text).tokens.map((t) => ({
    start: idx(t.start),
    end: idx(t.end),
    text: t.text,
    tokenName: t.tokenName,
    keywordKind: t.keywordKind,
  }));

  const byName = new Map<string, Param>();
  const replacements: { start: number; end: number; param: Param }[] = [];
  const use = (name: string, nullable: boolean, start: number, end: number) => {
    if (!paramName.test(name)) {
      throw new ParamError(
        `invalid parameter name ${JSON.stringify(name)} (use letters, digits and _, starting with a letter or _)`,
        start,
      );
    }
    let p = byName.get(name);
    if (!p) {
      p = { name, number: byName.size + 1, nullable, index: start };
      byName.set(name, p);
    } else if (nullable) {
      p.nullable = true;
    }
    replacements.push({ start, end, param: p });
  };

  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.tokenName === "PARAM") {
      throw new ParamError(
        `positional parameter ${t.text} is not supported: use sqlc.arg(name) or @name`,
        t.start,
      );
    }
    if (t.tokenName === "IDENT" && t.text.toLowerCase() === "sqlc" && tokens[i + 1]?.text === ".") {
      const fn = tokens[i + 2];
      const open = tokens[i + 3];
      if (!isWord(fn) || open?.text !== "(") continue; // sqlc.something that is no macro call
      const macro = fn.text.toLowerCase();
      if (macro !== "arg" && macro !== "narg") {
        throw new ParamError(
          `unsupported macro sqlc.${macro}(...) (supported: sqlc.arg(name), sqlc.narg(name), @name)`,
          t.start,
        );
      }
      const arg = tokens[i + 4];
      const close = tokens[i + 5];
      let name: string | undefined;
      if (arg?.tokenName === "SCONST") name = stringName(arg.text);
      else if (isWord(arg)) name = identName(arg.text);
      if (name === undefined || close?.text !== ")") {
        throw new ParamError(`malformed sqlc.${macro}(...): expected sqlc.${macro}(name)`, t.start);
      }
      use(name, macro === "narg", t.start, close.end);
      i += 5;
      continue;
    }
    if (t.text === "@") {
      const next = tokens[i + 1];
      if (isWord(next) && next.start === t.end) {
        use(identName(next.text), false, t.start, next.end);
        i += 1;
      }
    }
  }

  const edits: Edit[] = [];
  let out = "";
  let pos = 0;
  for (const r of replacements) {
    out += text.slice(pos, r.start);
    const placeholder = `$${r.param.number}`;
    edits.push({
      origStart: r.start,
      origEnd: r.end,
      newStart: out.length,
      newEnd: out.length + placeholder.length,
    });
    out += placeholder;
    pos = r.end;
  }
  out += text.slice(pos);

  return {
    text: out,
    params: [...byName.values()],
    originalIndex(index: number): number {
      let delta = 0;
      for (const e of edits) {
        if (index < e.newStart) break;
        if (index < e.newEnd) return e.origStart;
        delta = e.origEnd - e.newEnd;
      }
      return index + delta;
    },
  };
}

export interface PreparedQuery {
  block: QueryBlock;
  /** The query text with `$n` placeholders: the generated constant and what is described. */
  sql: string;
  params: Param[];
  /** The single statement's parse tree (`{ SelectStmt: ... }` etc). */
  stmt: unknown;
  /** The 1-based line in `block.file` of an index into `sql`. */
  lineOf(index: number): number;
  /** The 1-based line in `block.file` where parameter `$n` first appears. */
  paramLine(n: number): number;
}

interface ParseFailure {
  message: string;
  sqlDetails?: { cursorPosition?: number };
}

/**
 * Rewrites a query's parameters and parses it: exactly one statement. Errors are GenErrors at the
 * line of the problem. Needs initSqlParser().
 */
export function prepareQuery(block: QueryBlock): PreparedQuery {
  const where = ` in query ${block.name}`;
  const lineOfOriginal = (index: number) => lineAt(block.text, index, block.line);
  let rewritten: Rewritten;
  try {
    rewritten = rewriteParams(block.text);
  } catch (err) {
    if (err instanceof ParamError) {
      throw new GenError(block.file, lineOfOriginal(err.index), `${err.message}${where}`);
    }
    // The scanner fails on unterminated strings and the like; the parser explains those.
    rewritten = { text: block.text, params: [], originalIndex: (i) => i };
  }
  const lineOf = (index: number) => lineOfOriginal(rewritten.originalIndex(index));

  let tree: { stmts?: unknown[] };
  try {
    tree = parseSync(rewritten.text) as { stmts?: unknown[] };
  } catch (err) {
    const e = err as ParseFailure;
    const pos = e.sqlDetails?.cursorPosition;
    const line = typeof pos === "number" && pos >= 0 ? lineOf(pos) : block.line;
    throw new GenError(block.file, line, `${e.message}${where}`);
  }
  const stmts = tree.stmts ?? [];
  if (stmts.length === 0) {
    throw new GenError(block.file, block.line, `query ${block.name} has no SQL statement`);
  }
  if (stmts.length > 1) {
    const loc = obj(stmts[1])?.stmt_location;
    let at = typeof loc === "number" ? byteToIndex(rewritten.text, loc) : -1;
    while (at >= 0 && /\s/.test(rewritten.text.charAt(at))) at++;
    const line = at >= 0 ? lineOf(at) : block.line;
    throw new GenError(
      block.file,
      line,
      `query ${block.name} has ${stmts.length} statements; put each in its own query`,
    );
  }
  return {
    block,
    sql: rewritten.text,
    params: rewritten.params,
    stmt: obj(stmts[0])?.stmt,
    lineOf,
    paramLine: (n) => {
      const p = rewritten.params.find((x) => x.number === n);
      return p ? lineOfOriginal(p.index) : block.line;
    },
  };
}
