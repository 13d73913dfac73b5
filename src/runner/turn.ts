import { isDeepStrictEqual } from "node:util";
import type { SharedV3ProviderOptions } from "@ai-sdk/provider";
import { type LanguageModelUsage, type ModelMessage, streamText, type ToolSet } from "ai";
import type { PoolQueryable } from "../db/index.ts";
import { isDatabaseUnreachable } from "../db/unreachable.ts";
import {
  listChatContextResourcesForPromptByChatID,
  prepareChatRunContextByID,
} from "../generated/chat_context.ts";
import { listChatFileDataByIDs } from "../generated/chat_files.ts";
import {
  getChatResponseAnchorByChatID,
  listChatMessagesForPromptByChatID,
} from "../generated/chat_messages.ts";
import {
  type FinishChatRunRow,
  finishChatRun,
  type GetChatForRunByIDRow,
  getChatForRunByID,
  saveChatRunToolStep,
  setChatLastInjectedContextByID,
} from "../generated/chat_runs.ts";
import { updateChatTitleFromModelByID } from "../generated/chat_titles.ts";
import { updateChatLastTurnSummaryByID } from "../generated/chats.ts";
import type { Logger } from "../log.ts";
import {
  type ChatError,
  classifyError,
  retryAfterMs,
  spendLimitError,
  TurnError,
} from "../models/chat_error.ts";
import { generateTitle, titleMessages } from "../models/chat_titles.ts";
import {
  buildMessages,
  type ContextResource,
  type FileData,
  fileIdsOf,
  type HistoryRow,
  injectedContext,
  type Part,
  withPinnedContext,
  withSystemNotes,
} from "../models/prompt.ts";
import type { Models, ResolvedModel } from "../models/providers.ts";
import { generateQuickText } from "../models/quick_text.ts";
import { PartStream, type Publish } from "./parts.ts";
import { assignCalls, awaitToolCalls, ToolWaker, turnTools } from "./workspace_tools.ts";

/*
 * One turn of one claimed chat: read the chat and its history, call the model (streaming parts to
 * subscribers, retrying what the provider says is worth retrying), store the output and end the
 * turn in one transaction (chat_run_finish decides, under the chat's row lock, what an interrupt,
 * an edit or a lost lease meanwhile means for the output).
 */

/** Why a turn's model call was stopped from outside. */
export type StopReason =
  /** The chat left `running` (interrupt, edit) or was archived: end the turn, SQL sorts it out. */
  | "interrupt"
  /** The lease is gone (recovered by another runner): write nothing. */
  | "lost"
  /** This runner shuts down: write nothing; the shutdown returns the chat to pending. */
  | "shutdown";

