import { createHash } from "node:crypto";
import {
  type AssistantContent,
  jsonSchema,
  type ModelMessage,
  type ToolContent,
  type ToolSet,
  tool,
  type UserContent,
} from "ai";

/*
 * A chat's history, as stored (Part[] per message, docs/api.md), turned into AI SDK messages, and
 * its client-declared tools into an AI SDK tool set without `execute`: the SDK hands their calls
 * back to us, and the chat goes requires_action until the client answers.
 */

/** A stored content part (docs/api.md Part). */
export interface Part {
  type: string;
  text?: string;
  tool_call_id?: string;
  tool_name?: string;
  args?: unknown;
  result?: unknown;
  is_error?: boolean;
  file_id?: string;
  context_file_path?: string;
  context_file_content?: string;
}

export interface HistoryRow {
  id: number;
  role: "system" | "user" | "assistant" | "tool";
  content: unknown;
}

export interface FileData {
  name: string;
  mimetype: string;
  data: Buffer;
}

export interface DynamicTool {
  name: string;
  description?: string;
  input_schema: Record<string, unknown>;
}

type JsonValue = null | string | number | boolean | JsonValue[] | { [k: string]: JsonValue };

export function partsOf(content: unknown): Part[] {
  return Array.isArray(content)
    ? content.filter((p): p is Part => typeof p === "object" && p !== null && "type" in p)
    : [];
}

/** The ids of the files a history's file parts name (their bytes are loaded for the prompt). */
export function fileIdsOf(rows: HistoryRow[]): string[] {
  const ids = new Set<string>();
  for (const r of rows) {
    for (const p of partsOf(r.content)) if (p.type === "file" && p.file_id) ids.add(p.file_id);
  }
  return [...ids];
}

function contextFileText(p: Part): string {
  return `<context-file path=${JSON.stringify(p.context_file_path ?? "")}>\n${p.context_file_content ?? ""}\n</context-file>`;
}

/** A stored tool result as the SDK's output: strings stay text, anything else is JSON. */
function toolOutput(p: Part) {
  const value = (p.result ?? null) as JsonValue;
  if (p.is_error) {
    return typeof value === "string"
      ? { type: "error-text" as const, value }
      : { type: "error-json" as const, value };
  }
  return typeof value === "string"
    ? { type: "text" as const, value }
    : { type: "json" as const, value };
}

/**
 * The model's view of the history, in order. Parts a role cannot carry are dropped; a message
 * left with nothing is skipped (providers refuse empty messages). A user or system message stored
 * while tool calls waited for their results (a context file the workspace added while a command
 * ran) comes after those results: providers refuse anything between a call and its result.
 */
export function buildMessages(rows: HistoryRow[], files: Map<string, FileData>): ModelMessage[] {
  const out: ModelMessage[] = [];
  /** Calls of the last assistant message that no tool result answered yet. */
  const awaited = new Set<string>();
  let deferred: HistoryRow[] = [];
  const flush = () => {
    for (const d of deferred) appendMessage(out, d, files);
    deferred = [];
  };
  for (const row of rows) {
    if (awaited.size > 0 && (row.role === "user" || row.role === "system")) {
      deferred.push(row);
      continue;
    }
    if (row.role === "assistant") {
      // Calls never answered (a history stored before results were guaranteed): keep the order.
      flush();
      awaited.clear();
      for (const p of partsOf(row.content)) {
        if (p.type === "tool-call" && p.tool_call_id) awaited.add(p.tool_call_id);
      }
    } else if (row.role === "tool") {
      for (const p of partsOf(row.content)) {
        if (p.type === "tool-result" && p.tool_call_id) awaited.delete(p.tool_call_id);
      }
    }
    appendMessage(out, row, files);
    if (awaited.size === 0) flush();
  }
  flush();
  return out;
}

