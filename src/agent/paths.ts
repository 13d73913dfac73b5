import fs from "node:fs/promises";
import path from "node:path";

/*
 * Paths of the file tools stay inside the workspace root (docs/operations.md "The workspace
 * agent"): a path is resolved against the root, must not climb out of it with `..` or an absolute
 * path, and must not lead out of it through a symbolic link, followed or dangling. This keeps the
 * file tools predictable; it is not a sandbox: `execute` runs any command as the agent's user.
 */

/** A tool failure the model is shown as the call's error result. */
export class ToolError extends Error {}

function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === "" || (!rel.startsWith(`..${path.sep}`) && rel !== ".." && !path.isAbsolute(rel));
}

/**
 * The real location of `p` (relative to `root`, or absolute inside it), which may not exist yet:
 * its deepest existing ancestor is resolved through any symbolic links and must lie inside the
 * root, and no missing component below it may be a symbolic link. `root` must be a real path.
 */
export async function resolveInside(root: string, p: string): Promise<string> {
  const abs = path.resolve(root, p);
  if (!inside(root, abs)) throw new ToolError(`${p}: outside the workspace root`);
  const missing: string[] = [];
  let probe = abs;
  for (;;) {
    try {
      const real = await fs.realpath(probe);
      if (!inside(root, real)) {
        throw new ToolError(`${p}: leads outside the workspace root through a symbolic link`);
      }
      return path.join(real, ...missing);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      // realpath fails on a symbolic link whose target is missing, too: writing through it would
      // create the target, wherever it points.
      const link = await fs.lstat(probe).catch(() => null);
      if (link?.isSymbolicLink()) {
        throw new ToolError(`${p}: is a symbolic link to a missing target`);
      }
      missing.unshift(path.basename(probe));
      probe = path.dirname(probe);
    }
  }
}

/** The path as the model should see it in results: relative to the root. */
export function shown(root: string, real: string): string {
  return path.relative(root, real) || ".";
}
