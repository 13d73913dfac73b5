import { APICallError, LoadAPIKeyError } from "@ai-sdk/provider";
import { RetryError } from "ai";
import { describe, expect, it } from "vitest";
import { classifyError, retryAfterMs, TurnError } from "../../src/models/chat_error.ts";
import { backoffMs } from "../../src/runner/turn.ts";

/* How provider failures become ChatErrors (docs/api.md "Turns", ChatError kinds), and the retry
 * timing. */

function apiError(statusCode: number, body: unknown = {}, headers: Record<string, string> = {}) {
  return new APICallError({
    message: `HTTP ${statusCode}`,
    url: "https://provider.test/v1/chat/completions",
    requestBodyValues: {},
    statusCode,
    responseBody: typeof body === "string" ? body : JSON.stringify(body),
    responseHeaders: headers,
    isRetryable:
      statusCode === 408 || statusCode === 409 || statusCode === 429 || statusCode >= 500,
  });
}

describe("classifyError", () => {
  it.each([
    [401, "auth", false],
    [403, "auth", false],
    [429, "rate_limit", true],
    [529, "overloaded", true],
    [503, "overloaded", true],
    [504, "timeout", true],
    [408, "timeout", true],
    [400, "config", false],
    [404, "config", false],
    [500, "generic", true],
    [502, "generic", true],
  ] as const)("classifies HTTP %i as %s (retryable: %s)", (status, kind, retryable) => {
    const e = classifyError(apiError(status, { error: { message: "provider says" } }), "openai");
    expect(e).toMatchObject({ kind, retryable, status_code: status, provider: "openai" });
  });

  it("tells an exhausted quota (usage_limit, not retried) from a rate limit", () => {
    const quota = apiError(429, {
      error: { message: "You exceeded your quota", code: "insufficient_quota" },
    });
    expect(classifyError(quota, "openai")).toMatchObject({ kind: "usage_limit", retryable: false });
    expect(classifyError(apiError(402), "openai")).toMatchObject({ kind: "usage_limit" });
  });

  it("keeps the provider's own message as the detail, cut to a bounded length", () => {
    const e = classifyError(apiError(400, { error: { message: "model not found" } }), "openai");
    expect(e.detail).toBe("model not found");
    const long = classifyError(apiError(500, "x".repeat(5000)), "openai");
    expect(long.detail!.length).toBeLessThanOrEqual(501);
  });

  it("keeps no detail of an auth failure and cuts the API key out of every other detail", () => {
    const key = "sk-live-0123456789abcdefghij";
    const auth = classifyError(
      apiError(401, { error: { message: `Incorrect API key provided: ${key}` } }),
      "openai",
      [key],
    );
    expect(auth.detail).toBeNull();
    const other = classifyError(
      apiError(400, { error: { message: `bad request for key ${key}` } }),
      "openai",
      [key],
    );
    expect(other.detail).toBe("bad request for key [redacted]");
    // Key-looking tokens are cut even when the key is not known.
    const unknown = classifyError(
      apiError(400, { error: { message: "key sk-abcdef123456 rejected" } }),
      "openai",
    );
    expect(unknown.detail).toBe("key sk-[redacted] rejected");
  });

  it("classifies a missing key, a timeout, a refused connection and anything else", () => {
    expect(classifyError(new LoadAPIKeyError({ message: "no key" }), "anthropic").kind).toBe(
      "missing_key",
    );
    expect(classifyError(new DOMException("slow", "TimeoutError"), "openai")).toMatchObject({
      kind: "timeout",
      retryable: true,
    });
    const refused = new TypeError("fetch failed", {
      cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
    });
    expect(classifyError(refused, "openai-compatible")).toMatchObject({
      kind: "generic",
      retryable: true,
    });
    expect(
      classifyError({ type: "error", error: { message: "stream broke" } }, "anthropic").detail,
    ).toBe('{"type":"error","error":{"message":"stream broke"}}');
    expect(classifyError(new Error("boom"), null)).toMatchObject({
      kind: "generic",
      retryable: false,
      detail: "boom",
    });
    expect(classifyError(new TurnError("config", "Model disabled."), "local")).toMatchObject({
      kind: "config",
      detail: "Model disabled.",
    });
  });

  it("looks through the SDK's RetryError to the last failure", () => {
    const wrapped = new RetryError({
      message: "failed after 2 attempts",
      reason: "maxRetriesExceeded",
      errors: [apiError(500), apiError(503)],
    });
    expect(classifyError(wrapped, "openai").kind).toBe("overloaded");
  });
});

describe("retry timing", () => {
  it("reads Retry-After as seconds, as an HTTP date, and retry-after-ms", () => {
    expect(retryAfterMs(apiError(429, {}, { "Retry-After": "3" }))).toBe(3000);
    expect(retryAfterMs(apiError(429, {}, { "retry-after-ms": "250" }))).toBe(250);
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(
      retryAfterMs(apiError(429, {}, { "retry-after": "Thu, 01 Jan 2026 00:00:05 GMT" }), now),
    ).toBe(5000);
    expect(retryAfterMs(apiError(429))).toBeUndefined();
    expect(retryAfterMs(new Error("x"))).toBeUndefined();
  });

  it("backs off exponentially with jitter, never less than the provider asked, never more than the cap", () => {
    const policy = { retries: 3, baseDelayMs: 1000, maxDelayMs: 30_000 };
    for (let i = 0; i < 50; i++) {
      expect(backoffMs(policy, 1)).toBeGreaterThanOrEqual(800);
      expect(backoffMs(policy, 1)).toBeLessThanOrEqual(1200);
      expect(backoffMs(policy, 3)).toBeGreaterThanOrEqual(3200);
      expect(backoffMs(policy, 3)).toBeLessThanOrEqual(4800);
    }
    expect(backoffMs(policy, 1, 10_000)).toBe(10_000);
    expect(backoffMs(policy, 1, 90_000)).toBe(30_000);
    expect(backoffMs(policy, 10)).toBe(30_000);
  });
});
