/*
 * Cold `npm start` until the first 200 from /healthz: with a new data dir (initdb + migrations +
 * bootstrap) and with an existing one (cluster start + no-op migrations).
 * Usage: npm run bench -- startup [runs]
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { median } from "./stats.ts";

async function freePort(): Promise<number> {
  const net = await import("node:net");
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function startOnce(dataDir: string): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PGCHATD_DATA_DIR: dataDir,
    PORT: String(port),
    LOG_LEVEL: "warn",
  };
  delete env.DATABASE_URL;
  const child = spawn("npm", ["start", "--silent"], { env, stdio: "ignore", detached: true });
  try {
    for (;;) {
      if (performance.now() - started > 120_000)
        throw new Error("server did not become healthy in 120 s");
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`)
        .then((r) => r.status === 200)
        .catch(() => false);
      if (ok) return performance.now() - started;
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    // npm, tsx and node form a process group; stop all of them and wait for Postgres to go.
    process.kill(-child.pid!, "SIGTERM");
    await new Promise((r) => child.once("exit", r));
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function benchStartup(runs = 3) {
  const fresh: number[] = [];
  const existing: number[] = [];
  for (let i = 0; i < runs; i++) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgchatd-bench-"));
    await fs.chmod(dir, 0o755);
    try {
      fresh.push(await startOnce(dir));
      existing.push(await startOnce(dir));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
  const fmt = (xs: number[]) =>
    `median ${median(xs).toFixed(0)} ms (runs: ${xs.map((x) => x.toFixed(0)).join(", ")})`;
  console.log(`npm start → first 200 on /healthz, new data dir:      ${fmt(fresh)}`);
  console.log(`npm start → first 200 on /healthz, existing data dir: ${fmt(existing)}`);
  console.log(`ratio new/existing: ${(median(fresh) / median(existing)).toFixed(2)}x`);
}
