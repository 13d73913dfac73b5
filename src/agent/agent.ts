import fs from "node:fs/promises";
import { EventSourceParserStream } from "eventsource-parser/stream";
import type { Logger } from "../log.ts";
import { type AgentEndpoint, AgentRequestError, agentRequest } from "./client.ts";
import { readContextSnapshot, snapshotDigest } from "./context.ts";
import { type ToolResult, WorkspaceTools } from "./tools.ts";

/*
 * `pgchatd agent` (docs/operations.md "The workspace agent"): runs inside a workspace, keeps one
 * stream open to pgchatd (resumed by cursor after any disconnect), runs the tool calls addressed to
 * its agent under the workspace root, and posts their results. Each call is started on the server
 * before it runs, so it runs at most once: a call another process (or an earlier life of this one)
 * started is never run again. It also pushes the workspace's context snapshot, at start and
 * whenever the instruction files change.
 */

export interface AgentOptions {
  endpoint: AgentEndpoint;
  /** The workspace root: every tool works under it. */
  root: string;
  logger: Logger;
  /** Looks at the instruction files this often, and pushes them when they changed. */
  contextPollMs?: number;
}

/** A tool call as the stream sends it (docs/api.md "Workspace tools"). */
interface StreamedCall {
  id: number;
  chat_id: string;
  tool_call_id: string;
  tool_name: string;
  args: unknown;
  state: string;
  deadline_at: string;
}

interface RunningCall {
  controller: AbortController;
  /** Command output not yet reported, newest kept. */
  output: { stdout: string; stderr: string };
}

const defaults = {
  // Reading three small files every two seconds costs nothing; a change reaches chats at once.
  contextPollMs: 2_000,
};
/** Reconnect delays of the stream: quick after a blip, at most a few seconds while pgchatd is down. */
const reconnectMs = { first: 250, max: 5_000 };
/** A running command's new output is reported this often (the chat stream shows it). */
const progressMs = 500;
/** Characters of unreported output kept per stream between reports (the server takes 16 KiB). */
const maxProgressChars = 16 * 1024;
/**
 * A result whose JSON is larger than this is replaced by an error saying so: the server's request
 * limit is 1 MiB, and a result that large would swamp the model's context anyway.
 */
const maxResultBytes = 900 * 1024;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

