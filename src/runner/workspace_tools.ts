import { randomUUID } from "node:crypto";
import { type ToolSet, tool } from "ai";
import type { z } from "zod";
import { getChatPlanFileByChatID } from "../generated/chat_files.ts";
import { type GetChatForRunByIDRow, settleChatRunToolCalls } from "../generated/chat_runs.ts";
import {
  askUserQuestion,
  planFileMarkdown,
  planTools,
  proposedPlanOf,
  proposePlan,
} from "../models/plan_mode.ts";
import { buildTools, type Part } from "../models/prompt.ts";
import { applyEdits } from "../tools/edits.ts";
import {
  answerTimeoutMs,
  isPlanFilePath,
  isWorkspaceTool,
  planFilePath,
  planModeDescriptions,
  planModeWorkspaceTools,
  type WorkspaceToolArgs,
  type WorkspaceToolName,
  workspaceToolDescriptions,
  workspaceToolNames,
  workspaceToolSchemas,
} from "../tools/workspace.ts";
import type { Lease, StopReason, TurnDeps } from "./turn.ts";

/*
 * A turn's tools (docs/api.md "Workspace tools", "Plan mode"): which are offered, who answers each
 * call of a step (the runner itself, the workspace agent, or the client), and the wait for the
 * agent's answers.
 */

/** The tools of one turn and what the model is told about the ones it does not get. */
export interface TurnTools {
  tools: ToolSet;
  /** Names whose calls go to the workspace agent. */
  agentTools: Set<string>;
  /** Why the workspace tools are missing, for the prompt; undefined when they are offered. */
  unavailable?: string | undefined;
}

/**
 * Plan mode offers the planning tools and, with an agent online, the exploring workspace tools
 * and write_file/edit_files for the plan file only (the runner answers those). Otherwise the
 * client's tools, and every workspace tool when the bound agent is online (a workspace tool
 * replaces a client tool of the same name). A chat bound to a workspace whose agent is missing or
 * offline is told why it has no workspace tools.
 */
export function turnTools(chat: GetChatForRunByIDRow): TurnTools {
  const planning = chat.plan_mode === "plan";
  const tools = planning ? planTools() : buildTools(chat.dynamic_tools);
  const agentTools = new Set<string>();
  if (!chat.agent_id || !chat.agent_online) {
    const unavailable = !chat.workspace_id
      ? undefined
      : !chat.agent_id
        ? "This chat's workspace has no agent, so the workspace tools (execute, read_file, " +
          "write_file, edit_files, list_directory, process_output) are not available in this turn."
        : `The workspace agent is offline (${chat.agent_last_seen_at ? `last seen ${chat.agent_last_seen_at}` : "it has never connected"}), ` +
          "so the workspace tools (execute, read_file, write_file, edit_files, list_directory, " +
          "process_output) are not available in this turn.";
    return { tools, agentTools, unavailable };
  }
  const offered: readonly WorkspaceToolName[] = planning
    ? [...planModeWorkspaceTools, "write_file", "edit_files"]
    : workspaceToolNames;
  for (const name of offered) {
    const planOnly = planning && !planModeWorkspaceTools.includes(name);
    tools[name] = tool({
      description: (planOnly && planModeDescriptions[name]) || workspaceToolDescriptions[name],
      inputSchema: workspaceToolSchemas[name] as z.ZodType<unknown>,
    });
    if (!planOnly) agentTools.add(name);
  }
  return { tools, agentTools };
}

/** A tool call part of a step. */
type Call = Part & { tool_call_id: string; tool_name: string };

/** A result the runner answers itself, in the step's tool message. */
interface RunnerAnswer {
  call: Call;
  result: unknown;
  isError: boolean;
}

