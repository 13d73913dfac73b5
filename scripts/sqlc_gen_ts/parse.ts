import { GenError } from "./errors.ts";

/*
 * Splitting a sqlc query file into its queries. Each query starts with a header comment
 * `-- name: QueryName :command` and runs to the next header or the end of the file.
 */

export const supportedCommands = [":one", ":many", ":exec", ":execrows"] as const;
export type Command = (typeof supportedCommands)[number];

export interface QueryBlock {
  /** The query file as shown in messages and the generated header (e.g. `sql/queries/users.sql`). */
  file: string;
  /** 1-based line of the `-- name:` header in `file`. */
  line: number;
  name: string;
  command: Command;
  /**
   * The query as the generated constant holds it: the normalised header line, then every line up
   * to the next header, without trailing blank and comment-only lines, trailing whitespace and a
   * trailing `;`. Line k (0-based) of `text` is line `line + k` of `file`.
   */
  text: string;
}

const headerStart = /^\s*--\s*name\s*:/i;
const headerFull = /^\s*--\s*name:\s*(\S+)\s+(\S+)\s*$/;
const queryName = /^[A-Za-z][A-Za-z0-9_]*$/;

function isSupported(cmd: string): cmd is Command {
  return (supportedCommands as readonly string[]).includes(cmd);
}

/** Drops trailing whitespace, blank and comment-only lines (they belong to the next query), and a `;`. */
function trimQueryEnd(lines: string[]): string[] {
  const out = [...lines];
  for (;;) {
    const last = out[out.length - 1];
    if (last === undefined) return out;
    const t = last.trim();
    if (t === "" || t.startsWith("--")) {
      out.pop();
      continue;
    }
    let s = last.trimEnd();
    if (s.endsWith(";")) s = s.slice(0, -1).trimEnd();
    if (s.trim() === "") {
      out.pop();
      continue;
    }
    out[out.length - 1] = s;
    return out;
  }
}

/**
 * Splits `source` (the contents of `file`) into queries. Throws a GenError naming `file:line` for
 * a malformed header, an unsupported command, an invalid name, or SQL before the first header.
 */
export function parseQueryFile(file: string, source: string): QueryBlock[] {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  const blocks: QueryBlock[] = [];
  let current: { line: number; name: string; command: Command; lines: string[] } | undefined;

  const finish = () => {
    if (!current) return;
    const body = trimQueryEnd(current.lines);
    const header = `-- name: ${current.name} ${current.command}`;
    blocks.push({
      file,
      line: current.line,
      name: current.name,
      command: current.command,
      text: [header, ...body].join("\n"),
    });
  };

  lines.forEach((raw, i) => {
    const lineNo = i + 1;
    if (headerStart.test(raw)) {
      const m = headerFull.exec(raw);
      if (!m?.[2]?.startsWith(":")) {
        throw new GenError(
          file,
          lineNo,
          `malformed query header ${JSON.stringify(raw.trim())} (expected "-- name: QueryName :command")`,
        );
      }
      const name = m[1]!;
      const cmd = m[2];
      if (!queryName.test(name)) {
        throw new GenError(
          file,
          lineNo,
          `invalid query name ${JSON.stringify(name)} (use letters, digits and _, starting with a letter)`,
        );
      }
      if (!isSupported(cmd)) {
        throw new GenError(
          file,
          lineNo,
          `unsupported command ${cmd} in query ${name} (supported: ${supportedCommands.join(", ")})`,
        );
      }
      finish();
      current = { line: lineNo, name, command: cmd, lines: [] };
      return;
    }
    if (current) {
      current.lines.push(raw);
    } else if (raw.trim() !== "" && !raw.trim().startsWith("--")) {
      throw new GenError(file, lineNo, 'SQL before the first "-- name:" header');
    }
  });
  finish();
  return blocks;
}

/** `GetUserByID` → `getUserByID`, as sqlc-gen-typescript names functions. */
export function lowerFirst(name: string): string {
  return name.charAt(0).toLowerCase() + name.slice(1);
}
