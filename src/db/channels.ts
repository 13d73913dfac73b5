/*
 * The LISTEN/NOTIFY channels. SQL notifies most of them (chat_events_notify in
 * sql/functions/chat_events.sql; chats__notify_runner and chats__notify_pending in
 * sql/triggers/chats.sql): a rename must change both.
 */
export const channels = {
  /**
   * A commit wrote change events: tailers read the log. Payload: the transaction id (trigger
   * mode), or "batch" (batched mode: one per interval).
   */
  events: "chat_events",
  /**
   * Per-chat stream events (message_part, retry) between processes, sent by chat_stream_publish
   * as it stores them in chat_stream_parts (sql/functions/chat_stream_parts.sql).
   */
  parts: "chat_message_parts",
  /**
   * Payload a chat id: the runner holding it must stop its turn (interrupt, edit, archive). Payload
   * "tool:<chat id>": the workspace agent answered a call that turn waits for
   * (sql/functions/chat_tool_calls.sql).
   */
  runner: "chat_runner",
  /**
   * A chat became pending: payload the id of the one runner chosen to claim it
   * (chat_runner_choose), or "" for every runner (no runner registered).
   */
  pending: "chat_pending",
} as const;

/** Chat stream events carried on `channels.parts`: streaming deltas and retry announcements. */
export type EphemeralEvent = "message_part" | "retry";
