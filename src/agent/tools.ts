import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { constants } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { applyEdits } from "../tools/edits.ts";
import {
  isWorkspaceTool,
  limits,
  type WorkspaceToolArgs,
  type WorkspaceToolName,
  workspaceToolSchemas,
} from "../tools/workspace.ts";
import { CapturedOutput } from "./output.ts";
import { resolveInside, shown, ToolError } from "./paths.ts";

/*
 * The workspace tools as the agent runs them (docs/api.md "Workspace tools"), under one workspace
 * root. Each call's arguments are validated again here (the agent trusts nothing it is sent);
 * failures the model can act on (a bad path, a missing file, an edit that does not match) are
 * error results, never exceptions.
 */

export interface ToolResult {
  result: unknown;
  is_error: boolean;
}

/** What a running command reports while it runs (the chat stream shows it). */
export type OnOutput = (stream: "stdout" | "stderr", text: string) => void;

export interface RunContext {
  /** The chat the call belongs to: commands see it as PGCHATD_CHAT_ID (`pgchatd chat context`). */
  chatId: string;
  /** Aborted when the call is canceled (its turn ended, it timed out): the command is killed. */
  signal: AbortSignal;
  onOutput?: OnOutput | undefined;
}

interface BackgroundProcess {
  child: ChildProcess;
  stdout: CapturedOutput;
  stderr: CapturedOutput;
  exitCode: number | null;
  signal: string | null;
  done: boolean;
}

const fail = (error: string): ToolResult => ({ result: { error }, is_error: true });

/** Kills a command and everything it started (it runs in its own process group). */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

export class WorkspaceTools {
  private readonly processes = new Map<string, BackgroundProcess>();

  /** `root` must be the real path of an existing directory. */
  constructor(readonly root: string) {}

  async run(name: string, args: unknown, ctx: RunContext): Promise<ToolResult> {
    if (!isWorkspaceTool(name)) return fail(`there is no workspace tool named ${name}`);
    const parsed = workspaceToolSchemas[name].safeParse(args);
    if (!parsed.success) {
      const detail = parsed.error.issues
        .map((i) => `${i.path.join(".") || "(arguments)"}: ${i.message}`)
        .join("; ");
      return fail(`invalid arguments for ${name}: ${detail}`);
    }
    try {
      return await this.dispatch(name, parsed.data, ctx);
    } catch (err) {
      if (err instanceof ToolError) return fail(err.message);
      const e = err as NodeJS.ErrnoException;
      if (e.code) return fail(`${e.code}: ${e.message}`);
      throw err;
    }
  }

  /** Kills every background process (the agent is stopping). */
  close(): void {
    for (const p of this.processes.values()) killGroup(p.child);
  }

  private dispatch(name: WorkspaceToolName, args: unknown, ctx: RunContext): Promise<ToolResult> {
    switch (name) {
      case "execute":
        return this.execute(args as WorkspaceToolArgs<"execute">, ctx);
      case "process_output":
        return Promise.resolve(this.processOutput(args as WorkspaceToolArgs<"process_output">));
      case "read_file":
        return this.readFile(args as WorkspaceToolArgs<"read_file">);
      case "write_file":
        return this.writeFile(args as WorkspaceToolArgs<"write_file">);
      case "edit_files":
        return this.editFiles(args as WorkspaceToolArgs<"edit_files">);
      case "list_directory":
        return this.listDirectory(args as WorkspaceToolArgs<"list_directory">);
    }
  }

