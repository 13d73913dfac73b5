import { migrate } from "../../src/db/migrate.ts";
import { withScratchDatabase as withEmptyDatabase } from "../../support/scratch_db.ts";

/*
 * A freshly migrated scratch database to describe queries against, dropped afterwards: a new
 * database on the server at DATABASE_URL, or else a temporary embedded cluster.
 */
export async function withScratchDatabase<T>(
  fn: (url: string) => Promise<T>,
  opts: { databaseUrl?: string; log?: (msg: string) => void } = {},
): Promise<T> {
  return withEmptyDatabase(
    "pgchatd_gen",
    async (url) => {
      await migrate(url);
      return fn(url);
    },
    // Only the server the caller names (main.ts passes DATABASE_URL), else an embedded cluster.
    { databaseUrl: opts.databaseUrl ?? null, log: opts.log },
  );
}