export interface RetryPolicy {
  /** Attempts after the first one. */
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface TurnDeps {
  /** A pool: a turn reads its chat and history at once. */
  db: PoolQueryable;
  models: Models;
  publish: Publish | undefined;
  /** After a commit that wrote change events (see RunnerOptions.afterWrite). */
  afterWrite: () => void;
  /**
   * The turn's end admitted the chat's next queued message: the chat is pending again, and this
   * runner, whose session wrote that, is the one chat_runner_choose picked for it (without a
   * NOTIFY when the session carries its id): it should claim.
   */
  pendingAgain: () => void;
  logger: Logger;
  workerId: string;
  retry: RetryPolicy;
  /**
   * A model call that sends nothing for this long, before its response or between two chunks, is
   * a timeout (retried like one).
   */
  chunkTimeoutMs: number;
  /** Coalescing window of streamed deltas (see PartStream). */
  partFlushMs: number;
  /**
   * Model calls per turn. A step only leads to another when the runner answered the model's tool
   * calls itself (an unknown tool, invalid arguments); this bounds a model that keeps doing that.
   */
  maxSteps: number;
  /** How long workspace tool calls wait for the agent's answer (see answerTimeoutMs). */
  toolWait: { answerMs: number; graceMs: number };
}

export interface Lease {
  chatId: string;
  startedAt: string;
}

/** What the turn came to (chat_run_finish's outcome, or why nothing was written). */
export type TurnOutcome =
  | "completed"
  | "requires_action"
  | "error"
  | "interrupted"
  | "discarded"
  | "lost"
  | "shutdown";

export interface TurnResult {
  outcome: TurnOutcome;
  /** Work after the lease is released (summary, title); the runner tracks it. */
  followUp?: (signal: AbortSignal) => Promise<void>;
}

/** A message row for chat_run_finish / chat_run_save_step. */
interface OutputMessage {
  role: "assistant" | "tool";
  content: Part[];
  input_tokens?: number;
  output_tokens?: number;
  total_tokens?: number;
  reasoning_tokens?: number;
  cache_creation_tokens?: number;
  cache_read_tokens?: number;
  runtime_ms?: number;
  provider_response_id?: string;
}

interface StepResult {
  content: Part[];
  /** Tool calls the SDK could not match to a declared tool or whose input failed its schema: why. */
  invalidCalls: Map<string, string>;
  usage?: LanguageModelUsage | undefined;
  responseId?: string | undefined;
  runtimeMs: number;
  finishReason?: string | undefined;
  error?: ChatError | undefined;
  /** How long the provider asked us to wait before trying again (Retry-After). */
  retryAfterMs?: number | undefined;
  stop?: StopReason | undefined;
}

/** Turn summaries are sidebar subtitles: one sentence. */
const maxSummaryLength = 200;
const summaryInstructions =
  "You summarise the last turn of a conversation for a sidebar: one sentence of at most 20 " +
  "words saying what was done or answered. Reply with the sentence only.";
const summaryAsk = "Summarise the last turn above.";

const stopReasonOf = (signal: AbortSignal): StopReason | undefined =>
  signal.aborted ? (signal.reason as StopReason) : undefined;

/** Accumulates a step's stream into stored parts: consecutive deltas of one kind join. */
class ContentBuilder {
  readonly parts: Part[] = [];
  readonly invalidCalls = new Map<string, string>();

  delta(type: "text" | "reasoning", text: string): void {
    const last = this.parts[this.parts.length - 1];
    if (last?.type === type) last.text = (last.text ?? "") + text;
    else this.parts.push({ type, text });
  }

