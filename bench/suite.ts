/*
 * Wall time of the whole test suite (`npm test`), as a newcomer or CI runs it.
 * Usage: npm run bench -- suite
 */
import { spawnSync } from "node:child_process";

export function benchSuite() {
  const env = { ...process.env };
  delete env.DATABASE_URL;
  const started = performance.now();
  const r = spawnSync("npm", ["test", "--silent"], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "utf8",
  });
  const ms = performance.now() - started;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI colour codes.
  const plain = r.stdout.replace(/\x1b\[[0-9;]*m/g, "");
  const summary = plain.split("\n").filter((l) => /Test Files|Tests\s/.test(l));
  console.log(`npm test wall time: ${(ms / 1000).toFixed(1)} s (exit ${r.status})`);
  for (const line of summary) console.log(`  ${line.trim()}`);
}
