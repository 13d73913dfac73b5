import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isDatabaseUnreachable } from "../db/unreachable.ts";
import type { Logger } from "../log.ts";

/*
 * The one place that turns failures into HTTP responses: API errors thrown by routes, project
 * SQLSTATEs raised by SQL rules, and constraint violations by constraint name. Never match on
 * message text. docs/errors.md publishes this table.
 */

export interface Validation {
  field: string;
  detail: string;
}

export interface ErrorBody {
  message: string;
  detail?: string;
  validations?: Validation[];
}

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly detail?: string,
    readonly validations?: Validation[],
    /** Fields a specific error adds to the body (the spend limit's figures). */
    readonly fields?: Record<string, unknown>,
    /** Response headers it adds (a 503's Retry-After). */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }

  body(): ErrorBody {
    return {
      message: this.message,
      ...(this.detail ? { detail: this.detail } : {}),
      ...(this.validations ? { validations: this.validations } : {}),
      ...this.fields,
    };
  }
}

export const badRequest = (message: string, detail?: string) => new ApiError(400, message, detail);
export const unauthorized = () =>
  // One message for every failure, so a caller learns nothing about which part was wrong.
  new ApiError(401, "You must be authenticated with a valid API token.");
/** A write that only the browser's cookie authenticates (src/server/auth.ts says why). */
export const cookieCannotWrite = () =>
  new ApiError(
    401,
    "The coder_session_token cookie authenticates GET and HEAD requests only: send the token in the Authorization or Coder-Session-Token header.",
  );
export const forbidden = (message = "You are not allowed to perform this action.") =>
  new ApiError(403, message);
/** "Missing" and "not yours" look the same, so ids cannot be probed. */
export const notFound = (what = "Resource") => new ApiError(404, `${what} not found.`);
export const tooLarge = (message: string) => new ApiError(413, message);
export const conflict = (message: string, detail?: string) => new ApiError(409, message, detail);
/** A part of the server that the request needs is not running (a fault, never bad input). */
export const unavailable = (message: string) => new ApiError(503, message);
/**
 * The model provider failed a call made for the request (title regeneration): 502, with the
 * ChatError's message and its kind (and detail, if any) as the detail.
 */
export const modelFailed = (error: { message: string; kind: string; detail: string | null }) =>
  new ApiError(502, error.message, error.detail ? `${error.kind}: ${error.detail}` : error.kind);

/**
 * Project SQLSTATEs (class PC): the last three characters are the HTTP status. SQL raises them
 * with a message for the client and an optional DETAIL.
 */
const projectStates: Record<string, ContentfulStatusCode> = {
  PC400: 400,
  PC403: 403,
  PC404: 404,
  PC409: 409,
  PC413: 413,
  PC429: 429,
};

interface Mapped {
  status: ContentfulStatusCode;
  message: string;
}

/** Constraint name → response. Unique indexes count as constraints here too. */
const constraints: Record<string, Mapped> = {
  users_username_key: { status: 409, message: "Username is already taken." },
  users_username_format: {
    status: 400,
    message: "Username must be 1-32 letters, digits or single hyphens between them.",
  },
  organizations_name_key: { status: 409, message: "Organization name is already taken." },
  organizations_name_format: {
    status: 400,
    message: "Organization name must be 1-64 letters, digits or single hyphens between them.",
  },
  organization_members_organization_id_fkey: {
    status: 400,
    message: "Organization does not exist.",
  },
  organization_members_user_id_fkey: { status: 404, message: "User not found." },
  chat_providers_key_path: {
    status: 400,
    message:
      "A provider must allow its own key (central_key_enabled) or users' own keys (allow_user_key).",
  },
  chat_providers_central_fallback: {
    status: 400,
    message: "central_fallback needs both central_key_enabled and allow_user_key.",
  },
  chat_providers_local_no_user_key: {
    status: 400,
    message: "The local provider takes no keys: allow_user_key must be false.",
  },
  groups_organization_name_key: {
    status: 409,
    message: "A group with this name already exists in the organization.",
  },
  group_members_organization_member_fkey: {
    status: 400,
    message: "User is not a member of the group's organization.",
  },
  workspaces_owner_name_key: {
    status: 409,
    message: "The owner already has a workspace with this name.",
  },
  workspaces_owner_membership_fkey: {
    status: 400,
    message: "Workspace owner is not a member of the organization.",
  },
  workspace_agents_build_name_key: {
    status: 400,
    message: "Agent names must be unique within a build.",
  },
  api_keys_user_id_fkey: { status: 404, message: "User not found." },
  chat_providers_kind_base_url_key: {
    status: 409,
    message: "A provider of this kind with this base_url already exists.",
  },
  chat_providers_base_url_required: {
    status: 400,
    message: "An openai-compatible provider needs a base_url.",
  },
  chat_providers_base_url_http: { status: 400, message: "base_url must be an http(s) URL." },
  chat_model_configs_default_usable: {
    status: 409,
    message:
      "The default model config must stay enabled; make another model config the default first.",
  },
  // chat_lock_model_default serialises default changes, so only a writer that bypasses it sees this.
  chat_model_configs_one_default: {
    status: 409,
    message: "Another model config became the default at the same time; retry.",
  },
};

