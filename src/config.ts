import path from "node:path";
import { z } from "zod";
import { parseSecretKey, secretKeyFormat } from "./lib/secrets.ts";
import { isTokenFormat } from "./lib/tokens.ts";
import type { ModelRouting } from "./models/providers.ts";

/**
 * Every setting pgchatd reads from the environment, validated once at start so a typo fails
 * loudly instead of falling back to a default. README "Configuration" lists them.
 */
const envSchema = z
  .object({
    HOST: z.string().min(1).default("127.0.0.1"),
    PORT: z.coerce.number().int().min(0).max(65_535).default(3000),
    DATABASE_URL: z
      .string()
      .optional()
      .transform((v) => v || undefined),
    PGCHATD_READ_DATABASE_URL: z
      .string()
      .optional()
      .transform((v) => v || undefined),
    PGCHATD_READ_MAX_WAIT_MS: z.coerce.number().int().min(0).max(60_000).default(200),
    PGCHATD_DATA_DIR: z.string().min(1).default("./.data"),
    PGCHATD_BOOTSTRAP_TOKEN: z
      .string()
      .optional()
      .transform((v) => v || undefined)
      .refine((v) => v === undefined || isTokenFormat(v), {
        message:
          "must have the token format <id>-<secret>: 10 chars of [a-z0-9], '-', 22+ chars of [A-Za-z0-9_-]",
      }),
    // Never echoed back: an error names the variable and the expected format, not the value.
    PGCHATD_SECRET_KEY: z
      .string()
      .optional()
      .transform((v, ctx) => {
        if (!v) return undefined;
        const key = parseSecretKey(v);
        if (!key) {
          ctx.addIssue({ code: "custom", message: secretKeyFormat });
          return z.NEVER;
        }
        return key;
      }),
    LOG_LEVEL: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
      .default("info"),
    PGCHATD_DB_POOL_MAX: z.coerce.number().int().min(1).max(1000).default(10),
    PGCHATD_SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).default(10_000),
    PGCHATD_EVENTS_NOTIFY: z.enum(["trigger", "batched", "off"]).default("trigger"),
    PGCHATD_RUNNER: z
      .enum(["true", "false", "1", "0"])
      .default("true")
      .transform((v) => v === "true" || v === "1"),
    PGCHATD_RUNNER_CONCURRENCY: z.coerce.number().int().min(1).max(100_000).default(32),
    PGCHATD_RUNNER_HEARTBEAT_MS: z.coerce.number().int().min(100).default(15_000),
    PGCHATD_RUNNER_STALE_MS: z.coerce.number().int().min(200).default(60_000),
    PGCHATD_RUNNER_POLL_MS: z.coerce.number().int().min(50).default(1_000),
    PGCHATD_EVENTS_HELD_BACK_WARN_MS: z.coerce.number().int().min(0).default(10_000),
    PGCHATD_GITHUB_API_URL: z.url({ protocol: /^https?$/ }).default("https://api.github.com"),
    PGCHATD_GITHUB_HOST: z
      .string()
      .optional()
      .transform((v) => v || undefined),
    // Never echoed back or logged (src/log.ts redacts `token`).
    PGCHATD_GITHUB_TOKEN: z
      .string()
      .optional()
      .transform((v) => v || undefined),
    PGCHATD_MODEL_ROUTING: z.enum(["direct", "gateway"]).default("direct"),
    PGCHATD_GATEWAY_URL: z
      .union([z.literal(""), z.url({ protocol: /^https?$/ })])
      .optional()
      .transform((v) => v || undefined),
    // The deployment's credential at the gateway: never echoed back or logged.
    PGCHATD_GATEWAY_TOKEN: z
      .string()
      .optional()
      .transform((v) => v || undefined),
    PGCHATD_AUDIT_RETENTION_DAYS: z.coerce.number().int().min(0).max(36_500).default(365),
    PGCHATD_DIFF_STATUS_INLINE_MS: z.coerce.number().int().min(0).max(60_000).default(1_500),
    PGCHATD_EVENT_RETENTION_SECONDS: z.coerce
      .number()
      .int()
      .min(1)
      .default(24 * 3600),
  })
  // A live runner renews its leases every heartbeat; a staleness window of less than two of them
  // would hand running turns to other runners after one late heartbeat.
  .refine((e) => e.PGCHATD_RUNNER_STALE_MS >= 2 * e.PGCHATD_RUNNER_HEARTBEAT_MS, {
    path: ["PGCHATD_RUNNER_STALE_MS"],
    message: "must be at least twice PGCHATD_RUNNER_HEARTBEAT_MS",
  })
  .refine((e) => e.PGCHATD_MODEL_ROUTING !== "gateway" || e.PGCHATD_GATEWAY_URL, {
    path: ["PGCHATD_GATEWAY_URL"],
    message: "is required when PGCHATD_MODEL_ROUTING is gateway",
  });