  toolCall(id: string, name: string, args: unknown, invalid: string | undefined): void {
    this.parts.push({ type: "tool-call", tool_call_id: id, tool_name: name, args: args ?? {} });
    if (invalid !== undefined) this.invalidCalls.set(id, invalid);
  }
}

/** Characters of a schema error the model is shown: enough for every issue of a real call. */
const maxInvalidReasonChars = 2_000;

/**
 * What was wrong with a tool call's arguments, precisely, so the model can correct them: the
 * schema's issues (path and message each) when the SDK kept them, else its error's message.
 */
function invalidInputReason(error: unknown): string {
  let cause: unknown = error;
  for (let depth = 0; depth < 3 && cause; depth++) {
    const issues = (cause as { issues?: { path?: PropertyKey[]; message?: string }[] }).issues;
    if (Array.isArray(issues)) {
      return issues
        .map((i) => `${(i.path ?? []).map(String).join(".") || "(arguments)"}: ${i.message}`)
        .join("; ")
        .slice(0, maxInvalidReasonChars);
    }
    cause = (cause as { cause?: unknown }).cause;
  }
  return "";
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Exponential backoff with ±20% jitter, at least what the provider asked for, capped. */
export function backoffMs(policy: RetryPolicy, attempt: number, providerAsked?: number): number {
  const exp = policy.baseDelayMs * 2 ** (attempt - 1);
  const jittered = exp * (0.8 + Math.random() * 0.4);
  return Math.round(Math.min(policy.maxDelayMs, Math.max(jittered, providerAsked ?? 0)));
}

function usageColumns(u: LanguageModelUsage | undefined): Partial<OutputMessage> {
  if (!u || u.inputTokens === undefined) return {};
  const input = u.inputTokens;
  const output = u.outputTokens ?? 0;
  return {
    input_tokens: input,
    output_tokens: output,
    total_tokens: u.totalTokens ?? input + output,
    reasoning_tokens: u.outputTokenDetails?.reasoningTokens ?? u.reasoningTokens ?? 0,
    cache_creation_tokens: u.inputTokenDetails?.cacheWriteTokens ?? 0,
    cache_read_tokens: u.inputTokenDetails?.cacheReadTokens ?? u.cachedInputTokens ?? 0,
  };
}

/** One model call, streamed. Errors are returned classified, never thrown. */
async function streamStep(
  deps: TurnDeps,
  model: ResolvedModel,
  prompt: Prompt,
  tools: ToolSet,
  parts: PartStream,
  signal: AbortSignal,
): Promise<StepResult> {
  const started = performance.now();
  const built = new ContentBuilder();
  const step: StepResult = { content: built.parts, invalidCalls: built.invalidCalls, runtimeMs: 0 };
  let failure: unknown;
  let aborted = false;
  // The idle limit runs from the request on, not only between chunks: the SDK's own chunk timeout
  // starts with the response, so a provider that took the request and never answered held the
  // turn until the fetch's header timeout (5 minutes), and again at every retry.
  const idle = new AbortController();
  let idleTimer: NodeJS.Timeout | undefined;
  const active = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(
      () =>
        idle.abort(
          new DOMException(
            `The model provider sent nothing for ${deps.chunkTimeoutMs} ms.`,
            "TimeoutError",
          ),
        ),
      deps.chunkTimeoutMs,
    );
  };
  active();
  try {
    const result = streamText({
      model: model.model,
      messages: prompt.messages,
      ...(prompt.providerOptions ? { providerOptions: prompt.providerOptions } : {}),
      tools,
      // Retries are ours: each one is announced to the chat's subscribers (`retry` events).
      maxRetries: 0,
      abortSignal: AbortSignal.any([signal, idle.signal]),
      // System messages come from the chat's creator (system_prompt), not from model output.
      allowSystemInMessages: true,
      onError: () => {},
    });
    for await (const part of result.fullStream) {
      active();
      switch (part.type) {
        case "text-delta":
          built.delta("text", part.text);
          parts.delta("text", part.text);
          break;
        case "reasoning-delta":
          built.delta("reasoning", part.text);
          parts.delta("reasoning", part.text);
          break;
        case "tool-call": {
          const invalid =
            "invalid" in part && part.invalid === true ? invalidInputReason(part.error) : undefined;
          built.toolCall(part.toolCallId, part.toolName, part.input, invalid);
          if (invalid === undefined) parts.toolCall(part.toolCallId, part.toolName, part.input);
          break;
        }
        case "finish-step":
          step.usage = part.usage;
          step.finishReason = part.finishReason;
          step.responseId = part.response?.id;
          break;
        case "error":
          failure ??= part.error;
          break;
        case "abort":
          aborted = true;
          break;
      }
    }
  } catch (err) {
    failure ??= err;
  } finally {
    clearTimeout(idleTimer);
  }
  step.runtimeMs = Math.round(performance.now() - started);
  step.stop = stopReasonOf(signal);
  if (step.stop) return step;
  // Not the turn's signal: the idle limit aborted the call (the SDK reports the abort, or the
  // fetch's rejection, which is not the limit's reason).
  if (idle.signal.aborted && (aborted || failure !== undefined)) failure = idle.signal.reason;
  else if (aborted && failure === undefined) {
    failure = new DOMException("The model call was aborted.", "AbortError");
  }
  if (failure !== undefined) {
    step.error = classifyError(failure, model.provider, model.secrets);
    step.retryAfterMs = retryAfterMs(failure);
  }
  return step;
}

/** A step with the retry policy: retryable failures are announced and tried again. */
async function runStep(
  deps: TurnDeps,
  model: ResolvedModel,
  prompt: Prompt,
  tools: ToolSet,
  parts: PartStream,
  signal: AbortSignal,
): Promise<StepResult> {
  for (let attempt = 1; ; attempt++) {
    const step = await streamStep(deps, model, prompt, tools, parts, signal);
    if (!step.error?.retryable || attempt > deps.retry.retries) return step;
    const delay = backoffMs(deps.retry, attempt, step.retryAfterMs);
    parts.retry(attempt + 1, deps.retry.retries + 1, delay, step.error);
    try {
      await sleep(delay, signal);
    } catch {
      return { ...step, error: undefined, content: [], stop: stopReasonOf(signal) };
    }
  }
}

/**
 * The ChatError of a turn whose output the database refused (out of space, a dropped connection):
 * the model answered, but nothing of the answer could be kept.
 */
function unstoredOutput(err: unknown): ChatError {
  const code = (err as { code?: unknown } | null)?.code;
  return {
    message: "The answer could not be stored; send the message again.",
    kind: "generic",
    provider: null,
    retryable: true,
    status_code: null,
    detail: typeof code === "string" ? `database error ${code}` : null,
  };
}

export async function runTurn(
  deps: TurnDeps,
  lease: Lease,
  signal: AbortSignal,
  waker: ToolWaker = new ToolWaker(),
): Promise<TurnResult> {
  try {
    return await runTurnSteps(deps, lease, signal, waker);
  } catch (err) {
    // A turn that stops writing nothing has nothing to end.
    if (signal.aborted && signal.reason !== "interrupt") throw err;
    // The database went away, not the answer: the runner gives the lease back once it returns
    // (Runner.releaseOrphans) and the turn runs again from the stored history, answered once.
    if (isDatabaseUnreachable(err)) throw err;
    // The lease is renewed by this runner's heartbeat, not by the turn: left as it is, the chat
    // would stay `running` for as long as this runner lives. The turn ends in error instead,
    // without its output (a second failure is the runner's to log; the lease then stays).
    deps.logger.error({ err, chat: lease.chatId }, "storing the turn failed; it ends in error");
    const chat = await getChatForRunByID(deps.db, {
      id: lease.chatId,
      gateway: deps.models.routing.mode === "gateway",
    });
    if (!chat) return { outcome: "lost" };
    const row = await finishChatRun(deps.db, {
      chat_id: chat.id,
      worker_id: deps.workerId,
      started_at: lease.startedAt,
      model_config_id: chat.model_config_id,
      messages: [],
      outcome: "error",
      error: unstoredOutput(err),
    });
    deps.afterWrite();
    if (row.status === "pending") deps.pendingAgain();
    return { outcome: row.outcome as TurnOutcome };
  }
}

async function runTurnSteps(
  deps: TurnDeps,
  lease: Lease,
  signal: AbortSignal,
  waker: ToolWaker,
): Promise<TurnResult> {
  const { db } = deps;
  const chat = await getChatForRunByID(db, {
    id: lease.chatId,
    gateway: deps.models.routing.mode === "gateway",
  });
  if (!chat) return { outcome: "lost" };
  /** The history (read below, after the chat row). */
  let rows: HistoryRow[] = [];
  const parts = new PartStream(
    deps.publish,
    chat.id,
    chat.owner_id,
    deps.partFlushMs,
    deps.logger,
    {
      workerId: deps.workerId,
      startedAt: lease.startedAt,
    },
  );
  const output: OutputMessage[] = [];

  const finish = async (outcome: "completed" | "requires_action" | "error", error?: ChatError) => {
    await parts.close();
    const row = await finishChatRun(db, {
      chat_id: chat.id,
      worker_id: deps.workerId,
      started_at: lease.startedAt,
      model_config_id: chat.model_config_id,
      messages: output,
      outcome,
      error: error ?? null,
    });
    deps.afterWrite();
    if (row.status === "pending") deps.pendingAgain();
    return row;
  };
  const ended = async (outcome: "completed" | "requires_action", followUp: boolean) => {
    const row = await finish(outcome);
    return {
      outcome: row.outcome as TurnOutcome,
      ...(followUp && row.outcome === "completed"
        ? { followUp: followUpOf(deps, chat, model, row, rows, output) }
        : {}),
    };
  };

  // Admitted before the owner reached the limit (a queued message, a promotion, an edit): the
  // turn ends here and the model is never called.
  if (chat.over_spend_limit) {
    const row = await finish("error", spendLimitError(chat));
    return { outcome: row.outcome as TurnOutcome };
  }

  let model: ResolvedModel;
  try {
    model = await deps.models.resolve(chat);
  } catch (err) {
    const row = await finish("error", classifyError(err, chat.provider));
    return { outcome: row.outcome as TurnOutcome };
  }

  const files = new Map<string, FileData>();
  // The history is read after the chat row, never alongside it: a workspace call the agent
  // answers in between would otherwise be settled in the row (unsettled_tool_calls false) but
  // missing from an older read of the history, and the model would get a call without its result.
  const [history, context] = await Promise.all([
    listChatMessagesForPromptByChatID(db, { chat_id: chat.id }),
    chat.workspace_id ? pinnedContext(deps, chat.id) : Promise.resolve([]),
  ]);
  rows = history as HistoryRow[];
  const storing = storesResponses(deps, chat);
  const tools = turnTools(chat);
  const notes = tools.unavailable ? [tools.unavailable] : [];
  const prompt: Prompt = { messages: [], providerOptions: undefined };
  /**
   * The prompt from the stored history: chained, the system messages and what came after the
   * stored response it continues (the previous step's, after a tool step); else the history.
   */
  const buildPrompt = async (chain: boolean) => {
    const fileIds = fileIdsOf(rows).filter((id) => !files.has(id));
    if (fileIds.length > 0) {
      for (const f of await listChatFileDataByIDs(db, { chat_id: chat.id, ids: fileIds })) {
        files.set(f.id, f);
      }
    }
    const anchor = chain && storing ? await chainAnchor(deps, chat) : undefined;
    const promptRows = anchor
      ? rows.filter((r) => r.role === "system" || r.id > anchor.messageId)
      : rows;
    prompt.messages = withSystemNotes(
      withPinnedContext(buildMessages(promptRows, files), context),
      notes,
    );
    prompt.providerOptions = openaiOptions(deps, chat, anchor?.responseId);
    return anchor;
  };
  const reloadPrompt = async () => {
    rows = (await listChatMessagesForPromptByChatID(db, { chat_id: chat.id })) as HistoryRow[];
    return buildPrompt(true);
  };
  let anchor = await buildPrompt(true);
  // The whole history's context files: a chained prompt carries the earlier ones inside the
  // stored response it continues. Written only when it changed, and null for no context: a
  // statement on every turn, and an UPDATE of the chat row on each new chat's first, cost about a
  // fifth of POST /messages throughput (`npm run bench -- watch`, part 2).
  const injected = injectedContext(context, rows);
  if (!isDeepStrictEqual(injected, chat.last_injected_context)) {
    await setChatLastInjectedContextByID(db, {
      chat_id: chat.id,
      worker_id: deps.workerId,
      started_at: lease.startedAt,
      context: injected,
    });
  }

  if (chat.unsettled_tool_calls) {
    // An earlier run of this turn recorded workspace calls and stopped (its runner restarted, or
    // it was handed back): wait for their answers, as that run would have, instead of calling the
    // model with unanswered calls.
    const waited = await awaitToolCalls(deps, lease, waker, signal);
    if ("stop" in waited) return stopped(waited.stop, finish);
    if (waited.unanswered > 0) return ended("requires_action", false);
    anchor = await reloadPrompt();
  }

  for (let stepNo = 1; ; stepNo++) {
    let step = await runStep(deps, model, prompt, tools.tools, parts, signal);
    if (stepNo === 1 && anchor && step.error?.kind === "config" && step.content.length === 0) {
      // The provider no longer has the stored response (OpenAI keeps them 30 days) or refuses to
      // continue it: the turn replays the history instead, once.
      await buildPrompt(false);
      step = await runStep(deps, model, prompt, tools.tools, parts, signal);
    }
    if (step.stop === "lost" || step.stop === "shutdown") return { outcome: step.stop };

    const usage = usageColumns(step.usage);
    const assistant: OutputMessage | undefined =
      step.content.length > 0 || usage.input_tokens !== undefined
        ? {
            role: "assistant",
            content: step.content,
            ...usage,
            runtime_ms: step.runtimeMs,
            ...(step.responseId ? { provider_response_id: step.responseId } : {}),
          }
        : undefined;
    const calls = step.content.filter(
      (p): p is Part & { tool_call_id: string; tool_name: string } => p.type === "tool-call",
    );
    const assigned = await assignCalls(
      {
        deps,
        chat,
        tools,
        invalid: step.invalidCalls,
        lastStep: stepNo >= deps.maxSteps,
        maxSteps: deps.maxSteps,
      },
      calls,
    );
    const toolMessage: OutputMessage | undefined =
      assigned.answered.length > 0
        ? {
            role: "tool",
            content: assigned.answered.map((a) => ({
              type: "tool-result",
              tool_call_id: a.call.tool_call_id,
              tool_name: a.call.tool_name,
              result: a.result,
              is_error: a.isError,
            })),
          }
        : undefined;
    const stepMessages = [assistant, toolMessage].filter((m): m is OutputMessage => !!m);
    /**
     * Anywhere but in the transaction that saves the plan file, a proposed plan's result says it
     * was not saved (the turn stopped first, or the save found the turn gone).
     */
    const unsavedMessages = (): OutputMessage[] =>
      stepMessages.map((m) =>
        m.role !== "tool" || !assigned.planFile
          ? m
          : {
              ...m,
              content: m.content.map((p) =>
                (p.result as { file_id?: string } | undefined)?.file_id ===
                assigned.planFile?.file_id
                  ? {
                      ...p,
                      result: { error: "the plan was not saved: the turn was stopped first" },
                      is_error: true,
                    }
                  : p,
              ),
            },
      );

    if (step.stop === "interrupt") {
      output.push(...unsavedMessages());
      return { outcome: (await finish("completed")).outcome as TurnOutcome };
    }
    if (step.error) {
      output.push(...unsavedMessages());
      return { outcome: (await finish("error", step.error)).outcome as TurnOutcome };
    }
    if (step.finishReason === "content-filter") {
      output.push(...unsavedMessages());
      const error = classifyError(
        new TurnError(
          "content_filter",
          "The model provider's content filter stopped the response.",
        ),
        model.provider,
      );
      return { outcome: (await finish("error", error)).outcome as TurnOutcome };
    }

    const continues =
      assigned.answered.length > 0 && assigned.client === 0 && stepNo < deps.maxSteps;
    if (assigned.agent.length > 0 || assigned.planFile || continues) {
      // The step, its plan file and its workspace calls in one transaction; then the agent's
      // answers, and the next model call (or the turn's end). Its streamed parts are published
      // first: the save marks them replaced, and one published after it would stay in flight.
      await parts.close();
      const saved = await saveChatRunToolStep(db, {
        chat_id: chat.id,
        worker_id: deps.workerId,
        started_at: lease.startedAt,
        model_config_id: chat.model_config_id,
        messages: stepMessages,
        plan_file: assigned.planFile ?? null,
        tool_calls: assigned.agent,
      });
      deps.afterWrite();
      if (!saved.saved) {
        // Stopped or taken away meanwhile: the turn's end decides what happens to this step.
        output.push(...unsavedMessages());
        return { outcome: (await finish("completed")).outcome as TurnOutcome };
      }
      let unanswered = assigned.client;
      if (assigned.agent.length > 0) {
        const waited = await awaitToolCalls(deps, lease, waker, signal);
        if ("stop" in waited) return stopped(waited.stop, finish);
        unanswered = waited.unanswered;
      }
      if (unanswered > 0) return ended("requires_action", false);
      if (assigned.proposed || stepNo >= deps.maxSteps) {
        rows = (await listChatMessagesForPromptByChatID(db, { chat_id: chat.id })) as HistoryRow[];
        return ended("completed", true);
      }
      await reloadPrompt();
      continue;
    }
    output.push(...stepMessages);
    if (assigned.client > 0) return ended("requires_action", false);
    return ended("completed", true);
  }
}

/** A turn stopped while it waited for the agent: an interrupt ends it, anything else writes nothing. */
async function stopped(
  reason: StopReason,
  finish: (outcome: "completed") => Promise<FinishChatRunRow>,
): Promise<TurnResult> {
  if (reason === "lost" || reason === "shutdown") return { outcome: reason };
  return { outcome: (await finish("completed")).outcome as TurnOutcome };
}

/**
 * The chat's pinned workspace context for the prompt, after re-binding to a newer build and
 * hydrating an unpinned chat (chat_run_prepare_context records context problems in context_error
 * instead of raising them). A failure here is logged and the turn runs without context: context
 * never blocks a turn.
 */
async function pinnedContext(deps: TurnDeps, chatId: string): Promise<ContextResource[]> {
  try {
    await prepareChatRunContextByID(deps.db, { chat_id: chatId });
    deps.afterWrite();
    return await listChatContextResourcesForPromptByChatID(deps.db, { chat_id: chatId });
  } catch (err) {
    deps.logger.warn({ err, chat: chatId }, "loading the chat's workspace context failed");
    return [];
  }
}

/**
 * After a completed turn, with the lease released: the turn's summary (kept only if nothing
 * happened to the chat since, see UpdateChatLastTurnSummaryByID) and, after the first turn, a title.
 */
function followUpOf(
  deps: TurnDeps,
  chat: GetChatForRunByIDRow,
  model: ResolvedModel,
  finished: FinishChatRunRow,
  history: HistoryRow[],
  output: OutputMessage[],
): TurnResult["followUp"] {
  if (finished.outcome !== "completed") return undefined;
  // A promoted queue head already started the next turn: this summary would be stale at once.
  const summarise = finished.status === "waiting" && finished.updated_at !== null;
  const title = finished.title_source === "fallback";
  if (!summarise && !title) return undefined;
  const produced = output.map((m, i) => ({ id: -1 - i, role: m.role, content: m.content }));
  return async (signal) => {
    const log = deps.logger.child({ chat: chat.id });
    if (summarise) {
      try {
        const lastUser = history.map((r) => r.role).lastIndexOf("user");
        const turn = buildMessages(
          [...history.slice(Math.max(0, lastUser)), ...produced],
          new Map(),
        );
        const summary = await generateQuickText(model, {
          task: "summary",
          instructions: summaryInstructions,
          messages: turn,
          ask: summaryAsk,
          maxLength: maxSummaryLength,
          signal,
        });
        const written = await updateChatLastTurnSummaryByID(deps.db, {
          id: chat.id,
          summary,
          expected_updated_at: finished.updated_at!,
        });
        if (written > 0) deps.afterWrite();
      } catch (err) {
        if (!signal.aborted)
          log.warn(
            { err: classifyError(err, model.provider, model.secrets) },
            "turn summary failed",
          );
      }
    }
    if (title) {
      try {
        const turnRows = [...history, ...produced].filter(
          (r) => r.role === "user" || r.role === "assistant",
        );
        const turns = turnRows.filter((r) => r.role === "user").length;
        const text = await generateTitle(model, titleMessages(turnRows, turns), signal);
        const written = text
          ? await updateChatTitleFromModelByID(deps.db, {
              id: chat.id,
              title: text,
              regenerated: false,
            })
          : 0;
        if (written > 0) deps.afterWrite();
      } catch (err) {
        if (!signal.aborted)
          log.warn(
            { err: classifyError(err, model.provider, model.secrets) },
            "title generation failed",
          );
      }
    }
  };
}

/** What one model call is sent: the messages and, for OpenAI's Responses API, its options. */
interface Prompt {
  messages: ModelMessage[];
  providerOptions: SharedV3ProviderOptions | undefined;
}

/**
 * Whether the chat's model keeps its responses at the provider (docs/api.md "Response chaining"):
 * an OpenAI model config with store_responses, called directly (the gateway speaks chat
 * completions, which has no stored responses).
 */
function storesResponses(deps: TurnDeps, chat: GetChatForRunByIDRow): boolean {
  return (
    chat.provider === "openai" && chat.store_responses && deps.models.routing.mode === "direct"
  );
}

/**
 * The stored response a turn may continue from: the newest assistant message's, when it came from
 * this provider (a response id means nothing to another account) and nothing after it was edited
 * away. Otherwise the turn replays the history.
 */
async function chainAnchor(
  deps: TurnDeps,
  chat: GetChatForRunByIDRow,
): Promise<{ messageId: number; responseId: string } | undefined> {
  const anchor = await getChatResponseAnchorByChatID(deps.db, { chat_id: chat.id });
  if (!anchor?.provider_response_id || anchor.provider_id !== chat.provider_id) return undefined;
  if (anchor.edited_after) return undefined;
  return { messageId: Number(anchor.id), responseId: anchor.provider_response_id };
}

/**
 * The Responses API's options for an OpenAI model called directly: whether to keep the response
 * (store_responses; false keeps nothing at the provider), and the response this call continues.
 */
function openaiOptions(
  deps: TurnDeps,
  chat: GetChatForRunByIDRow,
  previousResponseId: string | undefined,
): SharedV3ProviderOptions | undefined {
  if (chat.provider !== "openai" || deps.models.routing.mode !== "direct") return undefined;
  return {
    openai: {
      store: chat.store_responses,
      ...(previousResponseId ? { previousResponseId } : {}),
    },
  };
}
