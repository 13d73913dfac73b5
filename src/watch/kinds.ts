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
