import type pg from "pg";
import { type Described, describeStatement, type ServerError } from "./describe.ts";
import type { AnalyzedQuery, Field } from "./emit.ts";
import { GenError } from "./errors.ts";
import { RelationCatalog, resultNullability } from "./infer.ts";
import type { PreparedQuery } from "./params.ts";
import { alwaysOneRow } from "./rows.ts";
import { nullable, TypeCatalog } from "./types.ts";

const jsonOid = 114;
const jsonbOid = 3802;

/** A connection to a migrated database plus the catalogs cached across queries. */
export class Analyzer {
  readonly types = new TypeCatalog();
  readonly relations = new RelationCatalog();

  constructor(
    readonly client: pg.ClientBase,
    /** Receives notes (e.g. nullability inference fell back to NOT NULL constraints). */
    readonly note: (msg: string) => void = () => {},
  ) {}

  /**
   * Describes a prepared query on the server and works out its TypeScript parameter and result
   * types. Throws a GenError (file:line) for anything the author has to fix.
   */
  async analyze(q: PreparedQuery): Promise<AnalyzedQuery> {
    const { block } = q;
    const where = `in query ${block.name}`;
    let described: Described;
    try {
      described = await describeStatement(this.client, q.sql);
    } catch (err) {
      const e = err as ServerError;
      if (typeof e.code !== "string") throw err; // not the server's answer: a broken connection
      const pos = Number(e.position);
      let line = Number.isInteger(pos) && pos > 0 ? q.lineOf(pos - 1) : block.line;
      let hint = e.hint ? ` (hint: ${e.hint})` : "";
      // 42P18 indeterminate_datatype: "could not determine data type of parameter $n"
      const untyped = /parameter \$(\d+)/.exec(e.message);
      const param = untyped ? q.params.find((p) => p.number === Number(untyped[1])) : undefined;
      if (param && e.code === "42P18") {
        line = q.paramLine(param.number);
        hint = ` (cast it, e.g. @${param.name}::text)`;
      }
      throw new GenError(block.file, line, `${e.message} ${where}${hint}`);
    }
    const { paramTypes, fields } = described;
    if (paramTypes.length !== q.params.length) {
      throw new GenError(
        block.file,
        block.line,
        `the server sees ${paramTypes.length} parameters, the generator ${q.params.length} ${where}`,
      );
    }
    await this.types.load(this.client, [...paramTypes, ...fields.map((f) => f.dataTypeID)]);

    const params: Field[] = q.params.map((p, i) => ({
      name: p.name,
      type: nullable(this.types.paramType(paramTypes[i]!), p.nullable),
      ...(paramTypes[i] === jsonOid || paramTypes[i] === jsonbOid ? { json: true } : {}),
    }));

    let columns: Field[] = [];
    if (block.command === ":one" || block.command === ":many") {
      if (fields.length === 0) {
        throw new GenError(
          block.file,
          block.line,
          `query ${block.name} is ${block.command} but its statement returns no columns; use :exec or :execrows (or add RETURNING)`,
        );
      }
      const seen = new Set<string>();
      fields.forEach((f, i) => {
        if (f.name === "?column?") {
          throw new GenError(
            block.file,
            block.line,
            `result column ${i + 1} of query ${block.name} has no name; name it with AS`,
          );
        }
        if (seen.has(f.name)) {
          throw new GenError(
            block.file,
            block.line,
            `query ${block.name} returns more than one column named "${f.name}"; alias them (AS other_name)`,
          );
        }
        seen.add(f.name);
      });
      await this.relations.loadFor(this.client, q.stmt);
      await this.relations.loadAttributes(this.client, fields);
      const nullableParams = new Set(q.params.filter((p) => p.nullable).map((p) => p.number));
      const result = resultNullability(q.stmt, fields, {
        relations: this.relations,
        nullableParams,
        attNotNull: (t, c) => this.relations.attNotNull(t, c),
      });
      if (!result.inferred) {
        this.note(
          `${block.file}:${block.line}: note: ${result.reason} ${where}; result nullability falls back to the columns' NOT NULL constraints`,
        );
      }
      columns = fields.map((f, i) => ({
        name: f.name,
        type: nullable(this.types.resultType(f.dataTypeID), !result.notNull[i]),
      }));
    }
    const oneRow = block.command === ":one" && (await alwaysOneRow(this.client, q.stmt));
    return {
      name: block.name,
      command: block.command,
      sql: q.sql,
      params,
      columns,
      ...(oneRow ? { alwaysOneRow: true } : {}),
    };
  }
}
