export type { Publish } from "./parts.ts";
export type { RunnerOptions, RunnerStats } from "./runner.ts";
export { Runner } from "./runner.ts";
export type { RetryPolicy, TurnOutcome } from "./turn.ts";
