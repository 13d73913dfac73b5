import type { Context } from "hono";
import { getCookie } from "hono/cookie";
import { createMiddleware } from "hono/factory";
import type { Queryable } from "../db/index.ts";
import { getAPIKeyForAuthByID, updateAPIKeyLastUsedByID } from "../generated/api_keys.ts";
import { getWorkspaceAgentForAuthByTokenID } from "../generated/workspaces.ts";
import { hashSecret, parseToken, secretMatches } from "../lib/tokens.ts";
import type { Actor, AppEnv, User, UserActor } from "./deps.ts";
import { cookieCannotWrite, forbidden, unauthorized } from "./errors.ts";

/** Compared against when the key id is unknown, so both failures cost the same. */
const dummyHash = hashSecret("pgchatd-no-such-key");

function headerToken(headers: Headers, agentHeader: boolean): string | null {
  const direct = headers.get(agentHeader ? "coder-agent-token" : "coder-session-token");
  if (direct) return direct.trim();
  const auth = headers.get("authorization");
  const m = auth ? /^Bearer\s+(\S+)\s*$/i.exec(auth) : null;
  return m ? m[1]! : null;
}

/** The browser's names for the session token (docs/api.md "Authentication"). */
export const sessionCookie = "coder_session_token";
export const sessionQueryParam = "coder_session_token";

/** Methods a cookie may authenticate: they change nothing, so a cross-site request gains nothing. */
const cookieMethods = new Set(["GET", "HEAD"]);

/**
 * A user's token: a header first, then the `coder_session_token` query parameter (EventSource
 * cannot send headers), then the cookie of that name for reads only. A browser sends the cookie
 * with a request another site makes, so a write must show its token itself: a cross-site page
 * cannot read it, so it cannot forge one (docs/api.md "Authentication").
 */
function presentedUserToken(c: Context<AppEnv>): string | null {
  const header = headerToken(c.req.raw.headers, false);
  if (header) return header;
  const query = c.req.query(sessionQueryParam);
  if (query) return query.trim();
  if (!cookieMethods.has(c.req.method)) return null;
  return getCookie(c, sessionCookie)?.trim() || null;
}

export async function authenticateUser(db: Queryable, token: string): Promise<UserActor | null> {
  const parsed = parseToken(token);
  if (!parsed) return null;
  const key = await getAPIKeyForAuthByID(db, { id: parsed.id });
  const matches = secretMatches(parsed.secret, key?.hashed_secret ?? dummyHash);
  if (!key || !matches || key.expired) return null;
  if (!key.recently_used) await updateAPIKeyLastUsedByID(db, { id: key.id });
  const user: User = {
    id: key.user_id,
    username: key.username,
    name: key.name,
    email: key.email,
    roles: key.roles,
    chat_spend_limit_micros: key.chat_spend_limit_micros,
    created_at: key.created_at,
    organization_ids: key.organization_ids,
  };
  return { kind: "user", user, apiKeyId: key.id, isOwner: user.roles.includes("owner") };
}

export async function authenticateAgent(db: Queryable, token: string): Promise<Actor | null> {
  const parsed = parseToken(token);
  if (!parsed) return null;
  const agent = await getWorkspaceAgentForAuthByTokenID(db, { token_id: parsed.id });
  const matches = secretMatches(parsed.secret, agent?.hashed_token ?? dummyHash);
  // Agents of a superseded build are gone; their tokens stop working with the new build.
  if (!agent || !matches || !agent.is_latest_build) return null;
  return { kind: "agent", agent };
}

/** Requires a user's API key (`Authorization: Bearer` or `Coder-Session-Token`). */
export const requireUser = createMiddleware<AppEnv>(async (c, next) => {
  const token = presentedUserToken(c);
  if (!token && getCookie(c, sessionCookie)) throw cookieCannotWrite();
  const actor = token ? await authenticateUser(c.get("deps").db, token) : null;
  if (!actor) throw unauthorized();
  c.set("actor", actor);
  await next();
});

/** Requires a workspace agent's token (`Coder-Agent-Token` or `Authorization: Bearer`). */
export const requireAgent = createMiddleware<AppEnv>(async (c, next) => {
  const token = headerToken(c.req.raw.headers, true);
  const actor = token ? await authenticateAgent(c.get("deps").db, token) : null;
  if (!actor) throw unauthorized();
  c.set("actor", actor);
  await next();
});

/** The calling workspace agent; routes behind requireAgent only. */
export function agentOf(actor: Actor) {
  if (actor.kind !== "agent") throw unauthorized();
  return actor.agent;
}

/** The calling user; routes behind requireUser only. */
export function userOf(actor: Actor): UserActor {
  if (actor.kind !== "user") throw unauthorized();
  return actor;
}

/** Site owners only (administration routes). */
export const requireOwner = createMiddleware<AppEnv>(async (c, next) => {
  if (!userOf(c.get("actor")).isOwner) throw forbidden("Only site owners may do this.");
  await next();
});