/** One stored message as the model sees it, appended to `out` (nothing when it carries nothing). */
function appendMessage(out: ModelMessage[], row: HistoryRow, files: Map<string, FileData>): void {
  const parts = partsOf(row.content);
  switch (row.role) {
    case "system": {
      const text = parts
        .filter((p) => p.type === "text" || p.type === "context-file")
        .map((p) => (p.type === "text" ? (p.text ?? "") : contextFileText(p)))
        .join("\n\n");
      if (text.trim()) out.push({ role: "system", content: text });
      break;
    }
    case "user": {
      const content: Exclude<UserContent, string> = [];
      for (const p of parts) {
        if (p.type === "text" && p.text) content.push({ type: "text", text: p.text });
        else if (p.type === "context-file")
          content.push({ type: "text", text: contextFileText(p) });
        else if (p.type === "file" && p.file_id) {
          const file = files.get(p.file_id);
          if (file) {
            content.push({
              type: "file",
              data: new Uint8Array(file.data),
              mediaType: file.mimetype,
              filename: file.name,
            });
          }
        }
      }
      if (content.length > 0) out.push({ role: "user", content });
      break;
    }
    case "assistant": {
      const content: Exclude<AssistantContent, string> = [];
      for (const p of parts) {
        if (p.type === "text" && p.text) content.push({ type: "text", text: p.text });
        else if (p.type === "reasoning" && p.text)
          content.push({ type: "reasoning", text: p.text });
        else if (p.type === "tool-call" && p.tool_call_id && p.tool_name) {
          content.push({
            type: "tool-call",
            toolCallId: p.tool_call_id,
            toolName: p.tool_name,
            input: p.args ?? {},
          });
        }
      }
      if (content.length > 0) out.push({ role: "assistant", content });
      break;
    }
    case "tool": {
      const content: ToolContent = [];
      for (const p of parts) {
        if (p.type !== "tool-result" || !p.tool_call_id) continue;
        content.push({
          type: "tool-result",
          toolCallId: p.tool_call_id,
          toolName: p.tool_name ?? "",
          output: toolOutput(p),
        });
      }
      if (content.length > 0) out.push({ role: "tool", content });
      break;
    }
  }
}

/** A pinned workspace context resource the model reads (instruction files, skills). */
export interface ContextResource {
  source: string;
  kind: "instruction_file" | "skill" | "mcp_config";
  body: string;
}

/**
 * The pinned context as one system message, after the chat's own system messages and before the
 * conversation: instruction files first, then skills, each tagged with where it came from.
 */
export function withPinnedContext(
  messages: ModelMessage[],
  resources: ContextResource[],
): ModelMessage[] {
  if (resources.length === 0) return messages;
  const tag = (r: ContextResource) => (r.kind === "skill" ? "skill" : "instruction-file");
  const content = [
    "Context from the workspace:",
    ...resources.map(
      (r) => `<${tag(r)} source=${JSON.stringify(r.source)}>\n${r.body}\n</${tag(r)}>`,
    ),
  ].join("\n\n");
  return afterSystemMessages(messages, [{ role: "system", content }]);
}

/**
 * Text the model is told besides the history (why it has no workspace tools), as system messages
 * after the chat's own and the pinned context.
 */
export function withSystemNotes(messages: ModelMessage[], notes: string[]): ModelMessage[] {
  return afterSystemMessages(
    messages,
    notes.map((content) => ({ role: "system", content })),
  );
}

/** `inserted` after the leading system messages, before the conversation. */
function afterSystemMessages(messages: ModelMessage[], inserted: ModelMessage[]): ModelMessage[] {
  if (inserted.length === 0) return messages;
  const leading = messages.findIndex((m) => m.role !== "system");
  const at = leading < 0 ? messages.length : leading;
  return [...messages.slice(0, at), ...inserted, ...messages.slice(at)];
}

/** The chat's client-declared tools; their calls are not executed here. */
export function buildTools(dynamicTools: unknown): ToolSet {
  const tools: ToolSet = {};
  if (!Array.isArray(dynamicTools)) return tools;
  for (const t of dynamicTools as DynamicTool[]) {
    if (!t?.name) continue;
    tools[t.name] = tool({
      description: t.description ?? "",
      inputSchema: jsonSchema(t.input_schema ?? { type: "object" }),
    });
  }
  return tools;
}

/** What a turn's prompt carried (docs/api.md "What the model saw"): chats.last_injected_context. */
export interface InjectedContext {
  resources: { source: string; kind: string; sha256: string; bytes: number }[];
  context_files: { path: string; sha256: string; bytes: number; message_id: number }[];
}

const digest = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

/**
 * The pinned resources and the context files of the rows a prompt was built from; null when it
 * carried neither (most chats: they then never write the column).
 */
export function injectedContext(
  resources: ContextResource[],
  rows: HistoryRow[],
): InjectedContext | null {
  const injected = {
    resources: resources.map((r) => ({
      source: r.source,
      kind: r.kind,
      sha256: digest(r.body),
      bytes: Buffer.byteLength(r.body, "utf8"),
    })),
    context_files: rows.flatMap((row) =>
      partsOf(row.content)
        .filter((p) => p.type === "context-file")
        .map((p) => ({
          path: p.context_file_path ?? "",
          sha256: digest(p.context_file_content ?? ""),
          bytes: Buffer.byteLength(p.context_file_content ?? "", "utf8"),
          message_id: Number(row.id),
        })),
    ),
  };
  return injected.resources.length + injected.context_files.length > 0 ? injected : null;
}
