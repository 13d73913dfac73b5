import { z } from "zod";

/*
 * The built-in workspace tools (docs/api.md "Workspace tools"): what the model is offered and what
 * the agent (`pgchatd agent`, src/agent/) runs. One definition for both sides: the runner offers
 * these schemas to the model (so the AI SDK rejects bad arguments before anything is recorded),
 * and the agent validates every call again before it touches the workspace.
 */

export const workspaceToolNames = [
  "execute",
  "process_output",
  "read_file",
  "write_file",
  "edit_files",
  "list_directory",
] as const;
export type WorkspaceToolName = (typeof workspaceToolNames)[number];

export function isWorkspaceTool(name: string): name is WorkspaceToolName {
  return (workspaceToolNames as readonly string[]).includes(name);
}

/** The tools plan mode offers for exploring: nothing that changes the workspace. */
export const planModeWorkspaceTools: readonly WorkspaceToolName[] = [
  "execute",
  "process_output",
  "read_file",
  "list_directory",
];

/** The chat's plan file in plan mode: the only path write_file and edit_files may name there. */
export const planFilePath = "plan.md";

/** Whether a tool path names the plan file (`plan.md`, `./plan.md`). */
export function isPlanFilePath(p: string): boolean {
  return p.trim().replace(/^(\.\/)+/, "") === planFilePath;
}

export const limits = {
  /** A command's default time limit; the model may ask for up to maxExecuteTimeoutMs. */
  executeTimeoutMs: 60_000,
  maxExecuteTimeoutMs: 10 * 60_000,
  /**
   * Characters of stdout and of stderr a result carries: the first and last halves of longer
   * output, with a marker saying how much was cut. 32 KiB is about 8,000 tokens: enough for a test
   * run's failures, small enough that a noisy build does not fill the model's context.
   */
  outputChars: 32 * 1024,
  /** Lines read_file returns when the model gives no limit, and at most. */
  readLines: 2_000,
  maxReadLines: 10_000,
  /** Characters read_file returns at most, whatever the lines (minified files have long ones). */
  readChars: 256 * 1024,
  /** Entries list_directory returns at most. */
  listEntries: 1_000,
  /** Characters of a file write_file writes, and of each edit's text. */
  writeChars: 1_000_000,
  /** Edits per edit_files call. */
  edits: 100,
  /** Background processes one agent keeps at once (finished ones count until read). */
  backgroundProcesses: 32,
  /**
   * How long the runner waits for the agent to answer a call that is not a foreground command,
   * and for a command beyond its own time limit (the agent's start and answer travel too).
   */
  answerMs: 60_000,
  answerGraceMs: 30_000,
} as const;

/** PostgreSQL text cannot hold NUL: refused here, as a schema error the model can correct. */
const noNul = (s: string) => !s.includes("\u0000");
const text = (max: number) => z.string().max(max).refine(noNul, "must not contain NUL characters");
const pathArg = text(4096)
  .min(1)
  .describe("A path relative to the workspace root (absolute paths must lie inside it).");

export const workspaceToolSchemas = {
  execute: z.strictObject({
    command: text(64 * 1024)
      .min(1)
      .describe("A shell command (sh -c), run in the workspace root."),
    timeout_ms: z
      .number()
      .int()
      .min(1)
      .max(limits.maxExecuteTimeoutMs)
      .optional()
      .describe(
        `Kill the command after this long (default ${limits.executeTimeoutMs}, at most ${limits.maxExecuteTimeoutMs}).`,
      ),
    background: z
      .boolean()
      .optional()
      .describe("Start it and return a process_id at once; read its output with process_output."),
  }),
  process_output: z.strictObject({
    process_id: text(64).min(1).describe("The process_id a background execute returned."),
  }),
  read_file: z.strictObject({
    path: pathArg,
    offset: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe("The first line to return, counting from 1 (default 1)."),
    limit: z
      .number()
      .int()
      .min(1)
      .max(limits.maxReadLines)
      .optional()
      .describe(`How many lines to return (default ${limits.readLines}).`),
  }),
  write_file: z.strictObject({
    path: pathArg,
    content: text(limits.writeChars).describe("The whole new content of the file."),
  }),
  edit_files: z.strictObject({
    edits: z
      .array(
        z.strictObject({
          path: pathArg,
          old: text(limits.writeChars)
            .min(1)
            .describe("Text that occurs exactly once in the file."),
          new: text(limits.writeChars).describe("What replaces it."),
        }),
      )
      .min(1)
      .max(limits.edits),
  }),
  list_directory: z.strictObject({
    path: pathArg.describe("A directory relative to the workspace root; `.` is the root."),
  }),
} as const satisfies Record<WorkspaceToolName, z.ZodType>;

export type WorkspaceToolArgs<N extends WorkspaceToolName> = z.infer<
  (typeof workspaceToolSchemas)[N]
>;

export const workspaceToolDescriptions: Record<WorkspaceToolName, string> = {
  execute:
    "Run a shell command in the workspace root. Returns exit_code, stdout and stderr (each cut to " +
    `its first and last ${limits.outputChars / 2} characters when longer). With background: true, ` +
    "returns a process_id at once; read the output later with process_output.",
  process_output:
    "The output so far of a background command, whether it is still running, and its exit code.",
  read_file:
    "Read a text file of the workspace: lines offset..offset+limit-1, with the total line count.",
  write_file: "Create or replace a file of the workspace with the given content.",
  edit_files:
    "Replace text in files of the workspace. Each edit's `old` must occur exactly once in its " +
    "file; if any edit does not match, nothing is changed.",
  list_directory: "List a directory of the workspace: names, types and sizes.",
};

/** In plan mode the writing tools only write the chat's plan file. */
export const planModeDescriptions: Partial<Record<WorkspaceToolName, string>> = {
  write_file:
    `Plan mode: write the chat's plan file. The path must be "${planFilePath}"; nothing else ` +
    "can be written while planning.",
  edit_files:
    `Plan mode: edit the chat's plan file. Every edit's path must be "${planFilePath}"; each ` +
    "`old` must occur exactly once in it.",
};

/**
 * How long the runner waits for the agent to answer a call before it closes the call as timed out
 * (chat_tool_calls.deadline_at): a foreground command's own limit plus `graceMs` for the round
 * trips, else `answerMs` (limits.answerMs and limits.answerGraceMs unless a test shrinks them).
 */
export function answerTimeoutMs(
  name: WorkspaceToolName,
  args: unknown,
  wait: { answerMs: number; graceMs: number } = {
    answerMs: limits.answerMs,
    graceMs: limits.answerGraceMs,
  },
): number {
  if (name === "execute") {
    const a = args as { timeout_ms?: number; background?: boolean };
    if (!a.background) return (a.timeout_ms ?? limits.executeTimeoutMs) + wait.graceMs;
  }
  return wait.answerMs;
}
