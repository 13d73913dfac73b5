import { APICallError, LoadAPIKeyError } from "@ai-sdk/provider";
import { RetryError } from "ai";

/*
 * Why a turn failed, as docs/api.md's ChatError: stored in chats.last_error, sent as the chat
 * stream's `error` event and with `retry` events. Provider errors are classified by HTTP status and
 * error code, never by message text alone, so the kinds mean the same for every provider.
 */

export const chatErrorKinds = [
  "generic",
  "overloaded",
  "rate_limit",
  "timeout",
  "auth",
  "config",
  "usage_limit",
  "missing_key",
  "content_filter",
] as const;
export type ChatErrorKind = (typeof chatErrorKinds)[number];

export interface ChatError {
  message: string;
  kind: ChatErrorKind;
  provider: string | null;
  retryable: boolean;
  status_code: number | null;
  detail: string | null;
}

/** A failure decided before or around the model call (missing key, unusable model, filter). */
export class TurnError extends Error {
  constructor(
    readonly kind: ChatErrorKind,
    message: string,
    readonly detail: string | null = null,
    readonly retryable = false,
  ) {
    super(message);
    this.name = "TurnError";
  }
}

/**
 * A turn that would start while its owner is at the spend limit (docs/api.md "Spend limits"):
 * it ends with this instead of calling the model. The figures come from the same SQL status the
 * 409 of a send reports.
 */
export function spendLimitError(limit: {
  spend_period: string | null;
  spend_limit_micros: number | null;
  current_spend: number | null;
  spend_resets_at: string | null;
}): ChatError {
  return {
    message: `You have reached your spend limit for this ${limit.spend_period ?? "period"}.`,
    kind: "usage_limit",
    provider: null,
    retryable: false,
    status_code: null,
    detail: `Spent ${limit.current_spend} of ${limit.spend_limit_micros} micros; the limit resets at ${limit.spend_resets_at}.`,
  };
}

/** Provider error bodies can be long (HTML error pages); the detail keeps the start. */
const maxDetailLength = 500;

/** Provider error codes (OpenAI `code`/`type`) that mean "out of money", not "slow down". */
const quotaCodes = /insufficient_quota|billing_hard_limit|quota_exceeded|credit_balance/i;

function truncate(s: string): string {
  return s.length > maxDetailLength ? `${s.slice(0, maxDetailLength)}…` : s;
}

/** The error text a provider put in its body ({error: {message}}), else the body itself. */
function bodyMessage(body: string | undefined): string | null {
  if (!body) return null;
  try {
    const parsed = JSON.parse(body) as {
      error?: { message?: unknown } | string;
      message?: unknown;
    };
    const e = parsed.error;
    const m = typeof e === "string" ? e : (e?.message ?? parsed.message);
    if (typeof m === "string" && m) return m;
  } catch {
    // not JSON: an HTML page or plain text
  }
  return body;
}

function statusKind(status: number, body: string): ChatErrorKind {
  if (status === 401 || status === 403) return "auth";
  if (status === 402 || (status === 429 && quotaCodes.test(body))) return "usage_limit";
  if (status === 429) return "rate_limit";
  if (status === 529 || status === 503) return "overloaded";
  if (status === 408 || status === 504) return "timeout";
  if (status === 400 || status === 404 || status === 409 || status === 413 || status === 422) {
    return "config";
  }
  return "generic";
}

const kindMessages: Record<ChatErrorKind, string> = {
  generic: "The model call failed.",
  overloaded: "The model provider is overloaded.",
  rate_limit: "The model provider's rate limit was reached.",
  timeout: "The model call timed out.",
  auth: "The model provider rejected the API key.",
  config: "The model provider rejected the request; check the model configuration.",
  usage_limit: "The model provider's usage quota is exhausted.",
  missing_key: "The model provider needs an API key and none is configured.",
  content_filter: "The model provider's content filter stopped the response.",
};

function isTimeout(err: unknown): boolean {
  const name = (err as { name?: unknown })?.name;
  return name === "TimeoutError" || (err as { code?: unknown })?.code === "ETIMEDOUT";
}

/** Connection-level failures (refused, reset, DNS): worth another attempt. */
function isNetworkError(err: unknown): boolean {
  const code = (err as { cause?: { code?: unknown } })?.cause?.code;
  return (
    err instanceof TypeError ||
    (typeof code === "string" && /^(ECONN|ENOTFOUND|EAI_AGAIN|EPIPE|UND_ERR)/.test(code))
  );
}

/**
 * The ChatError for anything a turn threw. `secrets` (the provider's API key) are cut out of
 * every text that goes into it: providers echo parts of a rejected key in their messages.
 */
export function classifyError(
  err: unknown,
  provider: string | null,
  secrets: string[] = [],
): ChatError {
  const scrub = (s: string | null) => {
    if (s === null) return null;
    let out = s;
    for (const secret of secrets) if (secret) out = out.split(secret).join("[redacted]");
    // Key-looking tokens (sk-..., sk-ant-...), whoever's they are.
    return truncate(out.replace(/\bsk-[A-Za-z0-9_-]{6,}/g, "sk-[redacted]"));
  };
  const make = (
    kind: ChatErrorKind,
    retryable: boolean,
    statusCode: number | null,
    detail: string | null,
  ): ChatError => ({
    message: kindMessages[kind],
    kind,
    provider,
    retryable,
    status_code: statusCode,
    // An auth failure's text is about the key: none of it is kept.
    detail: kind === "auth" ? null : scrub(detail),
  });

  // The SDK's own retries (title and summary calls) wrap the last failure.
  if (RetryError.isInstance(err)) return classifyError(err.lastError, provider, secrets);
  if (err instanceof TurnError)
    return make(err.kind, err.retryable, null, err.detail ?? err.message);
  if (LoadAPIKeyError.isInstance(err)) return make("missing_key", false, null, null);
  if (APICallError.isInstance(err)) {
    const body = err.responseBody ?? "";
    const status = err.statusCode ?? null;
    const kind = status === null ? "generic" : statusKind(status, body);
    const retryable = kind === "usage_limit" || kind === "auth" ? false : err.isRetryable;
    return make(kind, retryable, status, bodyMessage(body) ?? err.message);
  }
  if (isTimeout(err)) return make("timeout", true, null, (err as Error).message ?? null);
  if (isNetworkError(err)) {
    const e = err as Error & { cause?: { message?: string } };
    return make("generic", true, null, e.cause?.message ?? e.message);
  }
  // A provider's in-stream error chunk arrives as a plain object ({type: "error", error: {...}}).
  const text =
    err instanceof Error
      ? err.message
      : typeof err === "object" && err !== null
        ? JSON.stringify(err)
        : String(err);
  return make("generic", false, null, text);
}

/**
 * How long the provider asked us to wait (Retry-After: seconds or an HTTP date; OpenAI also sends
 * retry-after-ms), or undefined.
 */
export function retryAfterMs(err: unknown, now = Date.now()): number | undefined {
  if (!APICallError.isInstance(err)) return undefined;
  const headers = err.responseHeaders ?? {};
  const get = (name: string) =>
    Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
  const ms = Number(get("retry-after-ms"));
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const value = get("retry-after");
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
