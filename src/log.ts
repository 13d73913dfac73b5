import { pino } from "pino";

export type Logger = pino.Logger;

/**
 * JSON logs (pretty in a terminal). Headers are never logged; the redaction paths are a second
 * line of defence should a header object ever reach a log call.
 */
export function createLogger(level: string = "info"): Logger {
  return pino({
    level,
    redact: {
      paths: [
        "req.headers.authorization",
        "req.headers.cookie",
        'req.headers["coder-session-token"]',
        'req.headers["coder-agent-token"]',
        "token",
        "api_key",
        "password",
      ],
      censor: "[redacted]",
    },
    ...(process.stdout.isTTY && level !== "silent"
      ? { transport: { target: "pino-pretty", options: { colorize: true } } }
      : {}),
  });
}
