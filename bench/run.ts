/*
 * Benchmarks print numbers; they never pass or fail on timing.
 *   npm run bench                       all benchmarks except the suite timing
 *   npm run bench -- startup 5          one benchmark, with arguments
 *   npm run bench -- list 20000 500     the chat list on 20,000 chats over 500 owners
 *   npm run bench -- prompts            the prompt history on 270,000 messages (bench/prompts.ts)
 *   npm run bench -- watch [watchers] [eventsPerSecond]
 *                                       change events: fan-out latency to 100 and 1,000 SSE watchers
 *                                       (and `watchers`, e.g. 10000) at 500 events/s, and message
 *                                       send throughput per NOTIFY mode (bench/watch.ts)
 *   npm run bench -- runner [chats] [running]
 *                                       the chat runner: 1,000 local/echo turns on 2 runner
 *                                       processes, heartbeats with 10,000 running chats
 *                                       (bench/runner.ts)
 *   npm run bench -- context [chats]    workspace context pushes to an agent with 10, 100, 1,000
 *                                       (and `chats`) bound chats (bench/context.ts)
 *   npm run bench -- chat_updates [chats]
 *                                       heartbeats and status changes of chats carrying 0, 100 KiB
 *                                       and 256 KiB of dynamic tools (bench/chat_updates.ts)
 *   npm run bench -- horizon            change-event delivery while a transaction is open in this or
 *                                       another database, and what the read horizon costs
 *                                       (bench/horizon.ts)
 *   npm run bench -- tailer [commits]   reads of the change-event log per commit, and empty ones
 *                                       (bench/tailer.ts)
 *   npm run bench -- cost [messages]    cost rollups and the spend check on 10,000,000 assistant
 *                                       messages over 1,000 users (bench/cost.ts)
 *   npm run bench -- pr [references]    the pull-request status refresher: 10,000 stale references
 *                                       against a fake forge, 1 and 2 runner processes (bench/pr.ts)
 *   npm run bench -- housekeeping [chats]
 *                                       auto-archive and retention on 1,000,000 chats, 200,000
 *                                       eligible, and what users wait meanwhile (bench/housekeeping.ts)
 *   npm run bench -- tools [chats]      workspace tool calls through a real agent process: 200 chats
 *                                       at once and 100 paced, each one `execute` (bench/tools.ts)
 *   npm run bench -- parts [chats]      publishing stream parts (stored and NOTIFYd) against a bare
 *                                       NOTIFY, 50 chats at once, and the snapshot's read (bench/parts.ts)
 *   npm run bench -- replicas           POST /messages with its turn on 1, 2, 5 and 10 server
 *                                       processes on one database, and 10 with the load on one
 *                                       (bench/replicas.ts)
 *   npm run bench -- soak [minutes]     mixed load from 30 users for 10 minutes on 2 API servers and
 *                                       2 runner processes: latency and errors per route, events and
 *                                       messages lost or duplicated across reconnects, turns answered
 *                                       exactly once, memory per minute, table sizes (bench/soak.ts)
 *   npm run bench -- suite              wall time of `npm test`
 */
import { benchChatUpdates } from "./chat_updates.ts";
import { benchContext } from "./context.ts";
import { benchCost } from "./cost.ts";
import { benchHorizon } from "./horizon.ts";
import { benchHousekeeping } from "./housekeeping.ts";
import { benchList } from "./list.ts";
import { benchParts } from "./parts.ts";
import { benchPr } from "./pr.ts";
import { benchPrompts } from "./prompts.ts";
import { benchReplicas } from "./replicas.ts";
import { benchRunner } from "./runner.ts";
import { benchSoak } from "./soak.ts";
import { benchStartup } from "./startup.ts";
import { benchSuite } from "./suite.ts";
import { benchTailer } from "./tailer.ts";
import { benchTools } from "./tools.ts";
import { benchWatch } from "./watch.ts";

const benches: Record<string, (...args: string[]) => Promise<void> | void> = {
  startup: (runs) => benchStartup(runs ? Number(runs) : 3),
  list: (chats, owners) =>
    benchList(chats ? Number(chats) : undefined, owners ? Number(owners) : undefined),
  prompts: (layout) => benchPrompts(layout),
  suite: () => benchSuite(),
  watch: (watchers, eventsPerSecond) => benchWatch(watchers, eventsPerSecond),
  runner: (chats, running) => benchRunner(chats, running),
  context: (chats) => benchContext(chats),
  chat_updates: (chats) => benchChatUpdates(chats),
  horizon: () => benchHorizon(),
  tailer: (commits) => benchTailer(commits),
  cost: (messages) => benchCost(messages),
  pr: (references) => benchPr(references),
  housekeeping: (chats) => benchHousekeeping(chats),
  tools: (chats) => benchTools(chats),
  parts: (chats) => benchParts(chats),
  replicas: () => benchReplicas(),
  soak: (minutes) => benchSoak(minutes),
};
const defaults = [
  "startup",
  "list",
  "prompts",
  "watch",
  "runner",
  "context",
  "chat_updates",
  "horizon",
  "tailer",
  "cost",
  "pr",
  "housekeeping",
  "tools",
  "parts",
  "replicas",
];

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
