/**
 * A problem in a query file, reported as `file:line: message` (line is 1-based). The generator
 * collects these and reports them all before exiting non-zero.
 */
export class GenError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly detail: string,
  ) {
    super(`${file}:${line}: ${detail}`);
    this.name = "GenError";
  }
}

/** Several problems at once (one per query); the message lists them all, one a line. */
export class GenErrors extends Error {
  constructor(readonly errors: GenError[]) {
    super(errors.map((e) => e.message).join("\n"));
    this.name = "GenErrors";
  }
}

/** The 1-based line of `offset` (a UTF-16 index) in `text`, counted from `firstLine`. */
export function lineAt(text: string, offset: number, firstLine = 1): number {
  let line = firstLine;
  const end = Math.min(Math.max(offset, 0), text.length);
  for (let i = 0; i < end; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
