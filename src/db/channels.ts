/*
 * The LISTEN/NOTIFY channels. SQL notifies some of them too (chat_events_notify in
 * sql/functions/chat_events.sql, chats__notify_runner in sql/triggers/chats.sql): a rename must
 * change both.
 */
export const channels = {
  /** A commit wrote change events: tailers read the log, runners look for pending chats. */
  events: "chat_events",
  /** Ephemeral per-chat events (message_part, retry) between processes; never stored. */
  parts: "chat_message_parts",
  /** Payload a chat id: the runner holding it must stop its turn (interrupt, edit, archive). */
  runner: "chat_runner",
} as const;
