import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";

/* The runner's and the read replica's settings (README "Configuration"): defaults, and values that would break them. */

describe("runner configuration", () => {
  it("runs a runner in serve by default, 32 turns at once, heartbeat 15 s, stale after 60 s, polling every second", () => {
    expect(loadConfig({}).runner).toEqual({
      enabled: true,
      concurrency: 32,
      heartbeatMs: 15_000,
      staleAfterMs: 60_000,
      pollMs: 1_000,
    });
    expect(loadConfig({ PGCHATD_RUNNER_POLL_MS: "250" }).runner.pollMs).toBe(250);
    expect(() => loadConfig({ PGCHATD_RUNNER_POLL_MS: "10" })).toThrow(/PGCHATD_RUNNER_POLL_MS/);
    expect(loadConfig({ PGCHATD_RUNNER: "false" }).runner.enabled).toBe(false);
    expect(loadConfig({ PGCHATD_RUNNER: "0" }).runner.enabled).toBe(false);
  });

  it("refuses a staleness window shorter than two heartbeats, and values that are not numbers", () => {
    expect(() =>
      loadConfig({ PGCHATD_RUNNER_HEARTBEAT_MS: "30000", PGCHATD_RUNNER_STALE_MS: "45000" }),
    ).toThrow(/PGCHATD_RUNNER_STALE_MS: must be at least twice PGCHATD_RUNNER_HEARTBEAT_MS/);
    expect(() => loadConfig({ PGCHATD_RUNNER_CONCURRENCY: "lots" })).toThrow(
      /PGCHATD_RUNNER_CONCURRENCY/,
    );
    expect(() => loadConfig({ PGCHATD_RUNNER: "maybe" })).toThrow(/PGCHATD_RUNNER/);
  });
});

describe("forge configuration", () => {
  it("asks GitHub's public API by default, anything http(s) otherwise, and never echoes the token", () => {
    expect(loadConfig({}).github).toEqual({
      apiUrl: "https://api.github.com",
      host: undefined,
      token: undefined,
    });
    expect(loadConfig({}).diffStatusInlineMs).toBe(1_500);
    expect(
      loadConfig({
        PGCHATD_GITHUB_API_URL: "https://ghe.example.com/api/v3",
        PGCHATD_GITHUB_TOKEN: "ghp_x",
      }).github,
    ).toEqual({ apiUrl: "https://ghe.example.com/api/v3", host: undefined, token: "ghp_x" });
    for (const bad of ["ftp://ghe.example.com", "not a url"]) {
      expect(() => loadConfig({ PGCHATD_GITHUB_API_URL: bad })).toThrow(/PGCHATD_GITHUB_API_URL/);
    }
    expect(() => loadConfig({ PGCHATD_DIFF_STATUS_INLINE_MS: "-1" })).toThrow(
      /PGCHATD_DIFF_STATUS_INLINE_MS/,
    );
    let message = "";
    try {
      loadConfig({ PGCHATD_GITHUB_TOKEN: "ghp_secret", PGCHATD_DIFF_STATUS_INLINE_MS: "x" });
    } catch (err) {
      message = String(err);
    }
    expect(message).toContain("PGCHATD_DIFF_STATUS_INLINE_MS");
    expect(message).not.toContain("ghp_secret");
  });
});

describe("model routing configuration", () => {
  it("routes directly by default; the gateway needs its URL, and its token is never echoed in an error", () => {
    expect(loadConfig({}).modelRouting).toEqual({ mode: "direct" });
    expect(
      loadConfig({
        PGCHATD_MODEL_ROUTING: "gateway",
        PGCHATD_GATEWAY_URL: "https://gateway.example.com/v1",
        PGCHATD_GATEWAY_TOKEN: "gw-secret",
      }).modelRouting,
    ).toEqual({ mode: "gateway", url: "https://gateway.example.com/v1", token: "gw-secret" });
    expect(() => loadConfig({ PGCHATD_MODEL_ROUTING: "gateway" })).toThrow(
      /PGCHATD_GATEWAY_URL: is required when PGCHATD_MODEL_ROUTING is gateway/,
    );
    expect(() => loadConfig({ PGCHATD_MODEL_ROUTING: "proxy" })).toThrow(/PGCHATD_MODEL_ROUTING/);
    let message = "";
    try {
      loadConfig({
        PGCHATD_MODEL_ROUTING: "gateway",
        PGCHATD_GATEWAY_URL: "ftp://nope",
        PGCHATD_GATEWAY_TOKEN: "gw-secret-2",
      });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/PGCHATD_GATEWAY_URL/);
    expect(message).not.toContain("gw-secret-2");
  });
});

describe("read replica configuration", () => {
  it("reads on a standby only when PGCHATD_READ_DATABASE_URL names one, waiting 200 ms for it by default", () => {
    expect(loadConfig({}).readReplica).toBeUndefined();
    expect(loadConfig({ PGCHATD_READ_DATABASE_URL: "" }).readReplica).toBeUndefined();
    expect(
      loadConfig({ PGCHATD_READ_DATABASE_URL: "postgres://standby/pgchatd" }).readReplica,
    ).toEqual({
      url: "postgres://standby/pgchatd",
      maxWaitMs: 200,
    });
    expect(() =>
      loadConfig({ PGCHATD_READ_DATABASE_URL: "postgres://s/p", PGCHATD_READ_MAX_WAIT_MS: "-1" }),
    ).toThrow(/PGCHATD_READ_MAX_WAIT_MS/);
  });
});
