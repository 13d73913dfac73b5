import type { Pool, PoolQueryable } from "../db/index.ts";
import type { ReadReplica } from "../db/replica.ts";
import type { Forge } from "../forge/github.ts";
import type { GetUserByIDRow } from "../generated/users.ts";
import type { GetWorkspaceAgentForAuthByTokenIDRow } from "../generated/workspaces.ts";
import type { Secrets } from "../lib/secrets.ts";
import type { Logger } from "../log.ts";
import type { Models } from "../models/index.ts";
import type { Runner } from "../runner/index.ts";
import type { Watch } from "../watch/index.ts";

/** A user as the API shows it (GET /users/me). */
export type User = GetUserByIDRow;

/** Who is calling: a user with an API key, or a workspace agent with its token. */
export type Actor =
  | { kind: "user"; user: User; apiKeyId: string; isOwner: boolean }
  | { kind: "agent"; agent: GetWorkspaceAgentForAuthByTokenIDRow };

export type UserActor = Extract<Actor, { kind: "user" }>;

/** Dependencies of the HTTP app, passed in so tests build apps on their own database. */
export interface AppDeps {
  db: Pool;
  /**
   * A standby for list, search, history, prompts and cost reads (PGCHATD_READ_DATABASE_URL);
   * absent, they run on `db`. See readDb.
   */
  reads?: ReadReplica | undefined;
  logger: Logger;
  /** Change events (GET /watch, GET /{chat}/stream); absent, those routes answer 503. */
  watch?: Watch | undefined;
  /**
   * Seals provider API keys (src/lib/secrets.ts). Absent, requests that would store a key answer
   * 503; `pgchatd serve` always has it.
   */
  secrets?: Secrets | undefined;
  /** Model calls outside turns (title regeneration); absent, those routes answer 503. */
  models?: Models | undefined;
  /**
   * The forge of pull-request statuses: GET /{chat} resolves a stale status inline, waiting at
   * most `inlineMs`. Absent, it shows the stored status.
   */
  forge?: { forge: Forge; inlineMs: number } | undefined;
  /** This process's runner: woken after writes that may have made chats pending; in /metrics. */
  runner?: Pick<Runner, "wake" | "active" | "stats"> | undefined;
}

/**
 * Where a read route runs its queries: the standby once it has replayed every write committed
 * before now (read-your-writes, src/db/replica.ts), else the primary. For reads only: the
 * standby refuses writes.
 */
export function readDb(deps: AppDeps): Promise<PoolQueryable> | PoolQueryable {
  return deps.reads ? deps.reads.forRead() : deps.db;
}

export interface AppEnv {
  Variables: {
    actor: Actor;
    deps: AppDeps;
  };
}
