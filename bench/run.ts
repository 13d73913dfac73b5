/*
 * Benchmarks print numbers; they never pass or fail on timing.
 *   npm run bench               all benchmarks except the suite timing
 *   npm run bench -- startup 5  one benchmark, with an argument
 *   npm run bench -- suite      wall time of `npm test`
 */
import { benchStartup } from "./startup.ts";
import { benchSuite } from "./suite.ts";

const benches: Record<string, (arg?: string) => Promise<void> | void> = {
  startup: (arg) => benchStartup(arg ? Number(arg) : 3),
  suite: () => benchSuite(),
};
const defaults = ["startup"];

const [name, arg] = process.argv.slice(2);
console.log(`machine: ${(await import("node:os")).cpus().length} cores, node ${process.version}`);
for (const n of name ? [name] : defaults) {
  const run = benches[n];
  if (!run) {
    console.error(`unknown benchmark "${n}"; known: ${Object.keys(benches).join(", ")}`);
    process.exit(2);
  }
  console.log(`\n## ${n}`);
  await run(arg);
}
