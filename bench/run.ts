/*
 * Benchmarks print numbers; they never pass or fail on timing.
 *   npm run bench                       all benchmarks except the suite timing
 *   npm run bench -- startup 5          one benchmark, with arguments
 *   npm run bench -- list 20000 500     the chat list on 20,000 chats over 500 owners
 *   npm run bench -- prompts            the prompt history on 270,000 messages (bench/prompts.ts)
 *   npm run bench -- suite              wall time of `npm test`
 */
import { benchList } from "./list.ts";
import { benchPrompts } from "./prompts.ts";
import { benchStartup } from "./startup.ts";
import { benchSuite } from "./suite.ts";

const benches: Record<string, (...args: string[]) => Promise<void> | void> = {
  startup: (runs) => benchStartup(runs ? Number(runs) : 3),
  list: (chats, owners) =>
    benchList(chats ? Number(chats) : undefined, owners ? Number(owners) : undefined),
  prompts: (layout) => benchPrompts(layout),
  suite: () => benchSuite(),
};
const defaults = ["startup", "list", "prompts"];

const [name, ...args] = process.argv.slice(2);
console.log(`machine: ${(await import("node:os")).cpus().length} cores, node ${process.version}`);
for (const n of name ? [name] : defaults) {
  const run = benches[n];
  if (!run) {
    console.error(`unknown benchmark "${n}"; known: ${Object.keys(benches).join(", ")}`);
    process.exit(2);
  }
  console.log(`\n## ${n}`);
  await run(...args);
}