/** Who answers each call of a step. */
export interface StepCalls {
  /** Answered by the runner (refusals, plans, the plan file), in call order. */
  answered: RunnerAnswer[];
  /** For the workspace agent: recorded with the step, answered through chat_tool_calls. */
  agent: { tool_call_id: string; tool_name: string; args: unknown; timeout_ms: number }[];
  /** For the client (its declared tools, ask_user_question): the turn ends in requires_action. */
  client: number;
  /** A new version of the plan file to save with the step (propose_plan, plan-mode writes). */
  planFile?: { file_id: string; markdown: string } | undefined;
  /** The step proposed a plan: the turn ends after it. */
  proposed: boolean;
}

export interface StepContext {
  deps: TurnDeps;
  chat: GetChatForRunByIDRow;
  tools: TurnTools;
  /** Tool call ids the SDK could not match to a tool or whose input failed its schema, with why. */
  invalid: Map<string, string>;
  /** The turn may not call the model again: workspace calls are refused, not run. */
  lastStep: boolean;
  maxSteps: number;
}

/** Sorts a step's calls by who answers them, computing the runner's own answers. */
export async function assignCalls(ctx: StepContext, calls: Call[]): Promise<StepCalls> {
  const { chat, tools } = ctx;
  const planning = chat.plan_mode === "plan";
  const out: StepCalls = { answered: [], agent: [], client: 0, proposed: false };
  const refuse = (call: Call, error: string) =>
    out.answered.push({ call, result: { error }, isError: true });
  let plan: { id: string; text: string } | undefined;
  const planText = async () => {
    if (!plan) {
      const file = await getChatPlanFileByChatID(ctx.deps.db, { chat_id: chat.id });
      plan = { id: randomUUID(), text: file ? file.data.toString("utf8") : "" };
    }
    return plan;
  };
  let planChanged = false;

  for (const call of calls) {
    const name = call.tool_name;
    const invalid = ctx.invalid.get(call.tool_call_id);
    if (invalid !== undefined || !(name in tools.tools)) {
      refuse(call, refusal(name, invalid, tools, planning, chat.dynamic_tools));
      continue;
    }
    if (planning && name === proposePlan) {
      if (out.proposed) {
        refuse(call, "one plan per turn: only the first proposal is saved");
        continue;
      }
      const p = await planText();
      p.text = planFileMarkdown(proposedPlanOf(call.args));
      planChanged = true;
      out.proposed = true;
      out.answered.push({
        call,
        result: { saved: true, file_id: p.id, name: planFilePath },
        isError: false,
      });
      continue;
    }
    if (planning && isWorkspaceTool(name) && !tools.agentTools.has(name)) {
      // write_file / edit_files while planning: the plan file, answered here.
      const answer = await planFileAnswer(name, call.args, planText);
      if (answer.changed) planChanged = true;
      out.answered.push({ call, result: answer.result, isError: answer.isError });
      continue;
    }
    if (
      planning &&
      name === "read_file" &&
      isPlanFilePath(String((call.args as { path?: unknown }).path ?? ""))
    ) {
      const p = await planText();
      out.answered.push({
        call,
        result: { path: planFilePath, content: p.text, total_lines: p.text.split("\n").length },
        isError: false,
      });
      continue;
    }
    if (tools.agentTools.has(name)) {
      if (ctx.lastStep) {
        refuse(
          call,
          `not run: the turn reached its limit of ${ctx.maxSteps} model calls; ask the user to continue`,
        );
        continue;
      }
      out.agent.push({
        tool_call_id: call.tool_call_id,
        tool_name: name,
        args: call.args ?? {},
        timeout_ms: answerTimeoutMs(name as WorkspaceToolName, call.args ?? {}, ctx.deps.toolWait),
      });
      continue;
    }
    out.client++;
  }
  if (planChanged && plan) out.planFile = { file_id: plan.id, markdown: plan.text };
  return out;
}

