import { type ChatRow, chatJson, chatMessageJson, chatQueuedMessageJson } from "../api/shapes.ts";
import type { PoolQueryable } from "../db/index.ts";
import { listChatMessagesByIDs } from "../generated/chat_messages.ts";
import { listChatQueuedMessagesByChatIDs } from "../generated/chat_queue.ts";
import { listChatStreamPartsMarksByChatIDs } from "../generated/chat_stream_parts.ts";
import {
  type ListChatToolCallsByIDsRow,
  listChatToolCallsByIDs,
} from "../generated/chat_tool_calls.ts";
import { listChatsAndChildrenByIDs } from "../generated/chats.ts";
import type { Cursor } from "./cursor.ts";
import type { RenderedEvent, Wanted } from "./hub.ts";
import type { EventRow } from "./kinds.ts";
import { sseEvent } from "./sse.ts";
import type { Frame } from "./subscriber.ts";
import type { RenderEvents } from "./tailer.ts";

/*
 * Change events rendered as the frames of docs/api.md "Streams" (sse.ts writes them), once per
 * process for all the subscribers of a chat or an owner.
 */

/** Chat stream frame bodies, shared by the snapshot (routes) and live events (renderer). */
export const streamData = {
  status: (chatId: string, status: string) => JSON.stringify({ chat_id: chatId, status }),
  queue: (queued: ReturnType<typeof chatQueuedMessageJson>[]) =>
    JSON.stringify({ queued_messages: queued }),
};

/**
 * A workspace tool call as the agent's stream shows it (docs/api.md "Workspace tools"): what to
 * run, and its state now (a replayed or late event may name a call that is no longer pending).
 */
export function toolCallData(call: Omit<ListChatToolCallsByIDsRow, "agent_id" | "result">): string {
  return JSON.stringify({
    id: call.id,
    chat_id: call.chat_id,
    tool_call_id: call.tool_call_id,
    tool_name: call.tool_name,
    args: call.args,
    state: call.state,
    created_at: call.created_at,
    deadline_at: call.deadline_at,
  });
}

interface RenderedChat {
  ownerId: string;
  json: string;
}

/**
 * The chats of a batch as watch events show them: the current row (so at or after each event's
 * version, docs/api.md) with a root's children embedded like GET /{chat} (those in the root's own
 * archive state), serialised once each. One query for the chats and the children of those that
 * are roots.
 */
async function loadChats(db: PoolQueryable, ids: string[]): Promise<Map<string, RenderedChat>> {
  const out = new Map<string, RenderedChat>();
  if (ids.length === 0) return out;
  const rows = (await listChatsAndChildrenByIDs(db, { ids })) as ChatRow[];
  const named = new Set(ids);
  const children = new Map<string, ChatRow[]>();
  for (const r of rows) {
    if (r.root_chat_id === null || !named.has(r.root_chat_id)) continue;
    const key = `${r.root_chat_id}/${r.archived}`;
    const list = children.get(key) ?? [];
    list.push(r);
    children.set(key, list);
  }
  for (const r of rows) {
    if (!named.has(r.id)) continue;
    const json = chatJson(r, children.get(`${r.id}/${r.archived}`) ?? []);
    out.set(r.id, { ownerId: r.owner_id, json: JSON.stringify(json) });
  }
  return out;
}

/**
 * The renderer the tailer calls for each batch. However many events and subscribers name a chat,
 * a batch reads and serialises it once: chats (with children), messages and queues are read in
 * one round of parallel queries.
 */
export function createEventRenderer(db: PoolQueryable): RenderEvents {
  return async (rows: EventRow[], wanted: Wanted[]): Promise<RenderedEvent[]> => {
    const chatIds = new Set<string>();
    const messageIds = new Set<number>();
    const queueChatIds = new Set<string>();
    const callIds = new Set<number>();
    rows.forEach((row, i) => {
      const w = wanted[i]!;
      // Every kind but notification is about a chat (chat_id set); a notification is rendered
      // from its payload.
      if (w.watch && row.chat_id !== null && row.kind !== "hard_deleted") chatIds.add(row.chat_id);
      if (w.stream && row.kind === "message") messageIds.add(Number(row.payload?.message_id));
      if (w.stream && row.kind === "queue_update") queueChatIds.add(row.chat_id!);
      if (w.agent) callIds.add(Number(row.payload?.call_id));
    });
    const messageChatIds = new Set(
      rows.filter((r, i) => wanted[i]!.stream && r.kind === "message").map((r) => r.chat_id!),
    );
    const [chats, messageRows, queueRows, callRows, markRows] = await Promise.all([
      loadChats(db, [...chatIds]),
      messageIds.size > 0 ? listChatMessagesByIDs(db, { ids: [...messageIds] }) : [],
      queueChatIds.size > 0
        ? listChatQueuedMessagesByChatIDs(db, { chat_ids: [...queueChatIds] })
        : [],
      callIds.size > 0 ? listChatToolCallsByIDs(db, { ids: [...callIds] }) : [],
      messageChatIds.size > 0
        ? listChatStreamPartsMarksByChatIDs(db, { chat_ids: [...messageChatIds] })
        : [],
    ]);
    const marks = new Map(
      markRows
        .filter((m) => m.saved_through !== null)
        .map((m) => [m.chat_id as string, Number(m.saved_through)]),
    );
    const calls = new Map(callRows.map((t) => [t.id, t]));
    const messages = new Map(messageRows.map((m) => [m.id, m]));
    const queues = new Map<string, ReturnType<typeof chatQueuedMessageJson>[]>();
    for (const id of queueChatIds) queues.set(id, []);
    for (const q of queueRows) queues.get(q.chat_id)!.push(chatQueuedMessageJson(q));

    return rows.map((row, i) => {
      const w = wanted[i]!;
      const cursor = { xid: BigInt(row.xid), id: row.id };
      const ev: RenderedEvent = { row, cursor };
      if (w.watch) ev.watch = watchFrame(row, cursor, chats);
      if (w.stream) ev.stream = streamFrames(row, cursor, messages, queues, marks);
      if (w.agent) ev.agent = agentFrame(row, cursor, calls);
      return ev;
    });
  };
}

