import { randomUUID } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import type { SharedV3ProviderOptions } from "@ai-sdk/provider";
import { type LanguageModelUsage, type ModelMessage, streamText, type ToolSet } from "ai";
import type { PoolQueryable } from "../db/index.ts";
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
  saveChatRunPlan,
  saveChatRunStep,
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
  askUserQuestion,
  planFileMarkdown,
  planTools,
  proposedPlanOf,
  proposePlan,
} from "../models/plan_mode.ts";
import {
  buildMessages,
  buildTools,
  type ContextResource,
  type FileData,
  fileIdsOf,
  type HistoryRow,
  injectedContext,
  type Part,
  withPinnedContext,
} from "../models/prompt.ts";
import type { Models, ResolvedModel } from "../models/providers.ts";
import { generateQuickText } from "../models/quick_text.ts";
import { PartStream, type Publish } from "./parts.ts";

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
  logger: Logger;
  workerId: string;
  retry: RetryPolicy;
  /** A stream silent for this long is a timeout (retried like one). */
  chunkTimeoutMs: number;
  /** Coalescing window of streamed deltas (see PartStream). */
  partFlushMs: number;
  /**
   * Model calls per turn. A step only leads to another when the runner answered the model's tool
   * calls itself (an unknown tool, invalid arguments); this bounds a model that keeps doing that.
   */
  maxSteps: number;
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
  /** Tool calls the SDK could not match to a declared tool or whose input failed its schema. */
  invalidCalls: Set<string>;
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
  readonly invalidCalls = new Set<string>();

  delta(type: "text" | "reasoning", text: string): void {
    const last = this.parts[this.parts.length - 1];
    if (last?.type === type) last.text = (last.text ?? "") + text;
    else this.parts.push({ type, text });
  }

  toolCall(id: string, name: string, args: unknown, invalid: boolean): void {
    this.parts.push({ type: "tool-call", tool_call_id: id, tool_name: name, args: args ?? {} });
    if (invalid) this.invalidCalls.add(id);
  }
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
  try {
    const result = streamText({
      model: model.model,
      messages: prompt.messages,
      ...(prompt.providerOptions ? { providerOptions: prompt.providerOptions } : {}),
      tools,
      // Retries are ours: each one is announced to the chat's subscribers (`retry` events).
      maxRetries: 0,
      abortSignal: signal,
      // System messages come from the chat's creator (system_prompt), not from model output.
      allowSystemInMessages: true,
      timeout: { chunkMs: deps.chunkTimeoutMs },
      onError: () => {},
    });
    for await (const part of result.fullStream) {
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
          const invalid = "invalid" in part && part.invalid === true;
          built.toolCall(part.toolCallId, part.toolName, part.input, invalid);
          if (!invalid) parts.toolCall(part.toolCallId, part.toolName, part.input);
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
  }
  step.runtimeMs = Math.round(performance.now() - started);
  step.stop = stopReasonOf(signal);
  if (step.stop) return step;
  if (aborted && failure === undefined) {
    // Not our signal: the SDK's chunk timeout aborted the call.
    failure = new DOMException("The model stream went silent.", "TimeoutError");
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

export async function runTurn(
  deps: TurnDeps,
  lease: Lease,
  signal: AbortSignal,
): Promise<TurnResult> {
  const { db } = deps;
  const [chat, history] = await Promise.all([
    getChatForRunByID(db, { id: lease.chatId, gateway: deps.models.routing.mode === "gateway" }),
    listChatMessagesForPromptByChatID(db, { chat_id: lease.chatId }),
  ]);
  if (!chat) return { outcome: "lost" };
  const rows = history as HistoryRow[];
  const parts = new PartStream(deps.publish, chat.id, chat.owner_id, deps.partFlushMs, deps.logger);
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
    return row;
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

  const fileIds = fileIdsOf(rows);
  const files = new Map<string, FileData>();
  if (fileIds.length > 0) {
    for (const f of await listChatFileDataByIDs(db, { chat_id: chat.id, ids: fileIds })) {
      files.set(f.id, f);
    }
  }
  const context = chat.workspace_id ? await pinnedContext(deps, chat.id) : [];
  const storing = storesResponses(deps, chat);
  const anchor = storing ? await chainAnchor(deps, chat) : undefined;
  // Chained: the system messages and what came after the stored response; else the history.
  const promptRows = anchor
    ? rows.filter((r) => r.role === "system" || r.id > anchor.messageId)
    : rows;
  const prompt: Prompt = {
    messages: withPinnedContext(buildMessages(promptRows, files), context),
    providerOptions: openaiOptions(deps, chat, anchor?.responseId),
  };
  // Plan mode offers only the planning tools: never the client's, nothing that writes.
  const planning = chat.plan_mode === "plan";
  const tools = planning ? planTools() : buildTools(chat.dynamic_tools);
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

  for (let stepNo = 1; ; stepNo++) {
    let step = await runStep(deps, model, prompt, tools, parts, signal);
    if (stepNo === 1 && anchor && step.error?.kind === "config" && step.content.length === 0) {
      // The provider no longer has the stored response (OpenAI keeps them 30 days) or refuses to
      // continue it: the turn replays the history instead, once.
      prompt.messages = withPinnedContext(buildMessages(rows, files), context);
      prompt.providerOptions = openaiOptions(deps, chat, undefined);
      step = await runStep(deps, model, prompt, tools, parts, signal);
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
    const calls = step.content.filter((p) => p.type === "tool-call");
    // Calls the runner answers itself (no such tool, arguments that fail the schema), so the model
    // can correct itself; the rest are the client's.
    const refused = calls.filter(
      (p) => step.invalidCalls.has(p.tool_call_id!) || !(p.tool_name! in tools),
    );
    // A valid propose_plan (plan mode) is the runner's to answer: it saves the plan.
    const plans = calls.filter(
      (p) => p.tool_name === proposePlan && planning && !refused.includes(p),
    );
    const answered = [...refused, ...plans];
    const clientCalls = calls.length - answered.length;
    const planFileId = plans.length > 0 ? randomUUID() : undefined;
    /**
     * The step's messages. A proposed plan's result says it was saved only in the messages
     * chat_run_save_plan stores with the file; anywhere else (the turn stopped first, or the save
     * found the turn gone) it says it was not.
     */
    const messagesOfStep = (planSaved: boolean): OutputMessage[] => {
      const toolMessage: OutputMessage | undefined =
        answered.length > 0
          ? {
              role: "tool",
              content: [
                ...refused.map((p) => ({
                  type: "tool-result",
                  tool_call_id: p.tool_call_id!,
                  tool_name: p.tool_name!,
                  result: { error: refusal(p.tool_name!, tools, planning, chat.dynamic_tools) },
                  is_error: true,
                })),
                ...plans.map((p, i) => ({
                  type: "tool-result",
                  tool_call_id: p.tool_call_id!,
                  tool_name: p.tool_name!,
                  ...(i === 0 && planSaved
                    ? { result: { saved: true, file_id: planFileId, name: "plan.md" } }
                    : {
                        // One plan file per step: a second proposal in the same step saves nothing.
                        result: {
                          error:
                            i === 0
                              ? "the plan was not saved: the turn was stopped first"
                              : "one plan per turn: only the first proposal is saved",
                        },
                        is_error: true,
                      }),
                })),
              ],
            }
          : undefined;
      return [assistant, toolMessage].filter((m): m is OutputMessage => !!m);
    };
    const stepMessages = messagesOfStep(false);

    if (step.stop === "interrupt") {
      output.push(...stepMessages);
      return { outcome: (await finish("completed")).outcome as TurnOutcome };
    }
    if (step.error) {
      output.push(...stepMessages);
      return { outcome: (await finish("error", step.error)).outcome as TurnOutcome };
    }
    if (step.finishReason === "content-filter") {
      output.push(...stepMessages);
      const error = classifyError(
        new TurnError(
          "content_filter",
          "The model provider's content filter stopped the response.",
        ),
        model.provider,
      );
      return { outcome: (await finish("error", error)).outcome as TurnOutcome };
    }
    if (plans.length > 0) {
      // The plan, its link and the step's messages in one transaction; then the turn ends (or
      // waits for the client's answers to the step's other calls, an ask_user_question).
      const saved = await saveChatRunPlan(db, {
        chat_id: chat.id,
        worker_id: deps.workerId,
        started_at: lease.startedAt,
        model_config_id: chat.model_config_id,
        file_id: planFileId!,
        plan_markdown: planFileMarkdown(proposedPlanOf(plans[0]!.args)),
        messages: messagesOfStep(true),
      });
      deps.afterWrite();
      if (!saved.saved) output.push(...stepMessages);
      const row = await finish(clientCalls > 0 ? "requires_action" : "completed");
      return {
        outcome: row.outcome as TurnOutcome,
        ...(row.outcome === "completed"
          ? { followUp: followUpOf(deps, chat, model, row, rows, stepMessages) }
          : {}),
      };
    }
    if (clientCalls > 0) {
      output.push(...stepMessages);
      return { outcome: (await finish("requires_action")).outcome as TurnOutcome };
    }
    if (answered.length > 0 && stepNo < deps.maxSteps) {
      const saved = await saveChatRunStep(db, {
        chat_id: chat.id,
        worker_id: deps.workerId,
        started_at: lease.startedAt,
        model_config_id: chat.model_config_id,
        messages: stepMessages,
      });
      deps.afterWrite();
      if (!saved.saved) {
        // Stopped or taken away meanwhile: the turn's end decides what happens to this step.
        output.push(...stepMessages);
        return { outcome: (await finish("completed")).outcome as TurnOutcome };
      }
      const next = buildMessages(
        stepMessages.map((m, i) => ({ id: i, ...m })),
        files,
      );
      if (storing && step.responseId) {
        // The step's response is stored: the next one chains on it and sends only the answers.
        prompt.messages = [
          ...withPinnedContext(
            buildMessages(
              rows.filter((r) => r.role === "system"),
              files,
            ),
            context,
          ),
          ...next.filter((m) => m.role !== "assistant"),
        ];
        prompt.providerOptions = openaiOptions(deps, chat, step.responseId);
      } else {
        prompt.messages.push(...next);
      }
      continue;
    }
    output.push(...stepMessages);
    const row = await finish("completed");
    return {
      outcome: row.outcome as TurnOutcome,
      followUp: followUpOf(deps, chat, model, row, rows, output),
    };
  }
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

/** Why the runner refused a tool call: the model sees this as the call's error result. */
function refusal(name: string, tools: ToolSet, planning: boolean, dynamicTools: unknown): string {
  if (name in tools) return `the arguments do not match the input schema of ${name}`;
  const declared =
    Array.isArray(dynamicTools) &&
    dynamicTools.some((t) => (t as { name?: string })?.name === name);
  if (planning && declared) {
    return `${name} is not available in plan mode: explore, ask with ${askUserQuestion}, and finish with ${proposePlan}`;
  }
  return `there is no tool named ${name}`;
}
