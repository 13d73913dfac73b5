import type { ListChatEventsAfterCursorRow } from "../generated/chat_events.ts";

/** A row of chat_events as every event query returns it. */
export type EventRow = ListChatEventsAfterCursorRow;
export type EventKind = EventRow["kind"];

/** Kinds on the owner's watch stream (docs/api.md "Streams"). */
export const watchKinds: ReadonlySet<EventKind> = new Set<EventKind>([
  "created",
  "deleted",
  "status_change",
  "title_change",
  "summary_change",
  "diff_status_change",
  "action_required",
  "context_dirty",
  "updated",
  "hard_deleted",
  "notification",
]);

/** Kinds on a chat's own stream; status_change becomes `status` (and `error`) there. */
export const streamKinds: ReadonlySet<EventKind> = new Set<EventKind>([
  "status_change",
  "action_required",
  "message",
  "queue_update",
  "history_reset",
]);

/** Kinds on a workspace agent's tool-call stream (docs/api.md "Workspace tools"), never a user's. */
export const agentKinds: ReadonlySet<EventKind> = new Set<EventKind>([
  "tool_call",
  "tool_call_canceled",
]);

/** The agent an agent-stream event is addressed to (its payload names it). */
export function agentOfEvent(row: EventRow): string | undefined {
  const id = (row.payload as { agent_id?: unknown } | null)?.agent_id;
  return typeof id === "string" ? id : undefined;
}