  private spawn(command: string, chatId: string): ChildProcess {
    return spawn("sh", ["-c", command], {
      cwd: this.root,
      env: { ...process.env, PGCHATD_CHAT_ID: chatId },
      // Its own process group, so a timeout or a cancel kills what it started too.
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
  }

  private async execute(args: WorkspaceToolArgs<"execute">, ctx: RunContext): Promise<ToolResult> {
    if (args.background) return this.startBackground(args.command, ctx.chatId);
    const stdout = new CapturedOutput(limits.outputChars);
    const stderr = new CapturedOutput(limits.outputChars);
    const child = this.spawn(args.command, ctx.chatId);
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      stdout.append(s);
      ctx.onOutput?.("stdout", s);
    });
    child.stderr!.setEncoding("utf8").on("data", (s: string) => {
      stderr.append(s);
      ctx.onOutput?.("stderr", s);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, args.timeout_ms ?? limits.executeTimeoutMs);
    const onAbort = () => killGroup(child);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      const exit = await new Promise<{ code: number | null; signal: string | null }>(
        (resolve, reject) => {
          child.once("error", reject);
          child.once("close", (code, signal) => resolve({ code, signal }));
        },
      );
      return {
        result: {
          exit_code: exit.code,
          signal: exit.signal,
          timed_out: timedOut,
          stdout: stdout.text(),
          stderr: stderr.text(),
          truncated: stdout.truncated || stderr.truncated,
        },
        is_error: false,
      };
    } finally {
      clearTimeout(timer);
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  private startBackground(command: string, chatId: string): ToolResult {
    if (this.processes.size >= limits.backgroundProcesses) {
      // Finished processes make room, oldest first; running ones are never dropped.
      for (const [id, p] of this.processes) {
        if (p.done) {
          this.processes.delete(id);
          break;
        }
      }
      if (this.processes.size >= limits.backgroundProcesses) {
        return fail(
          `at most ${limits.backgroundProcesses} background processes run at once; wait for one to finish`,
        );
      }
    }
    const child = this.spawn(command, chatId);
    const proc: BackgroundProcess = {
      child,
      stdout: new CapturedOutput(limits.outputChars),
      stderr: new CapturedOutput(limits.outputChars),
      exitCode: null,
      signal: null,
      done: false,
    };
    child.stdout!.setEncoding("utf8").on("data", (s: string) => proc.stdout.append(s));
    child.stderr!.setEncoding("utf8").on("data", (s: string) => proc.stderr.append(s));
    child.once("error", (err) => {
      proc.stderr.append(String(err));
      proc.done = true;
    });
    child.once("close", (code, signal) => {
      proc.exitCode = code;
      proc.signal = signal;
      proc.done = true;
    });
    const processId = `proc_${randomUUID().slice(0, 8)}`;
    this.processes.set(processId, proc);
    return { result: { process_id: processId, pid: child.pid ?? null }, is_error: false };
  }

  private processOutput(args: WorkspaceToolArgs<"process_output">): ToolResult {
    const proc = this.processes.get(args.process_id);
    if (!proc) {
      return fail(
        `no background process ${args.process_id} (processes end with the agent that started them)`,
      );
    }
    return {
      result: {
        process_id: args.process_id,
        running: !proc.done,
        exit_code: proc.exitCode,
        signal: proc.signal,
        stdout: proc.stdout.text(),
        stderr: proc.stderr.text(),
        truncated: proc.stdout.truncated || proc.stderr.truncated,
      },
      is_error: false,
    };
  }

  private async readFile(args: WorkspaceToolArgs<"read_file">): Promise<ToolResult> {
    const file = await resolveInside(this.root, args.path);
    const stat = await fs.stat(file);
    if (!stat.isFile()) throw new ToolError(`${args.path}: not a file`);
    const text = await fs.readFile(file, "utf8");
    if (text.includes("\u0000")) throw new ToolError(`${args.path}: a binary file`);
    const lines = text.split("\n");
    if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
    const start = (args.offset ?? 1) - 1;
    const wanted = lines.slice(start, start + (args.limit ?? limits.readLines));
    let content = "";
    let taken = 0;
    for (const line of wanted) {
      if (content.length + line.length + 1 > limits.readChars) break;
      content += `${line}\n`;
      taken++;
    }
    return {
      result: {
        path: shown(this.root, file),
        content,
        start_line: start + 1,
        end_line: start + taken,
        total_lines: lines.length,
        truncated: start + taken < lines.length,
      },
      is_error: false,
    };
  }

  private async writeFile(args: WorkspaceToolArgs<"write_file">): Promise<ToolResult> {
    const file = await resolveInside(this.root, args.path);
    const existed = await fs
      .lstat(file)
      .then(() => true)
      .catch(() => false);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await writeNoFollow(file, args.content);
    return {
      result: {
        path: shown(this.root, file),
        bytes: Buffer.byteLength(args.content),
        created: !existed,
      },
      is_error: false,
    };
  }

  private async editFiles(args: WorkspaceToolArgs<"edit_files">): Promise<ToolResult> {
    // Every edit is checked before any file is written: one that does not match changes nothing.
    const byFile = new Map<string, { shown: string; edits: Parameters<typeof applyEdits>[1] }>();
    for (const [index, edit] of args.edits.entries()) {
      const file = await resolveInside(this.root, edit.path);
      const entry = byFile.get(file) ?? { shown: shown(this.root, file), edits: [] };
      entry.edits.push({ edit, index });
      byFile.set(file, entry);
    }
    const writes: { file: string; text: string }[] = [];
    const edited: { path: string; edits: number }[] = [];
    for (const [file, entry] of byFile) {
      const before = await fs.readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
        throw new ToolError(
          `${entry.shown}: ${err.code === "ENOENT" ? "no such file" : err.message}`,
        );
      });
      const outcome = applyEdits(before, entry.edits, entry.shown);
      if (!outcome.ok) return fail(outcome.error);
      writes.push({ file, text: outcome.text });
      edited.push({ path: entry.shown, edits: entry.edits.length });
    }
    for (const w of writes) await writeNoFollow(w.file, w.text);
    return { result: { edited }, is_error: false };
  }

  private async listDirectory(args: WorkspaceToolArgs<"list_directory">): Promise<ToolResult> {
    const dir = await resolveInside(this.root, args.path);
    const entries = await fs.readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const listed = await Promise.all(
      entries.slice(0, limits.listEntries).map(async (e) => {
        const type = e.isDirectory()
          ? "directory"
          : e.isFile()
            ? "file"
            : e.isSymbolicLink()
              ? "symlink"
              : "other";
        const size =
          type === "file"
            ? ((await fs.stat(path.join(dir, e.name)).catch(() => null))?.size ?? null)
            : null;
        return { name: e.name, type, size };
      }),
    );
    return {
      result: {
        path: shown(this.root, dir),
        entries: listed,
        truncated: entries.length > limits.listEntries,
      },
      is_error: false,
    };
  }
}

/** Writes a file without following a symbolic link put in its place since it was resolved. */
async function writeNoFollow(file: string, text: string): Promise<void> {
  const handle = await fs.open(
    file,
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
    0o644,
  );
  try {
    await handle.writeFile(text, "utf8");
  } finally {
    await handle.close();
  }
}