/** Standard SQLSTATEs that mean "the input was wrong" or "try again", never a server fault. */
const standardStates: Record<string, Mapped> = {
  "22P02": { status: 400, message: "Invalid input syntax." },
  "22001": { status: 400, message: "Value too long." },
  "22003": { status: 400, message: "Numeric value out of range." },
  "22007": { status: 400, message: "Invalid date or time." },
  "22008": { status: 400, message: "Date or time out of range." },
  "22023": { status: 400, message: "Invalid parameter value." },
  "22021": { status: 400, message: "Invalid character encoding." },
  "22P05": {
    status: 400,
    message: "Text contains a character the database cannot store (such as \\u0000).",
  },
  "2201W": { status: 400, message: "Invalid limit." },
  "2201X": { status: 400, message: "Invalid offset." },
  "23502": { status: 400, message: "A required value is missing." },
  "23503": { status: 400, message: "A referenced resource does not exist." },
  "23505": { status: 409, message: "The resource already exists." },
  "23514": { status: 400, message: "The input violates a rule." },
  "40001": { status: 409, message: "A concurrent change conflicted with this request; retry it." },
  "40P01": { status: 409, message: "A concurrent change conflicted with this request; retry it." },
  "55P03": { status: 409, message: "The resource is locked by another request; retry it." },
  // disk_full: the database could not extend a table (its tablespace or disk is full). The write
  // was rolled back whole; it succeeds once space is freed, so it is no server bug (500).
  "53100": {
    status: 507,
    message: "The server is out of storage space; nothing was stored. Try again later.",
  },
};

/**
 * How long a client should wait before retrying a request the database could not serve: a
 * restart or failover of PostgreSQL takes seconds, and the pool connects again on the next
 * request, so a second is enough to retry without hammering a server that is still down.
 */
const databaseRetryAfterSeconds = 1;

/** The database cannot be reached: the request did nothing it acknowledged, and may be retried. */
export const databaseUnavailable = () =>
  new ApiError(
    503,
    "The database is unavailable; retry the request shortly.",
    undefined,
    undefined,
    undefined,
    { "Retry-After": String(databaseRetryAfterSeconds) },
  );

interface PgError {
  code: string;
  message: string;
  detail?: string;
  constraint?: string;
}

function isPgError(err: unknown): err is PgError {
  return (
    typeof err === "object" &&
    err !== null &&
    typeof (err as { code?: unknown }).code === "string" &&
    (err as { code: string }).code.length === 5 &&
    "severity" in err
  );
}

/**
 * PL409, the spend limit (chat_require_spend_under_limit): 409 with the figures SQL put in the
 * DETAIL as JSON, `{message, spent_micros, limit_micros, resets_at}` (docs/api.md "Spend limits").
 */
function spendLimitReached(err: PgError): ApiError {
  const figures = JSON.parse(err.detail ?? "{}") as {
    spent_micros: number;
    limit_micros: number;
    resets_at: string;
  };
  return new ApiError(409, err.message, undefined, undefined, {
    spent_micros: figures.spent_micros,
    limit_micros: figures.limit_micros,
    resets_at: figures.resets_at,
  });
}

/** The response for a database error, or null when it is a server fault. */
export function fromDatabaseError(err: PgError): ApiError | null {
  if (err.code === "PL409") return spendLimitReached(err);
  const projectStatus = projectStates[err.code];
  if (projectStatus) return new ApiError(projectStatus, err.message, err.detail || undefined);
  const byConstraint = err.constraint ? constraints[err.constraint] : undefined;
  if (byConstraint) return new ApiError(byConstraint.status, byConstraint.message);
  const byState = standardStates[err.code];
  if (byState) return new ApiError(byState.status, byState.message);
  return null;
}

export function toApiError(err: unknown): ApiError | null {
  if (err instanceof ApiError) return err;
  if (err instanceof HTTPException) {
    // Hono's own 4xx (malformed JSON from the validator, body limit).
    const status = err.status as ContentfulStatusCode;
    return new ApiError(status, err.message || "Bad request.");
  }
  if (isDatabaseUnreachable(err)) return databaseUnavailable();
  if (isPgError(err)) return fromDatabaseError(err);
  return null;
}

/** app.onError: a known error gets its status; anything else is a logged 500. */
export function errorHandler(logger: Logger) {
  return (err: Error, c: Context) => {
    const apiError = toApiError(err);
    // A full disk is the operator's to fix: the client's 507 alone would not reach them.
    if (apiError?.status === 507) {
      logger.error({ err, method: c.req.method, path: c.req.path }, "database out of space");
    }
    // Not the caller's fault, and an operator wants to see it; the stack says which statement.
    if (apiError && isDatabaseUnreachable(err)) {
      logger.warn({ err, method: c.req.method, path: c.req.path }, "database unavailable");
    }
    if (apiError) return c.json(apiError.body(), apiError.status, apiError.headers);
    logger.error({ err, method: c.req.method, path: c.req.path }, "unhandled error");
    return c.json({ message: "Internal server error." } satisfies ErrorBody, 500);
  };
}

export function notFoundHandler(c: Context) {
  return c.json(
    { message: `No route for ${c.req.method} ${c.req.path}.` } satisfies ErrorBody,
    404,
  );
}