export interface Config {
  host: string;
  port: number;
  databaseUrl: string | undefined;
  /**
   * A streaming-replication standby of the database for list, search, history, prompts and cost
   * reads, and how long a read waits for it to replay the writes before it (docs/operations.md
   * "Scaling").
   */
  readReplica: { url: string; maxWaitMs: number } | undefined;
  dataDir: string;
  bootstrapToken: string | undefined;
  /**
   * The key that encrypts provider API keys at rest (PGCHATD_SECRET_KEY); undefined means the key
   * file `<dataDir>/secret-key`.
   */
  secretKey: Buffer | undefined;
  logLevel: z.infer<typeof envSchema>["LOG_LEVEL"];
  dbPoolMax: number;
  /** How long a shutdown waits for in-flight requests before closing their connections. */
  shutdownTimeoutMs: number;
  /** How change events wake the tailers (docs/operations.md "Change events"). */
  eventsNotify: "trigger" | "batched" | "off";
  /** Change events older than this are pruned; a stream resuming from before it resyncs. */
  eventRetentionSeconds: number;
  /** Change events held back this long by an open transaction: a warning names it. */
  eventsHeldBackWarnMs: number;
  /** The forge the pull-request status comes from (docs/operations.md "Pull-request status"). */
  github: { apiUrl: string; host: string | undefined; token: string | undefined };
  /** audit_logs entries older than this many days are deleted by housekeeping; 0 keeps them. */
  auditRetentionDays: number;
  /** How long GET /{chat} waits for a stale pull-request status to be resolved inline. */
  diffStatusInlineMs: number;
  /** How model calls leave the process (docs/operations.md "Model routing"). */
  modelRouting: ModelRouting;
  /** The runner: whether `serve` runs one, how many turns at once, its lease timing. */
  runner: {
    enabled: boolean;
    concurrency: number;
    heartbeatMs: number;
    staleAfterMs: number;
    pollMs: number;
  };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  return {
    host: e.HOST,
    port: e.PORT,
    databaseUrl: e.DATABASE_URL,
    readReplica: e.PGCHATD_READ_DATABASE_URL
      ? { url: e.PGCHATD_READ_DATABASE_URL, maxWaitMs: e.PGCHATD_READ_MAX_WAIT_MS }
      : undefined,
    dataDir: path.resolve(e.PGCHATD_DATA_DIR),
    bootstrapToken: e.PGCHATD_BOOTSTRAP_TOKEN,
    secretKey: e.PGCHATD_SECRET_KEY,
    logLevel: e.LOG_LEVEL,
    dbPoolMax: e.PGCHATD_DB_POOL_MAX,
    shutdownTimeoutMs: e.PGCHATD_SHUTDOWN_TIMEOUT_MS,
    eventsNotify: e.PGCHATD_EVENTS_NOTIFY,
    eventRetentionSeconds: e.PGCHATD_EVENT_RETENTION_SECONDS,
    eventsHeldBackWarnMs: e.PGCHATD_EVENTS_HELD_BACK_WARN_MS,
    github: {
      apiUrl: e.PGCHATD_GITHUB_API_URL,
      host: e.PGCHATD_GITHUB_HOST,
      token: e.PGCHATD_GITHUB_TOKEN,
    },
    diffStatusInlineMs: e.PGCHATD_DIFF_STATUS_INLINE_MS,
    auditRetentionDays: e.PGCHATD_AUDIT_RETENTION_DAYS,
    modelRouting:
      e.PGCHATD_MODEL_ROUTING === "gateway"
        ? { mode: "gateway", url: e.PGCHATD_GATEWAY_URL!, token: e.PGCHATD_GATEWAY_TOKEN }
        : { mode: "direct" },
    runner: {
      enabled: e.PGCHATD_RUNNER,
      concurrency: e.PGCHATD_RUNNER_CONCURRENCY,
      heartbeatMs: e.PGCHATD_RUNNER_HEARTBEAT_MS,
      staleAfterMs: e.PGCHATD_RUNNER_STALE_MS,
      pollMs: e.PGCHATD_RUNNER_POLL_MS,
    },
  };
}