export class WorkspaceAgent {
  sessionId: string | undefined;
  /** Calls this process ran to the end (answered or refused), by id. */
  readonly stats = { started: 0, answered: 0, canceled: 0, reconnects: 0 };
  private tools!: WorkspaceTools;
  private readonly running = new Map<number, RunningCall>();
  /** Calls this process is starting or running: one offered again meanwhile is skipped. */
  private readonly seen = new Set<number>();
  private cursor: string | undefined;
  private readonly stopping = new AbortController();
  private streamLoop: Promise<void> | undefined;
  private contextTimer: NodeJS.Timeout | undefined;
  private contextDigest: string | undefined;
  private pushing: Promise<void> | undefined;
  private readonly log: Logger;
  private resolveConnected: (() => void) | undefined;
  /** Resolves when the stream is open for the first time. */
  readonly connected = new Promise<void>((resolve) => {
    this.resolveConnected = resolve;
  });
  /** Rejects when the agent must stop (another process took over its token). */
  private failFatal: ((err: Error) => void) | undefined;
  readonly fatal = new Promise<never>((_, reject) => {
    this.failFatal = reject;
  });

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.logger.child({ component: "agent" });
    this.fatal.catch(() => {});
  }

  async start(): Promise<void> {
    const root = await fs.realpath(this.opts.root);
    if (!(await fs.stat(root)).isDirectory()) throw new Error(`${this.opts.root}: not a directory`);
    this.tools = new WorkspaceTools(root);
    const session = await this.request<{ session_id: string; interrupted: number }>(
      "POST",
      "sessions",
    );
    this.sessionId = session.session_id;
    if (session.interrupted > 0) {
      this.log.warn(
        { interrupted: session.interrupted },
        "calls the previous agent process had started were reported as interrupted",
      );
    }
    await this.pushContext();
    this.contextTimer = setInterval(() => {
      this.pushContext().catch((err) => this.log.warn({ err }, "pushing the context failed"));
    }, this.opts.contextPollMs ?? defaults.contextPollMs);
    this.streamLoop = this.runStream();
  }

  /** Stops the stream and every call it runs (their commands are killed). */
  async stop(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.contextTimer);
    for (const call of this.running.values()) call.controller.abort();
    this.tools?.close();
    await this.streamLoop;
    await this.pushing;
  }

  private request<T>(method: "POST" | "PUT", route: string, body?: unknown): Promise<T> {
    return agentRequest<T>(this.opts.endpoint, method, route, body, this.stopping.signal);
  }

  /** Pushes the context snapshot when it differs from the last one pushed. */
  private pushContext(): Promise<void> {
    this.pushing ??= (async () => {
      const resources = await readContextSnapshot(this.tools.root);
      const digest = snapshotDigest(resources);
      if (digest === this.contextDigest) return;
      const pushed = await this.request<{ marked_dirty: number }>("PUT", "context", {
        resources,
      });
      this.contextDigest = digest;
      this.log.info(
        { resources: resources.length, marked_dirty: pushed.marked_dirty },
        "pushed the workspace context",
      );
    })().finally(() => {
      this.pushing = undefined;
    });
    return this.pushing;
  }

  /** The stream, reopened after every disconnect from the last cursor it saw. */
  private async runStream(): Promise<void> {
    let delay = reconnectMs.first;
    while (!this.stopping.signal.aborted) {
      try {
        await this.readStream();
        delay = reconnectMs.first;
      } catch (err) {
        if (this.stopping.signal.aborted) return;
        if (err instanceof AgentRequestError && err.status === 409) {
          this.log.error({ err: err.message }, "another agent process took over this agent");
          this.failFatal?.(err);
          return;
        }
        this.log.warn({ err: (err as Error).message, retry_ms: delay }, "agent stream lost");
      }
      this.stats.reconnects++;
      await sleep(delay, this.stopping.signal);
      delay = Math.min(delay * 2, reconnectMs.max);
    }
  }

  private async readStream(): Promise<void> {
    const { url, token } = this.opts.endpoint;
    const query = `session_id=${encodeURIComponent(this.sessionId!)}`;
    const res = await fetch(`${url}/api/v2/workspaceagents/me/tool-calls/watch?${query}`, {
      headers: {
        "coder-agent-token": token,
        accept: "text/event-stream",
        ...(this.cursor ? { "last-event-id": this.cursor } : {}),
      },
      signal: this.stopping.signal,
    });
    if (!res.ok || !res.body) {
      const json = (await res.json().catch(() => ({}))) as { message?: string };
      throw new AgentRequestError(res.status, json.message ?? `HTTP ${res.status}`);
    }
    this.resolveConnected?.();
    const events = res.body
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(new EventSourceParserStream());
    for await (const ev of events) {
      if (ev.id) this.cursor = ev.id;
      if (ev.event === "tool_call") this.offer(JSON.parse(ev.data) as StreamedCall);
      else if (ev.event === "tool_call_canceled")
        this.cancel((JSON.parse(ev.data) as { id: number }).id);
      else if (ev.event === "resync")
        this.cursor = (JSON.parse(ev.data) as { cursor: string }).cursor;
    }
  }

  private offer(call: StreamedCall): void {
    if (call.state !== "pending" || this.seen.has(call.id)) return;
    this.seen.add(call.id);
    this.handle(call).catch((err) =>
      this.log.error({ err, call: call.id }, "running a tool call failed"),
    );
  }

  private cancel(id: number): void {
    const call = this.running.get(id);
    if (!call) return;
    this.stats.canceled++;
    call.controller.abort();
  }

  private async handle(call: StreamedCall): Promise<void> {
    try {
      // Only this start makes the call ours: another process's, or one closed meanwhile, is
      // refused. The set only keeps this process from starting a call twice at once.
      if (!(await this.startCall(call))) return;
      await this.runStarted(call);
    } finally {
      this.seen.delete(call.id);
    }
  }

  /**
   * Starts the call on the server, retrying while pgchatd is unreachable until its deadline (a
   * start that got through but whose answer was lost is accepted again: same session). False when
   * it is not this process's to run.
   */
  private async startCall(call: StreamedCall): Promise<boolean> {
    const deadline = Date.parse(call.deadline_at);
    let delay = reconnectMs.first;
    for (;;) {
      try {
        await this.request("POST", `tool-calls/${call.id}/start`, { session_id: this.sessionId });
        return true;
      } catch (err) {
        if (err instanceof AgentRequestError && err.status < 500) return false;
        if (this.stopping.signal.aborted || Date.now() > deadline) throw err;
        await sleep(delay, this.stopping.signal);
        delay = Math.min(delay * 2, reconnectMs.max);
      }
    }
  }

  private async runStarted(call: StreamedCall): Promise<void> {
    this.stats.started++;
    const running: RunningCall = {
      controller: new AbortController(),
      output: { stdout: "", stderr: "" },
    };
    this.running.set(call.id, running);
    const progress = setInterval(() => this.reportProgress(call, running), progressMs);
    let result: ToolResult;
    try {
      this.log.info(
        { call: call.id, tool: call.tool_name, chat: call.chat_id },
        "running a tool call",
      );
      result = await this.tools.run(call.tool_name, call.args, {
        chatId: call.chat_id,
        signal: running.controller.signal,
        onOutput: (stream, text) => {
          running.output[stream] = (running.output[stream] + text).slice(-maxProgressChars);
        },
      });
    } finally {
      clearInterval(progress);
      this.running.delete(call.id);
    }
    if (running.controller.signal.aborted) return; // canceled: the server closed it already
    await this.answer(call, result);
  }

  private reportProgress(call: StreamedCall, running: RunningCall): void {
    const { stdout, stderr } = running.output;
    if (!stdout && !stderr) return;
    running.output = { stdout: "", stderr: "" };
    this.request("POST", `tool-calls/${call.id}/progress`, {
      session_id: this.sessionId,
      ...(stdout ? { stdout } : {}),
      ...(stderr ? { stderr } : {}),
    }).catch((err) => {
      // The call is over on the server (canceled, timed out): stop the command.
      if (err instanceof AgentRequestError && (err.status === 409 || err.status === 404)) {
        running.controller.abort();
      }
    });
  }

  /** Posts the result, retrying while pgchatd is unreachable, until the call's deadline. */
  private async answer(call: StreamedCall, result: ToolResult): Promise<void> {
    let body = { session_id: this.sessionId, result: result.result, is_error: result.is_error };
    const bytes = Buffer.byteLength(JSON.stringify(body));
    if (bytes > maxResultBytes) {
      body = {
        ...body,
        result: {
          error: `the result was ${bytes} bytes, more than ${maxResultBytes}; ask for less`,
        },
        is_error: true,
      };
    }
    const deadline = Date.parse(call.deadline_at);
    let delay = reconnectMs.first;
    for (;;) {
      try {
        await this.request("POST", `tool-calls/${call.id}/result`, body);
        this.stats.answered++;
        return;
      } catch (err) {
        // Closed meanwhile (timed out, canceled) or answered by an earlier attempt that got through.
        if (err instanceof AgentRequestError && (err.status === 409 || err.status === 404)) return;
        // A result the server cannot take (400, 413) is replaced by one saying so, once: the
        // model learns why instead of the call timing out.
        if (err instanceof AgentRequestError && err.status < 500) {
          if (body.is_error && (body.result as { refused?: boolean }).refused) return;
          body = {
            ...body,
            result: { error: `the result was refused by pgchatd: ${err.message}`, refused: true },
            is_error: true,
          };
          continue;
        }
        if (this.stopping.signal.aborted || Date.now() > deadline) throw err;
        await sleep(delay, this.stopping.signal);
        delay = Math.min(delay * 2, reconnectMs.max);
      }
    }
  }
}