/** write_file and edit_files of the plan file in plan mode. */
async function planFileAnswer(
  name: WorkspaceToolName,
  args: unknown,
  planText: () => Promise<{ id: string; text: string }>,
): Promise<{ result: unknown; isError: boolean; changed: boolean }> {
  const onlyPlan = `in plan mode, ${name} only writes the chat's plan file: use the path "${planFilePath}"`;
  if (name === "write_file") {
    const a = args as WorkspaceToolArgs<"write_file">;
    if (!isPlanFilePath(a.path))
      return { result: { error: onlyPlan }, isError: true, changed: false };
    const p = await planText();
    p.text = a.content;
    return {
      result: { path: planFilePath, bytes: Buffer.byteLength(a.content), file_id: p.id },
      isError: false,
      changed: true,
    };
  }
  const a = args as WorkspaceToolArgs<"edit_files">;
  if (a.edits.some((e) => !isPlanFilePath(e.path))) {
    return { result: { error: onlyPlan }, isError: true, changed: false };
  }
  const p = await planText();
  const outcome = applyEdits(
    p.text,
    a.edits.map((edit, index) => ({ edit, index })),
    planFilePath,
  );
  if (!outcome.ok) return { result: { error: outcome.error }, isError: true, changed: false };
  p.text = outcome.text;
  return {
    result: { edited: [{ path: planFilePath, edits: a.edits.length }], file_id: p.id },
    isError: false,
    changed: true,
  };
}

/** Why the runner refused a tool call: the model sees this as the call's error result. */
function refusal(
  name: string,
  invalid: string | undefined,
  tools: TurnTools,
  planning: boolean,
  dynamicTools: unknown,
): string {
  if (name in tools.tools) {
    return `the arguments do not match the input schema of ${name}${invalid ? `: ${invalid}` : ""}`;
  }
  if (isWorkspaceTool(name) && tools.unavailable) return tools.unavailable;
  const declared =
    Array.isArray(dynamicTools) &&
    dynamicTools.some((t) => (t as { name?: string })?.name === name);
  if (planning && (declared || isWorkspaceTool(name))) {
    return `${name} is not available in plan mode: explore, ask with ${askUserQuestion}, and finish with ${proposePlan}`;
  }
  return `there is no tool named ${name}`;
}

/** A turn's wake-up for tool answers: the runner calls wake() when chat_runner says one came. */
export class ToolWaker {
  private resolve: (() => void) | undefined;
  private pending = false;

  wake(): void {
    if (this.resolve) this.resolve();
    else this.pending = true;
  }

  /** Resolves on wake(), after `ms`, or when `signal` aborts, whichever comes first. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending || signal.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.resolve = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.resolve = done;
    });
  }
}

/**
 * Looks for answers this often even without a wake-up (a NOTIFY lost while the LISTEN connection
 * reconnected): a lost wake-up costs at most this much delay.
 */
const toolPollMs = 2_000;

/**
 * Waits until the agent answered every open workspace call of the chat (or the calls timed out:
 * chat_run_settle_tool_calls closes them). Returns how many calls of the step still wait for the
 * client, or why the turn stopped meanwhile.
 */
export async function awaitToolCalls(
  deps: TurnDeps,
  lease: Lease,
  waker: ToolWaker,
  signal: AbortSignal,
): Promise<{ stop: StopReason } | { unanswered: number }> {
  let open = Number.POSITIVE_INFINITY;
  for (;;) {
    if (signal.aborted) return { stop: signal.reason as StopReason };
    const s = await settleChatRunToolCalls(deps.db, {
      chat_id: lease.chatId,
      worker_id: deps.workerId,
      started_at: lease.startedAt,
    });
    // Closing calls that timed out stored their results: deliver those events now.
    if ((s.open_calls ?? 0) < open) deps.afterWrite();
    // Stopped (interrupt, archive) or taken away: the turn's end sorts out which.
    if (!s.held) return { stop: (signal.reason as StopReason | undefined) ?? "interrupt" };
    open = s.open_calls ?? 0;
    if (open === 0) return { unanswered: s.unanswered_calls ?? 0 };
    const untilDeadline = Date.parse(s.next_deadline_at ?? "") - Date.now();
    const ms = Number.isFinite(untilDeadline)
      ? Math.min(toolPollMs, untilDeadline + 10)
      : toolPollMs;
    await waker.wait(Math.max(10, ms), signal);
  }
}
