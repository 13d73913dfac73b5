import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

/*
 * Starting a `pgchatd` process (bin/pgchatd.js, as an installed one runs) and waiting until it is
 * ready, for the tests and the benchmarks that need real processes: one helper, so they all wait
 * for the same line and report a failed start the same way.
 */

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../bin/pgchatd.js");

/** The line each command prints last when it is ready (src/cli.ts), and what it captures. */
const readyLines = {
  serve: /listening on (http:\/\/\S+)/,
  runner: /pgchatd runner (\S+) is running/,
  agent: /pgchatd agent is running in (.+)/,
};

/** Most output kept for error messages and output(): a long-running process logs a lot. */
const maxKeptChars = 200_000;

export interface PgchatdProcess {
  child: ChildProcess;
  /** What the ready line captured: the server's URL, the runner's worker id, the agent's root. */
  ready: string;
  /** stdout and stderr so far (the last 200,000 characters). */
  output(): string;
  /** Its exit code (null when killed by a signal), once it has exited. */
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  /** The whole environment of the process (nothing is inherited unless given here). */
  env: Record<string, string | undefined>;
  /** Each complete line of stdout, as it arrives (a benchmark reads the JSON log lines). */
  onLine?: (line: string) => void;
  /** Fails the start after this long (default: never; a test's own timeout applies). */
  timeoutMs?: number;
  /** Arguments after the command (`agent --dir <path>`). */
  args?: string[];
  /** Node's own options, before the script (`--cpu-prof`: not allowed in NODE_OPTIONS). */
  nodeArgs?: string[] | undefined;
  /** Called with the process at once, so a caller can kill it even if it never gets ready. */
  onSpawn?: (child: ChildProcess) => void;
}

/** Starts `pgchatd <command>` and resolves once it printed its ready line. */
export function spawnPgchatd(
  command: keyof typeof readyLines,
  opts: SpawnOptions,
): Promise<PgchatdProcess> {
  const child = spawn(
    process.execPath,
    [...(opts.nodeArgs ?? []), bin, command, ...(opts.args ?? [])],
    {
      env: opts.env,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  opts.onSpawn?.(child);
  let out = "";
  const keep = (chunk: string) => {
    out += chunk;
    if (out.length > maxKeptChars) out = out.slice(-maxKeptChars);
  };
  let partial = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", keep);
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  const stop = async (graceMs = 20_000) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const force = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(force);
    }
  };
  return new Promise((resolve, reject) => {
    let ready: string | undefined;
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            reject(new Error(`pgchatd ${command} was not ready in ${opts.timeoutMs} ms:\n${out}`));
            void stop(0);
          }, opts.timeoutMs);
    child.stdout!.on("data", (chunk: string) => {
      keep(chunk);
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) opts.onLine?.(line);
      if (ready !== undefined) return;
      ready = readyLines[command].exec(out)?.[1];
      if (ready !== undefined) {
        clearTimeout(timer);
        resolve({ child, ready, output: () => out, exited, stop });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      if (ready === undefined) reject(new Error(`pgchatd ${command} exited ${code}:\n${out}`));
    });
  });
}