function watchFrame(
  row: EventRow,
  cursor: Cursor,
  chats: Map<string, RenderedChat>,
): RenderedEvent["watch"] {
  if (row.kind === "notification") {
    // A user's inbox entry, as GET /notifications shows it (the trigger wrote it whole).
    const data = `{"kind":"notification","notification":${JSON.stringify(row.payload?.notification ?? null)}}`;
    return { frame: { cursor, text: sseEvent(row.kind, data, cursor) }, chatOwnerId: row.owner_id };
  }
  let chat: string;
  let chatOwnerId = row.owner_id;
  if (row.kind === "hard_deleted") {
    // The row is gone: the identity fields the trigger kept.
    chat = JSON.stringify({
      id: row.chat_id,
      owner_id: row.owner_id,
      organization_id: row.payload?.organization_id ?? null,
      parent_chat_id: row.payload?.parent_chat_id ?? null,
      root_chat_id: row.payload?.root_chat_id ?? null,
      title: row.payload?.title ?? "",
      version: row.chat_version,
    });
  } else {
    const entry = chats.get(row.chat_id!);
    // null: the chat was hard-deleted since; its hard_deleted event follows.
    chat = entry?.json ?? "null";
    if (entry) chatOwnerId = entry.ownerId;
  }
  const toolCalls =
    row.kind === "action_required"
      ? `,"tool_calls":${JSON.stringify(row.payload?.tool_calls ?? [])}`
      : "";
  const data = `{"kind":"${row.kind}","chat":${chat}${toolCalls}}`;
  return { frame: { cursor, text: sseEvent(row.kind, data, cursor) }, chatOwnerId };
}

function streamFrames(
  row: EventRow,
  cursor: Cursor,
  messages: Map<number, Parameters<typeof chatMessageJson>[0]>,
  queues: Map<string, ReturnType<typeof chatQueuedMessageJson>[]>,
  marks: Map<string, number>,
): Frame | undefined {
  const frame = (event: string, data: string): Frame => ({
    cursor,
    text: sseEvent(event, data, cursor),
  });
  switch (row.kind) {
    case "status_change": {
      const status = frame("status", streamData.status(row.chat_id!, row.payload?.status));
      // One frame (one cursor) for both blocks: a subscriber takes an event whole or not at all.
      if (row.payload?.status === "error" && row.payload.error) {
        status.text += sseEvent("error", JSON.stringify(row.payload.error), cursor);
      }
      return status;
    }
    case "action_required":
      return frame(
        "action_required",
        JSON.stringify({ chat_id: row.chat_id, tool_calls: row.payload?.tool_calls ?? [] }),
      );
    case "message": {
      const m = messages.get(Number(row.payload?.message_id));
      if (!m) return undefined;
      return {
        ...frame("message", JSON.stringify(chatMessageJson(m))),
        messageId: m.id,
        partsMark: marks.get(m.chat_id),
      };
    }
    case "queue_update":
      return frame("queue_update", streamData.queue(queues.get(row.chat_id!) ?? []));
    case "history_reset":
      return frame(
        "history_reset",
        JSON.stringify({
          chat_id: row.chat_id,
          deleted_message_ids: row.payload?.deleted_message_ids ?? [],
        }),
      );
    default:
      return undefined;
  }
}

function agentFrame(
  row: EventRow,
  cursor: Cursor,
  calls: Map<number, ListChatToolCallsByIDsRow>,
): Frame | undefined {
  const call = calls.get(Number(row.payload?.call_id));
  // A call whose chat was deleted since is gone with it: nothing to run or stop.
  if (!call) return undefined;
  if (row.kind === "tool_call") {
    return { cursor, text: sseEvent("tool_call", toolCallData(call), cursor) };
  }
  const data = JSON.stringify({
    id: call.id,
    chat_id: call.chat_id,
    tool_call_id: call.tool_call_id,
    state: call.state,
    reason: (call.result as { error?: unknown } | null)?.error ?? null,
  });
  return { cursor, text: sseEvent("tool_call_canceled", data, cursor) };
}
